"""Why a sweep FAILED: ``sweeps.error``, set by the driver when it could not finish the sweep
(the store or SPX_HOME went away, a full disk, a crash); cleared when the sweep runs again.

A plain ADD COLUMN on both backends: SQLite needs no batch rebuild (so the analysis views of
0002 stay as they are).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sweeps", sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("sweeps", "error")  # native DROP COLUMN (SQLite 3.35+): no rebuild
