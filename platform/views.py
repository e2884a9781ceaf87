"""Plain-data views of the store for the CLI's read commands (``--json``, export)."""

from __future__ import annotations

import csv
import io
import json
import statistics
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
        "error": sweep.error,
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


SEED = "train.seed"


def seed_groups(
    trials: list[TrialRow], varied: list[str], metrics: list[str]
) -> list[dict[str, Any]]:
    """The completed trials grouped by every varied key but ``train.seed`` (replicates, or
    a seeds axis): per group its keys, the seed count ``n``, and ``<metric>`` mean and
    ``<metric>_std`` (sample standard deviation; None with one seed). Empty when the sweep
    varies no seed.

    >>> from types import SimpleNamespace as T
    >>> rows = [T(status="COMPLETED", params={"train.seed": s, "lr": lr},
    ...           metrics={"val/acc": a}) for s, lr, a in [(0, 1, .8), (1, 1, .9), (0, 2, .5)]]
    >>> seed_groups(rows, ["lr", "train.seed"], ["val/acc"])  # doctest: +ELLIPSIS
    [{'lr': 1, 'n': 2, 'val/acc': 0.85..., 'val/acc_std': 0.0707...}, {'lr': 2, 'n': 1, ...}]
    """
    keys = [k for k in varied if k != SEED]
    if SEED not in varied or not keys:
        return []
    groups: dict[str, list[TrialRow]] = {}
    for t in trials:
        if t.status == "COMPLETED":
            groups.setdefault(json.dumps([t.params.get(k) for k in keys]), []).append(t)
    out = []
    for members in groups.values():
        row: dict[str, Any] = {k: members[0].params.get(k) for k in keys}
        row["n"] = len(members)
        for m in metrics:
            found = [(t.metrics or {}).get(m) for t in members]
            values = [float(v) for v in found if v is not None]
            row[m] = statistics.fmean(values) if values else None
            row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else None
        out.append(row)
    return out
