"""Where a sweep's Optuna study lives, given the results store's URL.

Optuna's schema and the store's cannot share one namespace (both have a ``trials`` table),
so the study goes as close to the store as that allows:

- PostgreSQL: the same database, in the schema ``<store schema>_optuna`` (``optuna`` when
  the store uses the default search path);
- SQLite: a file beside the store's, ``spx.db`` → ``spx-optuna.db``, in WAL mode with
  ``synchronous=NORMAL`` like the store (an ask + tell commits ~15 times: this halves what
  they cost, and optuna-dashboard reads while the driver writes);
- an in-memory store, or no URL at all: an in-memory study (nothing to resume).

>>> study_storage_url("sqlite:////tmp/home/spx.db")
'sqlite:////tmp/home/spx-optuna.db'
>>> study_storage_url("postgresql+psycopg://u@db/spx")
'postgresql+psycopg://u@db/spx?options=-csearch_path%3Doptuna'
"""

from __future__ import annotations

import re
from pathlib import Path

import sqlalchemy as sa
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage

from spx.errors import ConfigError

_SEARCH_PATH = re.compile(r"-c\s*search_path=([^\s,]+)")


def study_storage_url(store_url: str | None) -> str | None:
    """The study storage URL for a store URL (None: keep the study in memory)."""
    if store_url is None:
        return None
    url = sa.make_url(store_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        path = Path(url.database)
        sibling = path.with_name(f"{path.stem}-optuna{path.suffix or '.db'}")
        return url.set(database=str(sibling)).render_as_string(hide_password=False)
    if backend == "postgresql":
        options = url.query.get("options", "")
        options = options if isinstance(options, str) else " ".join(options)
        found = _SEARCH_PATH.search(options)
        schema = f"{found.group(1)}_optuna" if found else "optuna"
        rest = _SEARCH_PATH.sub("", options).strip()
        query = f"{rest} -csearch_path={schema}".strip()
        return url.update_query_dict({"options": query}).render_as_string(hide_password=False)
    raise ConfigError(
        "Optuna methods need a SQLite or PostgreSQL store", field="store", value=backend
    )


def open_storage(url: str | None) -> BaseStorage:
    """An Optuna storage at ``url`` (from :func:`study_storage_url`), made ready to use."""
    if url is None:
        return InMemoryStorage()
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        _create_schema(parsed)
    storage = RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    if parsed.get_backend_name() == "sqlite":
        # Optuna made its engine (and connections) already: start them over with the pragmas.
        storage.engine.dispose()
        sa.event.listen(storage.engine, "connect", _sqlite_pragmas)
    return storage


# busy_timeout first: switching to WAL may wait on another process's lock. NORMAL is safe
# with WAL (a power cut can lose the last commits, never corrupt the file).
_SQLITE_PRAGMAS = ("busy_timeout=30000", "journal_mode=WAL", "synchronous=NORMAL")


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _create_schema(url: sa.URL) -> None:
    options = url.query.get("options", "")
    found = _SEARCH_PATH.search(options if isinstance(options, str) else " ".join(options))
    if found is None:
        return
    engine = sa.create_engine(url.difference_update_query(["options"]))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{found.group(1)}"'))
    finally:
        engine.dispose()
