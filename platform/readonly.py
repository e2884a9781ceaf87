"""Read-only access to the results store: SQL the user writes (``spx query``), and the check
every read command makes first, that a store exists at the URL at all.

``require_store(url)`` creates, migrates and writes nothing: a missing SQLite file, a
PostgreSQL database that does not exist, or one whose search path holds no spx tables is a
NotFoundError "no store at ...", exit 2.

``read_rows(url, sql)`` runs one statement of the user's and streams its rows. Its guards,
outermost first, with the database's own as the last line:

1. ``check_read_sql`` (``spx.platform.readsql``), a lexical check: exactly one statement,
   a read, naming no write keyword and no function that reaches files, programs, large
   objects, locks, other servers, the session's settings or role, or runs SQL of its own
   from a string. It alone stops advisory locks (every role may take one) and
   ``set_config('role', ...)`` (a superuser session could undo the role drop below).
2. The driver: PostgreSQL gets the text through the extended protocol (``cursor.stream``),
   where the server refuses a second statement; sqlite3 runs one statement per execute.
3. The database. SQLite: an authorizer that allows only reads (no ATTACH, so no
   ``VACUUM INTO`` either; no PRAGMA; no ``load_extension``), ``PRAGMA query_only``, and a
   progress handler for the timeout. PostgreSQL: a ``READ ONLY`` transaction that is always
   rolled back, ``statement_timeout``, and, when the role is a superuser, ``SET LOCAL ROLE
   pg_read_all_data`` so the statement has no superuser powers (``pg_read_file``,
   ``COPY ... PROGRAM`` and ``lo_import`` then fail by privilege).

SQLite is opened ``mode=rw`` rather than ``mode=ro``: a read-only connection to a WAL
database leaves ``-wal`` and ``-shm`` files behind; a read-write one removes them when it
closes, and ``mode=rw`` never creates the database file.

>>> import tempfile, pathlib
>>> from spx.platform.store import Store
>>> url = f"sqlite:///{pathlib.Path(tempfile.mkdtemp()) / 'spx.db'}"
>>> Store.open(url).close()
>>> with read_rows(url, "SELECT count(*) AS n FROM sweeps") as rows:
...     rows.columns, list(rows)
(['n'], [(0,)])
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from spx.errors import ConfigError, NotFoundError, StoreError
from spx.platform.readsql import check_read_sql
from spx.platform.settings import mask_url

__all__ = ["ReadRows", "read_rows", "readonly_connection", "require_store"]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_LIMIT = 100_000
_STORE_TABLES = ("sweeps", "trials", "metrics")
_SQLITE_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
_SQLITE_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
_READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction
_TIMEOUT_SQLSTATE = "57014"  # query_canceled (statement_timeout, or a cancel request)
_PRIVILEGE_SQLSTATE = "42501"  # insufficient_privilege


# -- is there a store ---------------------------------------------------------------------


def require_store(url: str) -> None:
    """NotFoundError "no store at URL" unless ``url`` holds an spx store; writes nothing.

    Example: ``require_store("sqlite:////tmp/typo.db")`` raises when the file is missing.
    """
    with readonly_connection(url) as conn:
        _require_tables(conn, url)


def _no_store(url: str, why: str = "") -> NotFoundError:
    reason = f": {why}" if why else ""
    return NotFoundError(
        f"no store at {mask_url(url)}{reason} (check --store / SPX_STORE_URL; "
        "`spx sweep launch` creates a store)"
    )


def _require_tables(conn: Connection, url: str) -> None:
    names = ", ".join(f"'{name}'" for name in _STORE_TABLES)
    if conn.dialect.name == "sqlite":
        sql = f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({names})"
    else:  # resolved through the search path, as the user's statement will be
        sql = f"SELECT count(to_regclass(name)) FROM unnest(ARRAY[{names}]) AS name"
    try:
        found = conn.exec_driver_sql(sql).scalar()
    except DBAPIError as exc:  # e.g. SQLite: "file is not a database"
        raise _no_store(url, _first_line(exc.orig)) from None
    if found != len(_STORE_TABLES):
        raise _no_store(url, "it holds no spx tables")


# -- connections ----------------------------------------------------------------------


def readonly_engine(url: str) -> Engine:
    """An engine on ``url`` for reads: SQLite must exist (it is never created); PostgreSQL
    transactions are READ ONLY. Example: ``readonly_engine("sqlite:///.spx/spx.db")``
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, url)
    if backend == "postgresql":
        # psycopg 3 whatever the URL names: its stream() is what keeps a query to one
        # statement and cancels it on the server (a project dependency, unlike psycopg2).
        parsed = parsed.set(drivername="postgresql+psycopg")
        args: dict[str, Any] = {}
        if "connect_timeout" not in parsed.query:
            args["connect_timeout"] = 10  # fail in seconds, not minutes, when a host is silent
        engine = create_engine(parsed, pool_pre_ping=True, connect_args=args)
        event.listen(engine, "begin", _postgres_read_only)
        return engine
    raise ConfigError(
        "the store needs a sqlite or postgresql URL", field="store", value=mask_url(url)
    )


