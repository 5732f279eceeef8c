"""key ledger: which key (store, group or individual, fingerprint) each unit's device key came from

Revision ID: keys
Revises: integr
Create Date: 2026-12-03 06:00:00 UTC
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "keys"
down_revision: str | None = "integr"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("units") as batch:
        batch.add_column(sa.Column("key_store", sa.String(16), nullable=True))
        batch.add_column(sa.Column("key_source", sa.String(160), nullable=True))
        batch.add_column(sa.Column("key_fingerprint", sa.String(16), nullable=True))
    op.create_index("ix_units_key_ledger", "units", ["key_source", "key_fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_units_key_ledger", table_name="units")
    with op.batch_alter_table("units") as batch:
        batch.drop_column("key_fingerprint")
        batch.drop_column("key_source")
        batch.drop_column("key_store")
