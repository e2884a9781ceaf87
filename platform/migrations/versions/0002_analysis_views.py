"""Analysis views: trial_summary (one row per trial) and metric_history (long metrics).

Final metrics are read out of the ``trials.metrics`` JSON into typed columns. A non-finite
final value (a diverged trial's NaN loss, stored in the JSON as the string "nan") reads as
NULL in the view, so SQL aggregates skip it; ``trials.metrics`` keeps the original.

On SQLite, a later migration that rebuilds ``sweeps``, ``trials`` or ``metrics`` in batch
mode must drop these views first and create them again afterwards (SQLite checks views
when it renames the rebuilt table).

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# view column -> key in trials.metrics
FINAL_METRICS = {
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
    "sparsity": "model/sparsity",
    "nnz": "model/nnz",
    "n_params": "model/params",
    "n_avg": "model/params_avg",
    "flops": "model/flops",
    "tokens": "data/tokens",
    "bytes_sent": "comm/bytes_sent",
    "bytes_dense": "comm/bytes_dense",
    "step_s": "time/step_s",
}
# view column -> key in trials.params (numbers not promoted to columns of their own)
EXTRA_PARAMS = {"prune_start": "prune.schedule.start", "prune_end": "prune.schedule.end"}
PROMOTED = (
    "prune_method",
    "prune_sparsity",
    "model_width",
    "model_depth",
    "train_steps",
    "train_lr",
    "train_seed",
    "comm_strategy",
)


def _number(dialect: str, column: str, key: str) -> str:
    """SQL for ``column[key]`` as a double, NULL when absent or not a JSON number."""
    if dialect == "postgresql":
        return (
            f"CASE WHEN jsonb_typeof(t.{column} -> '{key}') = 'number' "
            f"THEN (t.{column} ->> '{key}')::double precision END"
        )
    path = f"'$.\"{key}\"'"
    return (
        f"CASE WHEN json_type(t.{column}, {path}) IN ('real', 'integer') "
        f"THEN json_extract(t.{column}, {path}) END"
    )


def trial_summary_sql(dialect: str) -> str:
    metrics = [f"{_number(dialect, 'metrics', k)} AS {c}" for c, k in FINAL_METRICS.items()]
    params = [f"{_number(dialect, 'params', k)} AS {c}" for c, k in EXTRA_PARAMS.items()]
    columns = [
        "s.name AS sweep",
        "t.sweep_id",
        "t.id AS trial_id",
        "t.number",
        "t.status",
        "t.attempt",
        "t.step",
        *(f"t.{c}" for c in PROMOTED),
        *params,
        *metrics,
        "t.started_at",
        "t.finished_at",
    ]
    body = ",\n    ".join(columns)
    return (
        f"CREATE VIEW trial_summary AS SELECT\n    {body}\n"
        "FROM trials t JOIN sweeps s ON s.id = t.sweep_id"
    )


METRIC_HISTORY = """CREATE VIEW metric_history AS SELECT
    s.name AS sweep, t.sweep_id, m.trial_id, t.number AS trial, m.step, m.name, m.value
FROM metrics m
JOIN trials t ON t.id = m.trial_id
JOIN sweeps s ON s.id = t.sweep_id"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute(trial_summary_sql(dialect))
    op.execute(METRIC_HISTORY)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS metric_history")
    op.execute("DROP VIEW IF EXISTS trial_summary")
