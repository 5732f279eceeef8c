"""edge: liveness stage times (`online`, `not_online`) and a (line, station, state) index on units

Revision ID: edge
Revises: web
Create Date: 2026-12-03 06:00:00 UTC

Two nullable timestamp columns for the optional liveness check, and the index the Sparkplug publisher's
per-station counts read. `batch_alter_table` keeps SQLite and PostgreSQL on the same code.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "edge"
down_revision: str | None = "web"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("online_at", "not_online_at")
INDEX = "ix_units_line_station_state"


def upgrade() -> None:
    with op.batch_alter_table("units") as batch:
        for column in COLUMNS:
            batch.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    op.create_index(INDEX, "units", ["line", "station", "state"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="units")
    with op.batch_alter_table("units") as batch:
        for column in reversed(COLUMNS):
            batch.drop_column(column)
