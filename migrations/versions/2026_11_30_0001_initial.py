"""initial schema: units, keys, groups, stations, outbox, processed messages, audit log

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-30 03:20:00 UTC

Runs on SQLite and PostgreSQL. Constraint names follow pipeline.db.tables.NAMING_CONVENTION so later
batch migrations can refer to them on both backends.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
GENESIS_HASH = "0" * 64
STAGES = (
    "scanned",
    "keyed",
    "enrolled",
    "config_issued",
    "flashed",
    "assigned",
    "failed",
    "quarantined",
    "revoked",
)


def _create_units() -> None:
    op.create_table(
        "units",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("registration_id", sa.String(128), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("line", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64), nullable=False),
        sa.Column("port", sa.String(256), nullable=True),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("batch", sa.String(64), nullable=True),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("group_id", sa.String(128), nullable=True),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("assigned_hub", sa.String(256), nullable=True),
        sa.Column("config_sha256", sa.String(64), nullable=True),
        sa.Column("failure_stage", sa.String(32), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("failure_retryable", sa.Boolean(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("rework_count", sa.Integer(), nullable=False),
        sa.Column("next_check_at", TS, nullable=True),
        sa.Column("checks", sa.Integer(), nullable=False),
        *[sa.Column(f"{stage}_at", TS, nullable=True) for stage in STAGES],
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_units"),
        sa.UniqueConstraint("registration_id", name="uq_units_registration_id"),
    )
    for column in ("serial", "mac", "line", "station", "state", "next_check_at", "updated_at"):
        op.create_index(f"ix_units_{column}", "units", [column])


def _create_secrets_and_stations() -> None:
    op.create_table(
        "device_keys",
        sa.Column("registration_id", sa.String(128), nullable=False),
        sa.Column("sealed_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("registration_id", name="pk_device_keys"),
    )
    op.create_table(
        "enrollment_groups",
        sa.Column("group_id", sa.String(128), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("sealed_primary_key", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_secondary_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("group_id", name="pk_enrollment_groups"),
    )
    op.create_table(
        "stations",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("line", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_stations"),
    )


def _create_messaging() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("published_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("event_id", name="uq_outbox_event_id"),
    )
    op.create_index("ix_outbox_published_at_id", "outbox", ["published_at", "id"])
    op.create_table(
        "processed_messages",
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("handler", sa.String(64), nullable=False),
        sa.Column("processed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("event_id", "handler", name="pk_processed_messages"),
    )


def _create_audit() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("registration_id", sa.String(128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_registration_id", "audit_log", ["registration_id"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "last_id": 0, "last_hash": GENESIS_HASH}])


def upgrade() -> None:
    _create_units()
    _create_secrets_and_stations()
    _create_messaging()
    _create_audit()


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_index("ix_audit_log_registration_id", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("processed_messages")
    op.drop_index("ix_outbox_published_at_id", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("stations")
    op.drop_table("enrollment_groups")
    op.drop_table("device_keys")
    for column in ("serial", "mac", "line", "station", "state", "next_check_at", "updated_at"):
        op.drop_index(f"ix_units_{column}", table_name="units")
    op.drop_table("units")
