"""Plain-data views of the store for the CLI's read commands (``--json``, export)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

from spx.platform.store import SweepRow, TrialRow


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def sweep_dict(sweep: SweepRow, trials: list[TrialRow]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for t in trials:
        counts[str(t.status)] = counts.get(str(t.status), 0) + 1
    return {
        "name": sweep.name,
        "task": sweep.task,
        "method": sweep.method,
        "status": str(sweep.status),
        "spec_hash": sweep.spec_hash,
        "trials": len(trials),
        "counts": counts,
        "mlflow_experiment_id": sweep.mlflow_experiment_id,
        "mlflow_run_id": sweep.mlflow_run_id,
        "created_at": _time(sweep.created_at),
        "started_at": _time(sweep.started_at),
        "finished_at": _time(sweep.finished_at),
    }


def trial_dict(trial: TrialRow) -> dict[str, Any]:
    return {
        "number": trial.number,
        "status": str(trial.status),
        "attempt": trial.attempt,
        "params": dict(trial.params),
        "metrics": dict(trial.metrics or {}),
        "step": trial.step,
        "error": trial.error,
        "node_id": trial.node_id,
        "mlflow_run_id": trial.mlflow_run_id,
        "started_at": _time(trial.started_at),
        "finished_at": _time(trial.finished_at),
    }


def flat_rows(trials: list[TrialRow]) -> list[dict[str, Any]]:
    """One flat dict per trial: number, status, params.*, metrics.*."""
    rows = []
    for t in trials:
        row: dict[str, Any] = {"number": t.number, "status": str(t.status), "error": t.error}
        row.update({f"params.{k}": v for k, v in sorted(t.params.items())})
        row.update({f"metrics.{k}": v for k, v in sorted((t.metrics or {}).items())})
        rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str, allow_nan=True)
