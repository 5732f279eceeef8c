"""perf: composite indexes for the periodic jobs' scans, and one for pruning processed messages

Revision ID: perf
Revises: edge
Create Date: 2026-12-03 06:00:00 UTC

Why: the reconciler asks for "units in state S not updated since T" and the confirmer for "flashed units
due before T"; with one index per column PostgreSQL either walks every old (assigned) unit through the
`updated_at` index or bitmap-ANDs two large indexes, so their cost grew with the table. A (state, time)
index answers both with a range scan that stops at LIMIT. `processed_messages.processed_at` lets the
retention job delete old rows by range instead of a sequential scan. `ix_outbox_pending` (partial:
unpublished rows only) is what the relay's claim walks: the (published_at, id) index keeps an entry for
every row version ever pending until VACUUM, and the claim read ~1,000 of them per unit at 600 units.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

PENDING = "published_at IS NULL"
# PostgreSQL: vacuum the outbox after a fixed number of changed rows rather than a fraction of the table,
# so dead entries of published rows do not pile up in ix_outbox_pending as the table grows.
OUTBOX_VACUUM = (
    "ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000, "
    "autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000)"
)
# Re-analyse the tables that grow by thousands of rows a minute after a fixed number of rows, so the
# planner keeps choosing index lookups for the batch queries (IN lists) while they grow from empty.
ANALYZE_OFTEN = "ALTER TABLE {} SET (autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 5000)"
ANALYZE_RESET = "ALTER TABLE {} RESET (autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)"
GROWING = ("processed_messages", "units")
OUTBOX_VACUUM_RESET = (
    "ALTER TABLE outbox RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold, "
    "autovacuum_analyze_scale_factor, autovacuum_analyze_threshold)"
)

revision: str = "perf"
down_revision: str | None = "edge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_units_state_updated_at", "units", ["state", "updated_at"])
    op.create_index("ix_units_state_next_check_at", "units", ["state", "next_check_at"])
    op.create_index("ix_processed_messages_processed_at", "processed_messages", ["processed_at"])
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["id"],
        postgresql_where=sa.text(PENDING),
        sqlite_where=sa.text(PENDING),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(OUTBOX_VACUUM)
        for table in GROWING:
            op.execute(ANALYZE_OFTEN.format(table))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(OUTBOX_VACUUM_RESET)
        for table in GROWING:
            op.execute(ANALYZE_RESET.format(table))
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_index("ix_processed_messages_processed_at", table_name="processed_messages")
    op.drop_index("ix_units_state_next_check_at", table_name="units")
    op.drop_index("ix_units_state_updated_at", table_name="units")
