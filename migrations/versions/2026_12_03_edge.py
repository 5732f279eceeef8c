"""edge: stage times of the optional liveness check (`online`, `not_online`) on units

Revision ID: edge
Revises: 0001_initial
Create Date: 2026-12-03 06:00:00 UTC

Two nullable timestamp columns; `batch_alter_table` keeps SQLite and PostgreSQL on the same code.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "edge"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("online_at", "not_online_at")


def upgrade() -> None:
    with op.batch_alter_table("units") as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("units") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
