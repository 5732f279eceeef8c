"""units: the station's own scan time, and the confirmer's assignment-overdue flag

Revision ID: truth
Revises: keys
Create Date: 2026-12-03 06:00:00 UTC

`scanned_at` stays the time the pipeline received the scan; `station_scanned_at` is the time the
station says it scanned (the event's CloudEvents `time`). `assignment_overdue_at`/`_reason` mark a
flashed unit that has waited longer than `assignment_overdue_seconds` for DPS to assign it.
Runs on SQLite (batch mode) and PostgreSQL.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "truth"
down_revision: str | None = "keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("units") as batch:
        batch.add_column(sa.Column("station_scanned_at", TS, nullable=True))
        batch.add_column(sa.Column("assignment_overdue_at", TS, nullable=True))
        batch.add_column(sa.Column("assignment_overdue_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("units") as batch:
        batch.drop_column("assignment_overdue_reason")
        batch.drop_column("assignment_overdue_at")
        batch.drop_column("station_scanned_at")
