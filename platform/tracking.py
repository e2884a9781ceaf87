"""MLflow tracking: one experiment per sweep, a parent run, one child run per trial.

The driver is the only caller. Every call goes through :meth:`Tracker._safe`: when the
tracking backend fails the sweep goes on (the store keeps everything) and the failure is
counted, never raised. After a failure that is not the request's own fault the tracker
skips MLflow for ``OFFLINE_S`` (counting each skipped call), so a dead server costs the
driver one timeout per half minute, not one per call; ``spx sweep sync`` backfills MLflow
from the store afterwards. For the same reason an HTTP tracking server gets 2 retries
and a 20 s timeout unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``_TIMEOUT`` say otherwise
(MLflow's own defaults, 7 and 120 s, can hold the driver for minutes per call).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from spx.errors import ConfigError, TrackingError
from spx.platform.paths import artifact_folder
from spx.platform.settings import mask_url

if TYPE_CHECKING:
    from spx.platform.spec import SweepSpec

log = logging.getLogger("spx.tracking")
T = TypeVar("T")

_SAFE_TAG = re.compile(r"[A-Za-z0-9_.-]+")
_MAX_METRICS = 1000
_MAX_PARAMS = 100
OFFLINE_S = 30.0
# MLflow error codes that blame the request, not the server: no reason to pause.
_REQUEST_ERRORS = frozenset(
    {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST", "BAD_REQUEST"}
)


def _quiet() -> None:
    # No artifact progress bars in the user's terminal (appending to a table downloads it).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("alembic", "mlflow", "mlflow.store", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # It logs a whole traceback for each failed database write before raising; _safe says
    # the same in one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


class Tracker:
    def __init__(self, tracking_uri: str, artifact_root: Path | None = None):
        _quiet()
        from mlflow.tracking import MlflowClient

        if tracking_uri.startswith(("http://", "https://")):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        self.uri = tracking_uri
        self.artifact_root = artifact_root
        check_backend(tracking_uri)  # MLflow retries a dead database for ~100 s
        try:  # creates MLflow's tables on a fresh database (homelock.setup_lock)
            self.client = MlflowClient(tracking_uri=tracking_uri)
        except Exception as exc:  # MLflow raises its own, SQLAlchemy's and Alembic's errors
            raise _open_error(tracking_uri, exc) from None
        self.failures = 0
        self._offline_until = 0.0
        tune_sqlite(tracking_uri, self.client)

    def __repr__(self) -> str:
        return f"Tracker({mask_url(self.uri)!r})"

    def _safe(self, what: str, fn: Callable[[], T]) -> T | None:
        if time.monotonic() < self._offline_until:
            self.failures += 1
            return None
        try:
            return fn()
        except Exception as exc:  # the tracking backend must never stop a sweep
            self.failures += 1
            pause = getattr(exc, "error_code", None) not in _REQUEST_ERRORS
            if pause:
                self._offline_until = time.monotonic() + OFFLINE_S
            log.warning(
                "MLflow %s failed: %s%s",
                what,
                mask_url(str(exc))[:500],
                f" (MLflow calls skipped for {OFFLINE_S:g} s)" if pause else "",
            )
            return None

    def experiment(self, name: str) -> str | None:
        """The id of the experiment named ``name``, created when missing."""
        return self._safe(
            "create experiment", lambda: experiment_id(self.client, name, self.artifact_root)
        )

    def start_run(
        self,
        experiment_id: str,
        name: str,
        params: dict[str, Any],
        parent: str | None = None,
        tags: dict[str, str] | None = None,
        reuse: dict[str, str] | None = None,
    ) -> str | None:
        """A new run's id; with ``reuse`` (tags that identify it, see :meth:`find_run`) the
        id of the run an earlier, interrupted call created, when there is one."""
        all_tags = dict(tags or {})
        if parent:
            all_tags["mlflow.parentRunId"] = parent
        found = self.find_run(experiment_id, reuse) if reuse else None

        def start() -> str:
            run_id = found
            if run_id is None:
                run = self.client.create_run(experiment_id, run_name=name, tags=all_tags)
                run_id = run.info.run_id
            self._log_params(run_id, params)  # again for a found run: it may have none yet
            return run_id

        return self._safe("start run", start)

    def find_run(self, experiment_id: str, tags: dict[str, str]) -> str | None:
        """The id of the newest active run of the experiment with all of ``tags`` (values
        of letters, digits, ``-``, ``_`` and ``.`` only), or None.

        Example: ``tracker.find_run(exp, {"mlflow.parentRunId": parent, "spx.trial": "3"})``
        """
        for value in tags.values():
            if not _SAFE_TAG.fullmatch(value):
                raise ValueError(f"a tag value to search for must match {_SAFE_TAG.pattern}")
        query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in sorted(tags.items()))

        def find() -> str | None:
            runs = self.client.search_runs(
                [experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"]
            )
            return runs[0].info.run_id if runs else None

        return self._safe("find run", find)

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, param_text(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), _MAX_PARAMS):
            self.client.log_batch(run_id, params=items[i : i + _MAX_PARAMS])

    def log_metrics(self, run_id: str | None, rows: Iterable[tuple[int, str, float]]) -> None:
        """Log (step, name, value) rows in batches."""
        if run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, float(value), now, step) for step, name, value in rows]

        def send() -> None:
            for i in range(0, len(metrics), _MAX_METRICS):
                self.client.log_batch(run_id, metrics=metrics[i : i + _MAX_METRICS])

        self._safe("log metrics", send)

    def log_table(self, run_id: str | None, table: dict[str, list], artifact_file: str) -> None:
        """Append rows to a table artifact (MLflow's table view shows it)."""
        if run_id is not None:
            self._safe(
                "log table",
                lambda: self.client.log_table(run_id, data=table, artifact_file=artifact_file),
            )

    def log_text(self, run_id: str | None, text: str, artifact_file: str) -> None:
        if run_id is not None:
            self._safe("log artifact", lambda: self.client.log_text(run_id, text, artifact_file))

    def set_tags(self, run_id: str | None, tags: dict[str, str]) -> None:
        if run_id is None:
            return
        from mlflow.entities import RunTag

        items = [RunTag(k, v) for k, v in tags.items()]
        self._safe("set tags", lambda: self.client.log_batch(run_id, tags=items))

    def reopen(self, run_id: str | None) -> None:
        """Mark a run RUNNING again (a resumed sweep or a retried trial continues it)."""
        if run_id is not None:
            self._safe("reopen run", lambda: self.client.update_run(run_id, status="RUNNING"))

    def end_run(self, run_id: str | None, status: str) -> None:
        """End a run as FINISHED, FAILED or KILLED."""
        if run_id is not None:
            self._safe("end run", lambda: self.client.set_terminated(run_id, status=status))

    def send(self, work: RunWork, run_id: str | None) -> str | None:
        """Do ``work`` to one run (``run_id``, or the run ``work.open`` creates) with the
        fewest calls: the run, then one ``log_batch`` of its params, metrics and tags
        (more only past MLflow's limits), its text and table artifacts, its end. Returns
        the run's id (None when it could not be created: the rest is skipped, counted)."""
        artifacts = None
        if run_id is None and work.open is not None:
            o = work.open
            run_id = self.find_run(o.experiment_id, o.reuse) if o.reuse else None
            if run_id is None:
                tags = {**o.tags, **({"mlflow.parentRunId": o.parent} if o.parent else {})}
                created = self._safe(
                    "start run",
                    lambda: self.client.create_run(
                        o.experiment_id, run_name=o.name, tags=tags, start_time=o.start_ms
                    ),
                )
                if created is not None:
                    run_id, artifacts = created.info.run_id, created.info.artifact_uri
        if run_id is None:  # counted by _safe; `spx sweep sync` copies it from the store
            return None
        if work.reopen:
            self.reopen(run_id)
        self._log_batch(run_id, work)
        for text, name in work.texts:
            if not self._write_local(artifacts, text, name):
                self.log_text(run_id, text, name)
        for table, name in work.tables:
            self.log_table(run_id, table, name)
        if work.end is not None:
            self.end_run(run_id, work.end)
        return run_id

    def _write_local(self, artifact_uri: str | None, text: str, name: str) -> bool:
        """Write a text artifact straight into a run's local (``file:``) artifact folder,
        which is all MLflow's local artifact repository does, without the run lookup and
        temporary file of ``log_text`` (~4 of a short trial's ~14 ms of MLflow here).
        False for any other kind of artifact store: ``log_text`` goes through MLflow."""
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        parsed = urlparse(artifact_uri or "")
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            return False
        target = Path(url2pathname(parsed.path)) / name

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

        self._safe("log artifact", write)  # a failure is counted like log_text's
        return True

    def _log_batch(self, run_id: str, work: RunWork) -> None:
        from mlflow.entities import Metric, Param, RunTag

        params = [Param(k, param_text(v)) for k, v in sorted(work.params.items())]
        metrics = [Metric(n, float(v), ms, step) for step, n, v, ms in work.metrics]
        tags = [RunTag(k, v) for k, v in work.tags.items()]
        while params or metrics or tags:
            chunk_p, params = params[:_MAX_PARAMS], params[_MAX_PARAMS:]
            chunk_t, tags = tags[:_MAX_PARAMS], tags[_MAX_PARAMS:]
            room = _MAX_METRICS - len(chunk_p) - len(chunk_t)
            chunk_m, metrics = metrics[:room], metrics[room:]
            call = partial(
                self.client.log_batch, run_id, metrics=chunk_m, params=chunk_p, tags=chunk_t
            )
            self._safe("log batch", call)


# -- batched writes for a sweep's trial runs ---------------------------------------------


@dataclass
class RunOpen:
    """How to create a trial's run (``reuse``: tags of a run an earlier driver may have
    created and not stored, see :meth:`Tracker.find_run`)."""

    experiment_id: str
    name: str
    parent: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    reuse: dict[str, str] | None = None
    start_ms: int = field(default_factory=lambda: int(time.time() * 1000))


@dataclass
class RunWork:
    """What is to be done to one run, in this order whatever order it was asked in:
    create it, reopen it, log params, metrics ((step, name, value, ms) rows) and tags, add
    its text and table artifacts, end it."""

    open: RunOpen | None = None
    reopen: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[tuple[int, str, float, int]] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    texts: list[tuple[str, str]] = field(default_factory=list)
    tables: list[tuple[dict[str, list], str]] = field(default_factory=list)
    end: str | None = None

    def merge(self, later: RunWork) -> None:
        """Add what ``later`` asks to this (a run is opened once and ended last)."""
        self.open = self.open or later.open
        self.reopen = self.reopen or later.reopen
        self.params.update(later.params)
        self.metrics.extend(later.metrics)
        self.tags.update(later.tags)
        self.texts.extend(later.texts)
        self.tables.extend(later.tables)
        self.end = later.end or self.end


class RunQueue:
    """MLflow work for a sweep's trial runs, sent by one thread of its own in batches.

    The driver's trial loop adds work for a trial (by its number) during a turn and hands
    the turn over with :meth:`hand_over`, after the store has committed what the work
    tells. The thread takes every turn handed over since it last looked and does each
    trial's work with :meth:`Tracker.send`: when MLflow keeps up, a run's work goes out
    within a turn; when it falls behind (thousands of one-second trials), what piled up for
    a run is merged, so a short trial costs three calls whatever the backlog (create, one
    log_batch, end; its config artifact is a file when the artifact store is local), and
    the loop never waits for MLflow. The ids of
    runs it created go to ``on_created`` in one call per batch (the driver stores them in
    one transaction). MLflow's own failures are counted by the tracker; any other error
    stops the thread and is raised by :meth:`check` in the loop.
    """

    def __init__(self, tracker: Tracker, on_created: Callable[[dict[int, str]], None]):
        self.tracker, self.on_created = tracker, on_created
        self.turn: dict[int, RunWork] = {}
        """This turn's work, not handed over yet (the loop's thread only)."""
        self.run_ids: dict[int, str] = {}
        self._handed: list[dict[int, RunWork]] = []
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="spx-mlflow", daemon=True)
        self._thread.start()

    def work(self, number: int, run_id: str | None = None) -> RunWork:
        """Trial ``number``'s work this turn; ``run_id``: its run, already known."""
        if run_id is not None:
            with self._cond:
                self.run_ids.setdefault(number, run_id)
        return self.turn.setdefault(number, RunWork())

    def metrics(self, number: int, rows: Iterable[tuple[int, str, float]]) -> None:
        now = int(time.time() * 1000)
        self.work(number).metrics.extend((s, n, float(v), now) for s, n, v in rows)

    def hand_over(self) -> None:
        """Give this turn's work to the thread."""
        if self.turn:
            with self._cond:
                self._handed.append(self.turn)
                self._cond.notify()
            self.turn = {}

    def discard(self) -> None:
        """Forget this turn's work (the store did not commit what it tells)."""
        self.turn = {}

    def backlog(self) -> int:
        """Turns handed over and not yet sent."""
        with self._cond:
            return len(self._handed) + self._busy

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Send everything handed over, then stop the thread; raise what it raised."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()
        self.check()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._handed and not self._closed:
                    self._cond.wait()
                if not self._handed:
                    return
                turns, self._handed, self._busy = self._handed, [], True
            merged: dict[int, RunWork] = {}
            for turn in turns:
                for number, work in turn.items():
                    if number in merged:
                        merged[number].merge(work)
                    else:
                        merged[number] = work
            try:
                created = {}
                for number, work in merged.items():
                    with self._cond:
                        known = self.run_ids.get(number)
                    run_id = self.tracker.send(work, known)
                    if run_id is not None and known is None:
                        with self._cond:
                            self.run_ids[number] = run_id
                        created[number] = run_id
                if created:
                    self.on_created(created)
            except BaseException as exc:  # raised in the loop's thread by check()
                self._error = exc
                return
            finally:
                with self._cond:
                    self._busy = False


