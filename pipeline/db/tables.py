"""SQLAlchemy 2.x declarative models of edgeline's tables (architecture §2, §6, §7).

Responsible for: column types, constraints and indexes, UTC-aware timestamps on every backend.
Not responsible for: creating the schema (Alembic migrations do; the app never calls `create_all`),
or mapping rows to domain objects (pipeline.db.uow).

Keys are stored only sealed (`sealed_*` columns hold AES-GCM output); there is no column for a clear key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

GENESIS_HASH = "0" * 64
"""`prev_hash` of the first audit record, and `last_hash` of an empty log."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: pass a timezone-aware time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime(), bytes: LargeBinary()}


STAGE_COLUMNS = (
    "scanned",
    "keyed",
    "enrolled",
    "config_issued",
    "flashed",
    "assigned",
    "failed",
    "quarantined",
    "revoked",
    "online",  # edge: liveness check (migration "edge")
    "not_online",
)
"""Unit states that have a `<state>_at` column on `units` (one per state of the domain model)."""


class UnitRow(Base):
    """One physical device and where it is on its way to `assigned`."""

    __tablename__ = "units"
    # (state, time) pairs back the reconciler's and confirmer's LIMITed scans (migration `perf`).
    __table_args__ = (
        Index("ix_units_key_ledger", "key_source", "key_fingerprint"),
        # the Sparkplug publisher counts units per (line, station, state) from this index alone
        Index("ix_units_line_station_state", "line", "station", "state"),
        Index("ix_units_state_updated_at", "state", "updated_at"),
        Index("ix_units_state_next_check_at", "state", "next_check_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    registration_id: Mapped[str] = mapped_column(String(128), unique=True)
    serial: Mapped[str] = mapped_column(String(64), index=True)
    mac: Mapped[str] = mapped_column(String(17), index=True)  # canonical aa:bb:cc:dd:ee:ff
    line: Mapped[str] = mapped_column(String(64), index=True)
    station: Mapped[str] = mapped_column(String(64), index=True)
    port: Mapped[str | None] = mapped_column(String(256))
    product: Mapped[str] = mapped_column(String(64))
    batch: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), index=True)
    group_id: Mapped[str | None] = mapped_column(String(128))
    device_id: Mapped[str | None] = mapped_column(String(128))
    assigned_hub: Mapped[str | None] = mapped_column(String(256))
    config_sha256: Mapped[str | None] = mapped_column(String(64))
    failure_stage: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    failure_retryable: Mapped[bool | None] = mapped_column(Boolean)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    rework_released: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # guard
    next_check_at: Mapped[datetime | None] = mapped_column(index=True)
    checks: Mapped[int] = mapped_column(Integer, default=0)
    station_scanned_at: Mapped[datetime | None]  # the station's scan time; scanned_at is the receipt
    assignment_overdue_at: Mapped[datetime | None]
    assignment_overdue_reason: Mapped[str | None] = mapped_column(Text)
    scanned_at: Mapped[datetime | None]
    keyed_at: Mapped[datetime | None]
    enrolled_at: Mapped[datetime | None]
    config_issued_at: Mapped[datetime | None]
    flashed_at: Mapped[datetime | None]
    assigned_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    quarantined_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    key_store: Mapped[str | None] = mapped_column(String(16))
    key_source: Mapped[str | None] = mapped_column(String(160))
    key_fingerprint: Mapped[str | None] = mapped_column(String(16))
    online_at: Mapped[datetime | None]
    not_online_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)


class DeviceKeyRow(Base):
    """An individual enrollment's device key, sealed under the master key."""

    __tablename__ = "device_keys"

    registration_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    sealed_key: Mapped[bytes]
    created_at: Mapped[datetime]


class EnrollmentGroupRow(Base):
    """An enrollment group edgeline manages, with its keys sealed."""

    __tablename__ = "enrollment_groups"

    group_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    product: Mapped[str] = mapped_column(String(64))
    sealed_primary_key: Mapped[bytes]
    sealed_secondary_key: Mapped[bytes]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class StationRow(Base):
    """A registered station and its X25519 public key (32 raw bytes)."""

    __tablename__ = "stations"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    line: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime]


class UnitApprovalRow(Base):
    """The MES's latest decision on a unit (pre-provisioning approval), with its extra tags and hub."""

    __tablename__ = "unit_approvals"

    registration_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    allowed: Mapped[bool]
    source: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    tags: Mapped[str] = mapped_column(Text)  # JSON object of strings
    iot_hub: Mapped[str | None] = mapped_column(String(253))
    decided_at: Mapped[datetime]


class OutboxRow(Base):
    """A message committed with a state change; `published_at` is set by the relay."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_published_at_id", "published_at", "id"),
        # The relay's claim walks only pending rows (partial index; migration `perf`).
        Index(
            "ix_outbox_pending",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    topic: Mapped[str] = mapped_column(String(512))
    payload: Mapped[bytes]
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None]


class ProcessedMessageRow(Base):
    """An (event, handler) pair already handled: a redelivery is a no-op."""

    __tablename__ = "processed_messages"

    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    handler: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(index=True)  # pruned by age (retention job)


class AuditRow(Base):
    """One hash-chained audit record; ids are contiguous from 1, assigned under the audit_head lock."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    registration_id: Mapped[str | None] = mapped_column(String(128), index=True)
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The single row (id=1) locked to serialise audit appends; points at the last record."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(Integer)
    last_hash: Mapped[str] = mapped_column(String(64))


# --- web: API tokens and the indexes of the audit API / dashboard (migration `web`) ---


class ApiTokenRow(Base):
    """An audit API token: only its SHA-256 is stored; `role` is viewer, auditor or admin."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


Index("ix_units_updated_at_id", UnitRow.updated_at, UnitRow.id)
Index("ix_units_state_updated_at_id", UnitRow.state, UnitRow.updated_at, UnitRow.id)
Index("ix_units_station_updated_at_id", UnitRow.station, UnitRow.updated_at, UnitRow.id)
Index("ix_units_assigned_at", UnitRow.assigned_at)
Index("ix_units_state_failure_reason", UnitRow.state, UnitRow.failure_reason)
Index("ix_units_station_port_state", UnitRow.station, UnitRow.port, UnitRow.state)
