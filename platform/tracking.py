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
import time
from collections.abc import Callable, Iterable
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