def tune_sqlite(tracking_uri: str, client: Any = None) -> None:
    """MLflow's SQLite database as the store's: WAL mode (kept in the file) and, on the
    connections of ``client``'s engine, ``synchronous=NORMAL``. A commit then waits on no
    disk flush: a short trial's MLflow calls took ~90 ms of wall time in the default
    journal mode here, ~36 ms in WAL, ~15 ms with NORMAL; and the MLflow UI reads while
    the driver writes. Safe with WAL: a power cut can lose the
    last commits, never corrupt the file, and ``spx sweep sync`` restores them from the
    store. Best effort: a database busy or gone, or an MLflow without that engine, is left
    as it is."""
    import sqlite3

    import sqlalchemy as sa

    if _scheme(tracking_uri) != "sqlite":
        return
    path = tracking_uri.partition(":///")[2].partition("?")[0]
    if not path or path == ":memory:" or not Path(path).expanduser().is_file():
        return
    try:
        with sqlite3.connect(Path(path).expanduser(), timeout=5) as db:
            db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        log.debug("MLflow's database stays in its journal mode: %s", exc)
        return
    # MLflow makes its engine itself and has no option for pragmas; its SQL store keeps
    # it as ``engine`` (as Optuna's does, see search/study_storage.py).
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if isinstance(engine, sa.Engine) and engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _normal_sync)
        engine.dispose()  # its open connections start over with the pragma


