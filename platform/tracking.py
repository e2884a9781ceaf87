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
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from spx.platform.settings import mask_url

if TYPE_CHECKING:
    from spx.platform.spec import SweepSpec

log = logging.getLogger("spx.tracking")
T = TypeVar("T")

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


class Tracker:
    def __init__(self, tracking_uri: str, artifact_root: Path | None = None):
        _quiet()
        from mlflow.tracking import MlflowClient

        if tracking_uri.startswith(("http://", "https://")):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        self.uri = tracking_uri
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=tracking_uri)
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
    ) -> str | None:
        all_tags = dict(tags or {})
        if parent:
            all_tags["mlflow.parentRunId"] = parent

        def start() -> str:
            run = self.client.create_run(experiment_id, run_name=name, tags=all_tags)
            self._log_params(run.info.run_id, params)
            return run.info.run_id

        return self._safe("start run", start)

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


def experiment_id(client: Any, name: str, artifact_root: Path | None) -> str:
    """The id of the experiment named ``name`` (restored or created when it must be)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return found.experiment_id
    location = None
    if artifact_root is not None:
        location = (Path(artifact_root) / name).resolve().as_uri()
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
) -> list[str]:
    """The command line that serves the MLflow UI on the same backend."""
    return [
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--default-artifact-root",
        Path(artifact_root).resolve().as_uri(),
        "--host",
        host,
        "--port",
        str(port),
    ]


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
