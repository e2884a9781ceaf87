"""The results store: sweeps, trials and metric history in SQLite or PostgreSQL.

``Store.open(url)`` connects and migrates the schema to the newest Alembic revision. The
sweep driver is the single writer; the read side uses the query methods, or
``Store.engine`` for its own read-only SQL (e.g. ``pandas.read_sql``).

>>> store = Store.open("sqlite:///:memory:")
>>> sweep = store.create_sweep("demo", task="digits-mlp", method="grid",
...                            spec_text="name: demo", spec_hash="0" * 64)
>>> trial = store.add_trial(sweep.id, 0, {"train.lr": 0.01, "model.width": 64})
>>> store.upsert_metrics(trial.id, [(10, "train/loss", 0.5), (20, "train/loss", 0.25)])
2
>>> store.metric_history([trial.id])
[(1, 10, 'train/loss', 0.5), (1, 20, 'train/loss', 0.25)]
>>> store.update_trial(trial.id, status=TrialStatus.COMPLETED, metrics={"val/loss": 0.3})
>>> [(t.number, t.status.value, t.metrics) for t in store.trials(sweep.id)]
[(0, 'COMPLETED', {'val/loss': 0.3})]
>>> store.close()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Engine, bindparam, create_engine, event, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from spx.errors import ConfigError, NotFoundError, StoreError
from spx.platform.settings import mask_url
from spx.platform.store_models import (
    Metric,
    Sweep,
    SweepRow,
    SweepStatus,
    Trial,
    TrialRow,
    TrialStatus,
    encode_metrics,
    promote,
    utcnow,
)

__all__ = ["Store", "SweepRow", "SweepStatus", "TrialRow", "TrialStatus"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CHUNK = 500  # rows per INSERT: 2,000 bound parameters, well under SQLite's 32,766
_MIGRATION_LOCK = 0x5350_5801  # PostgreSQL advisory lock key held while migrating
# busy_timeout first: switching to WAL may itself wait on another process's lock.
# synchronous=NORMAL is safe with WAL (a power cut can lose the last commits, never corrupt).
_SQLITE_PRAGMAS = (
    "busy_timeout=30000",
    "journal_mode=WAL",
    "foreign_keys=ON",
    "synchronous=NORMAL",
)


class Store:
    """A results store at one SQLAlchemy URL; build it with ``Store.open``.

    Example: ``with Store.open("sqlite:///.spx/spx.db") as store: store.list_sweeps()``
    """

    def __init__(self, url: str, engine: Engine):
        self.url = url
        self.engine = engine  # public for read-only queries, e.g. pandas.read_sql
        # On SQLite, writes open with BEGIN IMMEDIATE (see _sqlite_begin).
        self._writer = engine.execution_options(spx_write=True)
        self._local = threading.local()  # this thread's batch(), if any

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect to ``url`` and migrate its schema to the newest revision.

        Any failure is a StoreError whose message shows the URL with its password masked.
        Example: ``Store.open("postgresql+psycopg://bob:pw@db:5432/spx")``
        """
        try:
            engine = _engine(url)
        except (SQLAlchemyError, OSError) as exc:
            raise _open_error(url, exc) from None
        try:
            _upgrade(engine)
        except (SQLAlchemyError, CommandError, OSError) as exc:
            engine.dispose()
            raise _open_error(url, exc) from None
        log.debug("results store open at %s", mask_url(url))
        return cls(url, engine)

    def close(self) -> None:
        """Close every pooled connection. The store must not be used afterwards."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({mask_url(self.url)!r})"

    # -- sweeps -------------------------------------------------------------------------

    def create_sweep(
        self, name: str, *, task: str, method: str, spec_text: str, spec_hash: str
    ) -> SweepRow:
        """Record a new PENDING sweep; a name already taken is a ConfigError on ``name``.

        Example: ``store.create_sweep("s1", task="digits-mlp", method="grid",
        spec_text=text, spec_hash=sha256(text))``
        """
        stmt = (
            self._insert(Sweep)
            .values(
                name=name,
                task=task,
                method=method,
                spec_text=spec_text,
                spec_hash=spec_hash,
                status=SweepStatus.PENDING.value,
            )
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(Sweep.id)
        )
        with self._write() as s:
            sweep_id = s.execute(stmt).scalar_one_or_none()
            if sweep_id is None:
                raise ConfigError(
                    "a sweep with this name already exists in the store", field="name", value=name
                )
            return SweepRow.of(s.get_one(Sweep, sweep_id))

    def get_sweep(self, name: str) -> SweepRow:
        """The sweep called ``name``; NotFoundError lists up to 10 recent names if none.

        Example: ``store.get_sweep("s1").status is SweepStatus.PENDING``
        """
        with self._read() as s:
            sweep = s.scalars(select(Sweep).where(Sweep.name == name)).one_or_none()
            if sweep is not None:
                return SweepRow.of(sweep)
            recent = s.scalars(select(Sweep.name).order_by(Sweep.id.desc()).limit(10)).all()
        known = ", ".join(recent) if recent else "the store has no sweeps yet"
        raise NotFoundError(f"no sweep named {name!r} in the store (known: {known})")

    def list_sweeps(self) -> list[SweepRow]:
        """Every sweep, newest first. Example: ``[row.name for row in store.list_sweeps()]``"""
        with self._read() as s:
            rows = s.scalars(select(Sweep).order_by(Sweep.created_at.desc(), Sweep.id.desc()))
            return [SweepRow.of(sweep) for sweep in rows]

    def update_sweep(
        self,
        sweep_id: int,
        *,
        status: SweepStatus | None = None,
        mlflow_experiment_id: str | None = None,
        mlflow_run_id: str | None = None,
        started: bool = False,
        finished: bool = False,
        error: str | None = None,
    ) -> None:
        """Set the given fields (None leaves one as it is); ``started``/``finished`` stamp now.
        A sweep set RUNNING without an ``error`` has none (a resumed sweep runs again).

        Example: ``store.update_sweep(sweep.id, status=SweepStatus.RUNNING, started=True)``
        """
        values = _given(
            status=None if status is None else SweepStatus(status).value,
            mlflow_experiment_id=mlflow_experiment_id,
            mlflow_run_id=mlflow_run_id,
            started_at=utcnow() if started else None,
            finished_at=utcnow() if finished else None,
            error=error,
        )
        if error is None and values.get("status") == SweepStatus.RUNNING.value:
            values["error"] = None
        self._update(Sweep, sweep_id, values)

    def request_stop(self, name: str, cancel: bool = False) -> SweepRow:
        """Mark a PENDING or RUNNING sweep STOPPING (or CANCELLING) for its driver to see.

        A cancel overrides a stop, never the reverse; a finished sweep is left alone.
        Returns the row as it is now. Example: ``store.request_stop("s1").status``
        """
        target = SweepStatus.CANCELLING if cancel else SweepStatus.STOPPING
        allowed = [SweepStatus.PENDING, SweepStatus.RUNNING, SweepStatus.STOPPING]
        stmt = (
            update(Sweep)
            .where(Sweep.name == name, Sweep.status.in_([s.value for s in allowed]))
            .values(status=target.value)
        )
        with self._write() as s:
            s.connection().execute(stmt)
        return self.get_sweep(name)

    # -- trials -------------------------------------------------------------------------

    def add_trial(self, sweep_id: int, number: int, params: dict[str, Any]) -> TrialRow:
        """Record trial ``number`` of a sweep as PENDING; if it exists, return it unchanged.

        ``params`` is the flat trial config (dotted keys); the keys in ``PROMOTED`` are also
        copied into their own columns. Example: ``store.add_trial(sweep.id, 0, params)``
        """
        stmt = (
            self._insert(Trial)
            .values(
                sweep_id=sweep_id,
                number=number,
                params=dict(params),
                status=TrialStatus.PENDING.value,
                **promote(params),
            )
            .on_conflict_do_nothing(index_elements=["sweep_id", "number"])
            .returning(Trial)
        )
        with self._write() as s:
            try:
                added = s.scalars(stmt).one_or_none()
            except IntegrityError as exc:
                raise NotFoundError(f"no sweep with id {sweep_id} in the store") from exc
            if added is not None:
                return TrialRow.of(added)
            where = (Trial.sweep_id == sweep_id) & (Trial.number == number)
            return TrialRow.of(s.scalars(select(Trial).where(where)).one())

    def update_trial(
        self,
        trial_id: int,
        *,
        status: TrialStatus | None = None,
        attempt: int | None = None,
        error: str | None = None,
        metrics: dict[str, float] | None = None,
        step: int | None = None,
        mlflow_run_id: str | None = None,
        node_id: str | None = None,
        started: bool = False,
        finished: bool = False,
        heartbeat: bool = False,
    ) -> None:
        """Set the given fields (None leaves one as it is); the three flags stamp now.
        A trial set COMPLETED or PRUNED without an ``error`` has none: an earlier attempt's
        (the LOST one it was retried after) no longer applies.

        Example: ``store.update_trial(trial.id, status=TrialStatus.COMPLETED,
        metrics={"val/loss": 0.3}, finished=True)``
        """
        now = utcnow()
        values = _given(
            status=None if status is None else TrialStatus(status).value,
            attempt=attempt,
            error=error,
            metrics=None if metrics is None else encode_metrics(metrics),
            step=step,
            mlflow_run_id=mlflow_run_id,
            node_id=node_id,
            started_at=now if started else None,
            finished_at=now if finished else None,
            heartbeat_at=now if heartbeat else None,
        )
        if error is None and values.get("status") in _ENDED_WELL:
            values["error"] = None
        self._update(Trial, trial_id, values)

    def trials(self, sweep_id: int, status: TrialStatus | None = None) -> list[TrialRow]:
        """The trials of a sweep in number order, optionally only those in ``status``.

        Example: ``[t.number for t in store.trials(sweep.id, TrialStatus.PENDING)]``
        """
        query = select(Trial).where(Trial.sweep_id == sweep_id).order_by(Trial.number)
        if status is not None:
            query = query.where(Trial.status == TrialStatus(status).value)
        with self._read() as s:
            return [TrialRow.of(trial) for trial in s.scalars(query)]

    # -- metrics ------------------------------------------------------------------------

    def upsert_metrics(self, trial_id: int, rows: Iterable[tuple[int, str, float]]) -> int:
        """Write (step, name, value) rows in one transaction; the last value of a key wins.

        Returns the number of distinct (step, name) rows written. NaN and infinities are
        kept (SQLite stores NaN as NULL, read back as NaN).
        Example: ``store.upsert_metrics(trial.id, [(0, "val/loss", 2.3)]) == 1``
        """
        latest = {(int(step), str(name)): float(value) for step, name, value in rows}
        # Sorted, so concurrent writers lock rows in one order and cannot deadlock.
        items = [
            {"trial_id": trial_id, "step": step, "name": name, "value": value}
            for (step, name), value in sorted(latest.items())
        ]
        if not items:
            return 0
        pending = self._pending()
        if pending is not None:  # written with the batch's other metric rows
            pending.metrics.update(((trial_id, st, n), v) for (st, n), v in latest.items())
            return len(items)
        with self._write() as s:
            try:
                for start in range(0, len(items), CHUNK):
                    s.execute(self._upsert(items[start : start + CHUNK]))
            except IntegrityError as exc:
                raise NotFoundError(f"no trial with id {trial_id} in the store") from exc
        return len(items)

    def metric_history(
        self, trial_ids: Sequence[int], names: Sequence[str] | None = None
    ) -> list[tuple[int, int, str, float]]:
        """(trial_id, step, name, value) rows ordered by trial, name, step.

        Example: ``store.metric_history([t.id for t in trials], names=["val/loss"])``
        """
        ids = sorted(set(trial_ids))
        out: list[tuple[int, int, str, float]] = []
        with self._read() as s:
            for start in range(0, len(ids), CHUNK):
                query = select(Metric.trial_id, Metric.step, Metric.name, Metric.value).where(
                    Metric.trial_id.in_(ids[start : start + CHUNK])
                )
                if names is not None:
                    query = query.where(Metric.name.in_(list(names)))
                query = query.order_by(Metric.trial_id, Metric.name, Metric.step)
                out.extend((t, st, n, v) for t, st, n, v in s.execute(query))
        return out

    def count_metrics(self, trial_id: int) -> int:
        """How many (step, name) rows a trial has. Example: ``store.count_metrics(trial.id)``"""
        query = select(func.count()).select_from(Metric).where(Metric.trial_id == trial_id)
        with self._read() as s:
            return s.execute(query).scalar_one()

    # -- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._session(self.engine) as session:
            yield session

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write this thread makes inside the block goes into one transaction,
        committed when the block ends (and none of it when the block raises). Reads still
        see only what is committed; a nested ``batch`` joins the outer one.

        The driver writes each turn of its trial loop this way: the rows of all the trials
        that turn started or finished in one commit, whatever their number.

        >>> store = Store.open("sqlite:///:memory:")
        >>> sweep = store.create_sweep("b", task="t", method="grid", spec_text="", spec_hash="h")
        >>> with store.batch():
        ...     rows = [store.add_trial(sweep.id, n, {}) for n in range(3)]
        ...     store.update_trial(rows[0].id, status=TrialStatus.RUNNING)
        >>> [t.status.value for t in store.trials(sweep.id)]
        ['RUNNING', 'PENDING', 'PENDING']
        """
        if self._pending() is not None:
            yield
            return
        with self._session(self._writer) as session:
            self._local.batch = _Pending(session)
            try:
                yield
                self._flush(self._local.batch)
            finally:
                self._local.batch = None

    def _pending(self) -> _Pending | None:
        return getattr(self._local, "batch", None)

    def _flush(self, pending: _Pending) -> None:
        """A batch's deferred writes, a few statements whatever their number: the metric
        rows of every trial in multi-row upserts, the row updates merged per row and sent
        as one executemany per set of columns."""
        s = pending.session
        items = [
            {"trial_id": trial_id, "step": step, "name": name, "value": value}
            for (trial_id, step, name), value in sorted(pending.metrics.items())
        ]
        try:
            for start in range(0, len(items), CHUNK):
                s.execute(self._upsert(items[start : start + CHUNK]))
        except IntegrityError as exc:
            ids = sorted({trial_id for trial_id, _, _ in pending.metrics})
            raise NotFoundError(f"one of the trials {ids} is not in the store") from exc
        groups: dict[tuple[Any, tuple[str, ...]], list[dict[str, Any]]] = {}
        for (model, row_id), values in sorted(pending.updates.items(), key=_by_row):
            keys = tuple(sorted(values))
            groups.setdefault((model, keys), []).append(
                {"row_id": row_id, **{f"v_{k}": v for k, v in values.items()}}
            )
        for (model, keys), rows in groups.items():
            columns = model.__table__.c
            stmt = (
                update(model)
                .where(model.id == bindparam("row_id"))
                .values({k: bindparam(f"v_{k}", type_=columns[k].type) for k in keys})
            )
            result = s.connection().execute(stmt, rows)
            if result.rowcount != len(rows):
                ids = [row["row_id"] for row in rows]
                raise NotFoundError(f"one of the {model.__tablename__} {ids} is not in the store")

    @contextmanager
    def _write(self) -> Iterator[Session]:
        pending = self._pending()
        if pending is not None:  # inside batch(): its transaction commits
            yield pending.session
            return
        with self._session(self._writer) as session:
            yield session

    @contextmanager
    def _session(self, engine: Engine) -> Iterator[Session]:
        try:
            with Session(engine) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise StoreError(
                f"results store {mask_url(self.url)} failed: {mask_url(str(exc))}"
            ) from exc

    def _insert(self, model: type[Any]) -> Any:
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    def _upsert(self, chunk: list[dict[str, Any]]) -> Any:
        stmt = self._insert(Metric).values(chunk)
        return stmt.on_conflict_do_update(
            index_elements=["trial_id", "step", "name"], set_={"value": stmt.excluded.value}
        )

    def _update(self, model: type[Sweep] | type[Trial], row_id: int, values: dict) -> None:
        if not values:
            return
        pending = self._pending()
        if pending is not None:  # merged with the row's other updates in the batch
            pending.updates.setdefault((model, row_id), {}).update(values)
            return
        stmt = update(model).where(model.id == row_id).values(**values)
        with self._write() as s:
            result = s.connection().execute(stmt)  # Core: no ORM state to synchronize
            if result.rowcount == 0:
                raise NotFoundError(f"no {model.__tablename__[:-1]} with id {row_id} in the store")