def _normal_sync(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# The schemes MLflow's tracking-store registry serves (mlflow.tracking._tracking_service.utils),
# known without importing MLflow, which takes seconds; a test keeps them equal to MLflow's.
MLFLOW_SCHEMES = frozenset({"", "file", "databricks", "databricks-uc", "uc", "http", "https"})
DATABASE_SCHEMES = frozenset({"postgresql", "mysql", "sqlite", "mssql"})


def check_backend(tracking_uri: str) -> None:
    """Fail before a sweep writes anything on a tracking URI MLflow cannot use.

    ConfigError (exit 2) for a scheme MLflow does not serve or a database URL SQLAlchemy
    cannot use; TrackingError (exit 1) for a database that cannot be opened (unreachable,
    missing, not a database file). An HTTP server is not asked: a sweep runs on without it
    and ``spx sweep sync`` catches up. Imports no MLflow, so it costs milliseconds.

    >>> check_backend("http://127.0.0.1:1")  # not asked
    >>> check_backend("postgres://u@db/x")
    Traceback (most recent call last):
    spx.errors.ConfigError: --tracking-uri: MLflow has no tracking store for the scheme ...
    """
    scheme = _scheme(tracking_uri)
    if scheme in DATABASE_SCHEMES:
        _probe_database(tracking_uri)
    elif scheme not in MLFLOW_SCHEMES | _plugin_schemes():
        raise ConfigError(
            f"MLflow has no tracking store for the scheme {scheme!r} (it serves sqlite:///PATH, "
            "postgresql://..., mysql://..., mssql://..., http(s)://..., databricks, file:PATH)",
            field="--tracking-uri",
            value=mask_url(tracking_uri),
        )


def _scheme(uri: str) -> str:
    """The registry key MLflow would look ``uri`` up by (``postgresql+psycopg`` → postgresql)."""
    from urllib.parse import urlparse

    if uri in ("databricks", "databricks-uc", "uc"):
        return uri
    scheme = urlparse(uri).scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter: a local path
        return ""
    base = scheme.partition("+")[0]
    return base if base in DATABASE_SCHEMES else scheme


def _plugin_schemes() -> set[str]:
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="mlflow.tracking_store")}


