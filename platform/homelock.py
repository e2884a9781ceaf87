"""One process at a time through the first-time set-up of a sweep's backends.

MLflow creates its tables and runs its Alembic migrations the first time a tracking store
opens an empty database, with no lock of its own (``mlflow.store.tracking.sqlalchemy_store``),
and Optuna's ``RDBStorage`` creates its tables the same way. Two drivers starting at once on a
fresh SPX_HOME both migrate: one fails (``Online migration expected to match one row``) and
the database can stay half-migrated for good. So a driver opens those backends inside
:func:`setup_lock`: an exclusive ``flock`` on ``SPX_HOME/.setup.lock`` makes processes on one
host take turns, and a PostgreSQL advisory lock on each PostgreSQL backend it is given does
the same for drivers on other hosts sharing that database. The results store needs neither:
its migrations already run under SQLite's write lock or a PostgreSQL advisory lock
(store.py). Opening backends that are set up takes tens of milliseconds, so launches wait
on one another only while a fresh home is being made.

>>> import tempfile
>>> with setup_lock(Path(tempfile.mkdtemp())):
...     pass
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from spx.errors import SpxError
from spx.platform.settings import mask_url

log = logging.getLogger(__name__)

LOCK_FILE = ".setup.lock"
WAIT_S = 300.0
"""How long a process waits for another one's set-up before it gives up."""
_POLL_S = 0.05
_PG_KEY = 0x5350_5802  # differs from the store's migration lock (store.py): no self-deadlock


@contextlib.contextmanager
def setup_lock(home: Path, urls: Iterable[str] = (), wait_s: float = WAIT_S) -> Iterator[None]:
    """Hold the set-up lock of ``home`` and of each PostgreSQL URL in ``urls`` meanwhile.

    Raises SpxError when another process holds it for longer than ``wait_s`` seconds.
    """
    with _file_lock(home / LOCK_FILE, wait_s), contextlib.ExitStack() as stack:
        for url in _postgres_databases(urls):
            stack.enter_context(_advisory_lock(url, wait_s))
        yield


@contextlib.contextmanager
def _file_lock(path: Path, wait_s: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        locked = _flock(fd, path, wait_s)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _flock(fd: int, path: Path, wait_s: float) -> bool:
    """Take the lock (False: the filesystem has no locks, so go on without one)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise SpxError(
                    f"another spx process has held {path} for over {wait_s:g} s while setting "
                    "up the store and MLflow; wait for it to finish, or end it"
                ) from None
            time.sleep(_POLL_S)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            log.warning("%s cannot be locked (%s): set-up goes on unlocked", path, exc.strerror)
            return False


def _postgres_databases(urls: Iterable[str]) -> list[str]:
    """The PostgreSQL URLs among ``urls``, one per database (a lock is per database)."""
    import sqlalchemy as sa

    seen: dict[tuple, str] = {}
    for url in urls:
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError:
            continue  # not an SQLAlchemy URL (an HTTP tracking server): nothing to lock
        if parsed.get_backend_name() == "postgresql":
            key = (parsed.host, parsed.port, parsed.database)
            seen.setdefault(key, url)
    return list(seen.values())


@contextlib.contextmanager
def _advisory_lock(url: str, wait_s: float) -> Iterator[None]:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from spx.platform.store import connect_args

    parsed = sa.make_url(url)
    engine = sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args(parsed))
    key = {"key": _PG_KEY}
    try:
        try:
            conn = engine.connect()
            conn.execute(sa.text(f"SET lock_timeout = '{int(wait_s * 1000)}ms'"))
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), key)
            conn.commit()
        except sa.exc.SQLAlchemyError as exc:
            detail = mask_url(str(exc)).splitlines()[0]
            raise SpxError(f"cannot take the set-up lock on {mask_url(url)}: {detail}") from None
        try:
            yield
        finally:
            with contextlib.suppress(sa.exc.SQLAlchemyError):  # closing the session frees it
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), key)
                conn.commit()
            conn.close()
    finally:
        engine.dispose()