def _sqlite_engine(parsed: URL, url: str) -> Engine:
    database = parsed.database or ""
    if not database or database == ":memory:":
        raise _no_store(url, "an in-memory database starts empty")
    if database.startswith("file:"):
        raise ConfigError("read commands need an SQLite file path", field="store", value=url)
    path = Path(database).expanduser().resolve()
    if not path.is_file():
        raise _no_store(url)
    engine = create_engine(f"sqlite:///file:{quote(str(path))}?mode=rw&uri=true")
    event.listen(engine, "connect", _sqlite_query_only)
    return engine


@contextmanager
def readonly_connection(url: str) -> Iterator[Connection]:
    """A connection inside a transaction that is always rolled back.

    Failing to connect is a StoreError (a PostgreSQL database that does not exist: "no
    store at ..."); errors of the statements run inside are left to the caller.
    Example: ``with readonly_connection(url) as c: c.exec_driver_sql("SELECT 1")``
    """
    engine = readonly_engine(url)
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            first = _first_line(getattr(exc, "orig", None) or exc)
            if re.search(r'database ".*" does not exist', first):
                raise _no_store(url, first.split("FATAL:")[-1].strip()) from None
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
    # The lexical check reads '...' the standard way; make the server agree.
    conn.exec_driver_sql("SET LOCAL standard_conforming_strings = on")


def _first_line(exc: object) -> str:
    text = mask_url(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the user's statement -------------------------------------------------------------


@dataclass
class ReadRows:
    """The rows of one read, streamed: iterate once. ``truncated`` is set when the limit
    cut the rows; ``notes`` are lines for the user (e.g. a superuser role)."""

    columns: list[str]
    limit: int
    source: Iterator[tuple]
    translate: _Translate
    notes: list[str] = field(default_factory=list)
    truncated: bool = False

    def __iter__(self) -> Iterator[tuple]:
        count = 0
        try:
            for row in self.source:
                if count == self.limit:
                    self.truncated = True
                    return
                count += 1
                yield tuple(row)
        except Exception as exc:
            raise self.translate(exc) from None


@contextmanager
def read_rows(
    url: str, sql: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, limit: int = DEFAULT_LIMIT
) -> Iterator[ReadRows]:
    """Run one read-only statement (see the module docstring) and stream its rows.

    At most ``limit`` rows come back (``truncated`` says when more were there); the
    statement is cancelled after ``timeout_s`` seconds. Refused or failing SQL is a
    ConfigError naming ``query``. Example: see the module docstring.
    """
    _check_bounds(timeout_s, limit)
    dialect = make_url(url).get_backend_name()
    check_read_sql(sql, dialect)
    with readonly_connection(url) as conn:
        _require_tables(conn, url)
        raw: Any = conn.connection.dbapi_connection
        if dialect == "sqlite":
            opened = _sqlite_rows(raw, sql, timeout_s)
        else:
            opened = _postgres_rows(conn, raw, sql, timeout_s)
        with opened as (columns, source, notes, translate):
            yield ReadRows(columns, limit, source, translate, notes)


def _check_bounds(timeout_s: float, limit: int) -> None:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
        raise ConfigError("must be a number of seconds above 0", field="--timeout", value=timeout_s)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError("must be a whole number of rows, 1 or more", field="--limit", value=limit)


# columns, rows, notes, and how to translate a driver error into what the user sees
_Opened = Iterator[tuple[list[str], Iterator[tuple], list[str], "_Translate"]]
_Translate = Callable[[Exception], BaseException]


@contextmanager
def _sqlite_rows(raw: sqlite3.Connection, sql: str, timeout_s: float) -> _Opened:
    deadline = time.monotonic() + timeout_s
    translate = _translator("sqlite", timeout_s, deadline)
    raw.execute(f"PRAGMA busy_timeout={min(30000, int(timeout_s * 1000))}")
    raw.set_authorizer(_sqlite_authorize)
    # Returning non-zero interrupts the statement ("interrupted"), while it steps too.
    raw.set_progress_handler(lambda: int(time.monotonic() >= deadline), 1000)
    cursor = raw.cursor()
    try:
        try:
            cursor.execute(sql)
        except Exception as exc:
            raise translate(exc) from None
        yield [d[0] for d in cursor.description or ()], iter(cursor), [], translate
    finally:
        cursor.close()
        raw.set_progress_handler(None, 0)
        raw.set_authorizer(None)


def _sqlite_authorize(action: int, arg1: str | None, *_: object) -> int:
    if action in _SQLITE_ALLOWED:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg1 or "").lower() not in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


