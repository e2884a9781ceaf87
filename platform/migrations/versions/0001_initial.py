"""Initial schema: sweeps, trials, metrics.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("task", sa.String(255), nullable=False),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("spec_text", sa.Text(), nullable=False),
        sa.Column("spec_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mlflow_experiment_id", sa.String(64)),
        sa.Column("mlflow_run_id", sa.String(64)),
        _when("created_at", nullable=False),
        _when("started_at"),
        _when("finished_at"),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
        sa.UniqueConstraint("name", name="uq_sweeps_name"),
    )
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("prune_method", sa.String(64)),
        sa.Column("prune_sparsity", sa.Double()),
        sa.Column("model_width", sa.Integer()),
        sa.Column("model_depth", sa.Integer()),
        sa.Column("train_steps", sa.Integer()),
        sa.Column("train_lr", sa.Double()),
        sa.Column("train_seed", sa.Integer()),
        sa.Column("comm_strategy", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", sa.Text()),
        sa.Column("metrics", _json()),
        sa.Column("step", sa.Integer()),
        sa.Column("mlflow_run_id", sa.String(64)),
        sa.Column("node_id", sa.String(128)),
        _when("created_at", nullable=False),
        _when("started_at"),
        _when("finished_at"),
        _when("heartbeat_at"),
        sa.PrimaryKeyConstraint("id", name="pk_trials"),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name="fk_trials_sweep_id_sweeps", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("sweep_id", "number", name="uq_trials_sweep_id_number"),
    )
    op.create_index("ix_trials_sweep_id_status", "trials", ["sweep_id", "status"])
    op.create_table(
        "metrics",
        sa.Column("trial_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        # Nullable because SQLite stores a NaN as NULL; the store reads NULL back as NaN.
        sa.Column("value", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("trial_id", "step", "name", name="pk_metrics"),
        sa.ForeignKeyConstraint(
            ["trial_id"], ["trials.id"], name="fk_metrics_trial_id_trials", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_metrics_trial_id_name_step", "metrics", ["trial_id", "name", "step"])


def downgrade() -> None:
    op.drop_index("ix_metrics_trial_id_name_step", table_name="metrics")
    op.drop_table("metrics")
    op.drop_index("ix_trials_sweep_id_status", table_name="trials")
    op.drop_table("trials")
    op.drop_table("sweeps")
