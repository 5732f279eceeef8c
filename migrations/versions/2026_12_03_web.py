"""web: API tokens (hashed, with a role) and the indexes the audit API and dashboard page through

Revision ID: web
Revises: truth
Create Date: 2026-12-03 06:00:00 UTC

Indexes: keyset paging sorts units by (updated_at, id), optionally within one state or station; the
throughput chart buckets `assigned_at`; the failure Pareto groups failed units by reason; station/port yield
is read from (station, port, state) alone.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "web"
down_revision: str | None = "truth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
UNIT_INDEXES = {
    "ix_units_updated_at_id": ["updated_at", "id"],
    "ix_units_state_updated_at_id": ["state", "updated_at", "id"],
    "ix_units_station_updated_at_id": ["station", "updated_at", "id"],
    "ix_units_assigned_at": ["assigned_at"],
    "ix_units_state_failure_reason": ["state", "failure_reason"],
    "ix_units_station_port_state": ["station", "port", "state"],  # yield per port: index-only scan
}


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    for name, columns in UNIT_INDEXES.items():
        op.create_index(name, "units", columns)


def downgrade() -> None:
    for name in UNIT_INDEXES:
        op.drop_index(name, table_name="units")
    op.drop_table("api_tokens")
