"""units.rework_released: an operator released the unit for rework (`edgeline unit release`)

Revision ID: guard
Revises: 0001_initial
Create Date: 2026-12-03 06:00:00 UTC

An assigned unit, or a unit in flight on another station or line, is reworked only after a release;
the next scan consumes it. Runs on SQLite (batch mode) and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "guard"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("units") as batch:
        batch.add_column(
            sa.Column("rework_released", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("units") as batch:
        batch.drop_column("rework_released")
