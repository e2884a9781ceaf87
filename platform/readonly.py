"""Read-only connections to the results store, for SQL the user writes (``spx query``).

SQLite is opened through a ``file:...?mode=ro`` URI with ``PRAGMA query_only``, so the
database file itself refuses writes; PostgreSQL runs every statement inside a
``READ ONLY`` transaction that is rolled back afterwards. The guard is the database's,
not a parser's: any write statement fails however it is spelled.

>>> import tempfile, pathlib
>>> from spx.platform.store import Store
>>> url = f"sqlite:///{pathlib.Path(tempfile.mkdtemp()) / 'spx.db'}"
>>> Store.open(url).close()
>>> with readonly_connection(url) as conn:
...     conn.exec_driver_sql("SELECT count(*) FROM sweeps").scalar()
0
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from spx.errors import ConfigError, NotFoundError, StoreError
from spx.platform.settings import mask_url

__all__ = ["readonly_connection", "readonly_engine"]


def readonly_engine(url: str) -> Engine:
    """An engine on ``url`` that cannot write (SQLite: read-only file; PostgreSQL: see above).

    Example: ``readonly_engine("sqlite:///.spx/spx.db")``
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise ConfigError(
                "read-only queries need an SQLite file path", field="store", value=url
            )
        path = Path(database).expanduser().resolve()
        if not path.is_file():
            raise NotFoundError(f"no results store at {path} (run a sweep first)")
        engine = create_engine(f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true")
        event.listen(engine, "connect", _sqlite_query_only)
        return engine
    if backend == "postgresql":
        engine = create_engine(parsed, pool_pre_ping=True)
        event.listen(engine, "begin", _postgres_read_only)
        return engine
    raise ConfigError("the store needs a sqlite or postgresql URL", field="store", value=url)


@contextmanager
def readonly_connection(url: str) -> Iterator[Connection]:
    """A connection inside a transaction that is always rolled back.

    Failing to connect is a StoreError; errors of the statements run inside are left to
    the caller (they are usually the user's SQL). Example: see the module docstring.
    """
    engine = readonly_engine(url)
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            first = mask_url(str(exc)).splitlines()[0]
            raise StoreError(f"cannot open the results store at {mask_url(url)}: {first}") from None
        with conn:
            # Begin now, so PostgreSQL's READ ONLY is set even for raw DBAPI cursors.
            transaction = conn.begin()
            try:
                yield conn
            finally:
                transaction.rollback()
    finally:
        engine.dispose()


def _sqlite_query_only(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _postgres_read_only(conn: Connection) -> None:
    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