def _probe_database(uri: str) -> None:
    """Connect once, as MLflow would, and read the catalogue."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from spx.platform.store import connect_args

    try:
        url = sa.make_url(uri)
        if url.get_backend_name() == "sqlite":
            path = url.database or ""
            if path in ("", ":memory:") or not Path(path).expanduser().exists():
                return  # MLflow creates the file
        engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args(url))
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise ConfigError(
            f"not a database URL SQLAlchemy can use ({_first_line(exc)})",
            field="--tracking-uri",
            value=mask_url(uri),
        ) from None
    sqlite = url.get_backend_name() == "sqlite"
    query = "SELECT count(*) FROM sqlite_master" if sqlite else "SELECT 1"
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(query))
    except sa.exc.SQLAlchemyError as exc:
        raise _open_error(uri, exc) from None
    finally:
        engine.dispose()


def _open_error(uri: str, exc: BaseException) -> TrackingError:
    return TrackingError(
        f"cannot open the MLflow tracking backend at {mask_url(uri)}: {_first_line(exc)}"
    )


def _first_line(exc: BaseException) -> str:
    # SQLAlchemy appends a "Background on this error" line; the first says what went wrong.
    lines = mask_url(str(exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def experiment_id(client: Any, name: str, artifact_root: Path | None) -> str:
    """The id of the experiment named ``name`` (restored or created when it must be).

    The experiment keeps the sweep's exact name (MLflow takes up to 256 characters, the
    sweep file 200); its artifact folder is the name's file-safe form, since the raw name
    could climb out of ``artifact_root`` (``..``) or exceed MLflow's artifact-URI limit.
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = None
    if artifact_root is not None:
        location = artifact_folder(Path(artifact_root), name).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def sweep_params(spec: SweepSpec) -> dict[str, Any]:
    """The parent run's params: how the sweep searches and what it holds fixed."""
    return {
        "sweep.method": spec.method,
        "sweep.task": spec.task,
        "sweep.seed": spec.seed,
        **{f"fixed.{k}": v for k, v in spec.fixed.items()},
    }