# -- opening --------------------------------------------------------------------------


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        _make_parent(parsed)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend != "postgresql":
        raise ConfigError(
            "the store needs a sqlite or postgresql URL", field="store", value=mask_url(url)
        )
    return create_engine(parsed, pool_pre_ping=True, connect_args=connect_args(parsed))


def connect_args(url: URL) -> dict[str, Any]:
    """Driver arguments for a PostgreSQL connection: a 10 s ``connect_timeout`` unless the
    URL sets one, so a silent host fails in seconds, not minutes."""
    libpq = url.get_driver_name() in ("psycopg", "psycopg2")
    return {"connect_timeout": 10} if libpq and "connect_timeout" not in url.query else {}


def _make_parent(url: URL) -> None:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Hand transaction control to _sqlite_begin instead of the driver's implicit BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" when another writer got in between (busy_timeout cannot help); writers
    # therefore take the write lock up front and queue on busy_timeout instead.
    write = conn.get_execution_options().get("spx_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _upgrade(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    with engine.execution_options(spx_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Processes opening one fresh database at once migrate one after the other.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _open_error(url: str, exc: BaseException) -> StoreError:
    # Raised "from None": the original text may carry the URL with its password.
    detail = mask_url(str(exc)).splitlines()[0] if str(exc) else ""
    return StoreError(
        f"cannot open the results store at {mask_url(url)}: {type(exc).__name__}: {detail}"
    )


class _Pending:
    """What a ``Store.batch`` defers to its end: metric rows by (trial, step, name), and
    row updates by (model, id), each merged as it comes (the last value of a key wins)."""

    def __init__(self, session: Session):
        self.session = session
        self.metrics: dict[tuple[int, int, str], float] = {}
        self.updates: dict[tuple[Any, int], dict[str, Any]] = {}


def _by_row(entry: tuple[tuple[Any, int], dict[str, Any]]) -> tuple[str, int]:
    # Rows in one order (table, id) in every writer: concurrent batches cannot deadlock.
    (model, row_id), _ = entry
    return model.__tablename__, row_id


_ENDED_WELL = frozenset({TrialStatus.COMPLETED.value, TrialStatus.PRUNED.value})


def _given(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
