"""MLflow tracking: one experiment per sweep, a parent run, one child run per trial.

The driver is the only caller. Every call goes through :meth:`Tracker._safe`: when the
tracking backend fails the sweep goes on (the store keeps everything) and the failure is
counted, never raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from spx.platform.settings import mask_url

log = logging.getLogger("spx.tracking")
T = TypeVar("T")

_MAX_METRICS = 1000
_MAX_PARAMS = 100


def _quiet() -> None:
    for name in ("alembic", "mlflow", "mlflow.store", "mlflow.tracking"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    def __init__(self, tracking_uri: str, artifact_root: Path | None = None):
        _quiet()
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.artifact_root = artifact_root
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.failures = 0

    def __repr__(self) -> str:
        return f"Tracker({mask_url(self.uri)!r})"

    def _safe(self, what: str, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except Exception as exc:  # the tracking backend must never stop a sweep
            self.failures += 1
            log.warning("MLflow %s failed: %s", what, mask_url(str(exc))[:500])
            return None

    def experiment(self, name: str) -> str | None:
        """The id of the experiment named ``name``, created when missing."""

        def get_or_create() -> str:
            found = self.client.get_experiment_by_name(name)
            if found is not None:
                if found.lifecycle_stage == "deleted":
                    self.client.restore_experiment(found.experiment_id)
                return found.experiment_id
            location = None
            if self.artifact_root is not None:
                location = (Path(self.artifact_root) / name).resolve().as_uri()
            return self.client.create_experiment(name, artifact_location=location)

        return self._safe("create experiment", get_or_create)

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

        items = [Param(k, _param_text(v)) for k, v in sorted(params.items())]
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


def _param_text(value: Any) -> str:
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