def param_text(value: Any) -> str:
    text = mask_url(str(value))
    return text if len(text) <= 6000 else text[:5997] + "..."


def ui_command(
    tracking_uri: str, artifact_root: Path, host: str = "127.0.0.1", port: int = 5000
) -> tuple[list[str], dict[str, str]]:
    """The command line that serves the MLflow UI on the same backend, and the environment
    variables it needs. The backend's URL goes in the environment (the server reads
    ``MLFLOW_BACKEND_STORE_URI``, its workers inherit it): ``ps`` shows a command line to
    every user, password included."""
    argv = ["mlflow", "ui", "--default-artifact-root", Path(artifact_root).resolve().as_uri()]
    return argv + ["--host", host, "--port", str(port)], {"MLFLOW_BACKEND_STORE_URI": tracking_uri}


def log_report(tracking_uri: str, run_id: str, files: list[Path]) -> int:
    """Attach the sweep's report and plot PNGs to its parent run under ``report/``; the
    number of files logged (0 when the tracking backend is away: the report stays on disk)."""
    tracker = Tracker(tracking_uri)
    logged = 0
    for path in files:
        before = tracker.failures

        def log(p: Path = path) -> None:
            tracker.client.log_artifact(run_id, str(p), "report")

        tracker._safe("log report", log)
        logged += tracker.failures == before
    return logged
