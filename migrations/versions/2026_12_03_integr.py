"""unit approvals: the MES's pre-provisioning decision per unit

Revision ID: integr
Revises: guard
Create Date: 2026-12-03 06:00:00 UTC
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "integr"
down_revision: str | None = "guard"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "unit_approvals",
        sa.Column("registration_id", sa.String(128), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("iot_hub", sa.String(253), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("registration_id", name="pk_unit_approvals"),
    )


def downgrade() -> None:
    op.drop_table("unit_approvals")