@contextmanager
def _postgres_rows(conn: Connection, raw: Any, sql: str, timeout_s: float) -> _Opened:
    import psycopg

    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, round(timeout_s * 1000))}")
    notes = _drop_superuser(conn)
    translate = _translator("postgresql", timeout_s)
    cursor = raw.cursor()
    # stream(): the extended protocol (one statement, server-enforced), rows as they come,
    # and a cancel request to the server when the client stops early or is interrupted.
    chunk = 1000 if psycopg.capabilities.has_stream_chunked() else 1
    stream = cursor.stream(sql, size=chunk)
    try:
        try:
            first = next(stream, None)
        except Exception as exc:
            raise translate(exc) from None
        if first is None:  # no rows: the stream saw no row description, so ask for it
            yield _postgres_columns(raw, sql), iter(()), notes, translate
        else:
            columns = [d.name for d in cursor.description or ()]
            yield columns, _prepend(first, stream), notes, translate
    finally:
        stream.close()
        cursor.close()


def _prepend(first: tuple, rest: Iterator[tuple]) -> Iterator[tuple]:
    yield first
    yield from rest


def _drop_superuser(conn: Connection) -> list[str]:
    """For a superuser role, run as pg_read_all_data (PostgreSQL 14+) for the statement."""
    role, superuser, version = conn.exec_driver_sql(
        "SELECT current_user, current_setting('is_superuser') = 'on',"
        " current_setting('server_version_num')::int"
    ).one()
    if not superuser:
        return []
    note = (
        f"note: the store's role {role!r} is a PostgreSQL superuser; better point --store at "
        "a role that can only read (docs/store.md)"
    )
    if version >= 140000:
        conn.exec_driver_sql("SET LOCAL ROLE pg_read_all_data")
        note += "; this statement ran as pg_read_all_data, without superuser powers"
    return [note]


def _postgres_columns(raw: Any, sql: str) -> list[str]:
    from psycopg import pq

    pgconn, encoding = raw.pgconn, raw.info.encoding
    if pgconn.prepare(b"", sql.encode(encoding)).status != pq.ExecStatus.COMMAND_OK:
        return []
    described = pgconn.describe_prepared(b"")
    return [(described.fname(i) or b"").decode(encoding) for i in range(described.nfields)]


def _translator(dialect: str, timeout_s: float, deadline: float = 0.0) -> _Translate:
    def translate(exc: Exception) -> BaseException:
        if isinstance(exc, ConfigError):
            return exc
        text = _first_line(exc)
        state = getattr(exc, "sqlstate", None)
        # SQLite says "interrupted" when the progress handler stopped the statement: at the
        # deadline, or because Ctrl-C raised inside the handler (and was swallowed there).
        if dialect == "sqlite" and text == "interrupted" and time.monotonic() < deadline:
            return KeyboardInterrupt()
        if state == _TIMEOUT_SQLSTATE or (dialect == "sqlite" and text == "interrupted"):
            return ConfigError(
                f"the query ran past {timeout_s:g} s and was cancelled; "
                "raise --timeout or narrow the query",
                field="--timeout",
                value=timeout_s,
            )
        if state == _READ_ONLY_SQLSTATE or "readonly database" in text:
            return ConfigError(
                f"the store is read-only here; write statements are refused ({text})",
                field="query",
            )
        if state == _PRIVILEGE_SQLSTATE or "authoriz" in text:
            return ConfigError(
                f"the database refused it: only reads of the store are allowed ({text})",
                field="query",
            )
        import psycopg

        if isinstance(exc, sqlite3.Error | psycopg.Error | DBAPIError):
            return ConfigError(f"the database rejected the query: {text}", field="query")
        return exc

    return translate
