"""SQLAlchemy models of the audit projection (PostgreSQL in production, SQLite embedded).

Audit tables are declared in the placeholder schema ``audit``; at run time
``schema_translate_map`` points it at one generation (``audit_g{N}``), so a
rebuild fills a shadow schema while readers use the current one. The control
tables (which generation is current) live in the default schema.
See docs/audit-schema.md.
"""

from __future__ import annotations

import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON, Uuid

AUDIT_SCHEMA = "audit"


def generation_schema(generation: int) -> str:
    return f"audit_g{generation}"


class AuditBase(DeclarativeBase):
    metadata = MetaData(schema=AUDIT_SCHEMA)


class ControlBase(DeclarativeBase):
    metadata = MetaData()


class AuditEvent(AuditBase):
    """Every event of the log with its verdict: one row per log position."""

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("log_partition", "log_offset", name="uq_audit_events_position"),
        Index("ix_audit_events_ns_time", "namespace", "occurred_at_ms"),
        Index("ix_audit_events_ns_worker_time", "namespace", "worker", "occurred_at_ms"),
        Index("ix_audit_events_actor_time", "actor", "occurred_at_ms"),
        Index("ix_audit_events_type_time", "event_type", "occurred_at_ms"),
        Index("ix_audit_events_time", "occurred_at_ms"),
        Index("ix_audit_events_event_id", "event_id"),
        Index("ix_audit_events_idem", "idempotency_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    log_partition: Mapped[int] = mapped_column(Integer)
    log_offset: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[int] = mapped_column(Integer)
    aggregate_kind: Mapped[str] = mapped_column(String(16))
    aggregate_id: Mapped[str] = mapped_column(String(512))
    namespace: Mapped[str | None] = mapped_column(String(63))
    worker: Mapped[str | None] = mapped_column(String(63))
    actor: Mapped[str] = mapped_column(String(256))
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason_code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    aggregate_version: Mapped[int] = mapped_column(BigInteger)
    occurred_at_ms: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str | None] = mapped_column(String(256))
    correlation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    payload: Mapped[dict[str, object]] = mapped_column(JSON)


class Deployment(AuditBase):
    """Version history: uploads, promotes, rollbacks, deletes and purges."""

    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("log_partition", "log_offset", name="uq_deployments_position"),
        Index("ix_deployments_worker", "namespace", "worker", "occurred_at_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    log_partition: Mapped[int] = mapped_column(Integer)
    log_offset: Mapped[int] = mapped_column(BigInteger)
    namespace: Mapped[str] = mapped_column(String(63))
    worker: Mapped[str] = mapped_column(String(63))
    action: Mapped[str] = mapped_column(String(32))
    version_id: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(256))
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason_code: Mapped[str | None] = mapped_column(String(64))
    occurred_at_ms: Mapped[int] = mapped_column(BigInteger)


class LeaseHistory(AuditBase):
    __tablename__ = "lease_history"
    __table_args__ = (
        UniqueConstraint("log_partition", "log_offset", name="uq_lease_history_position"),
        Index("ix_lease_history_scope", "scope", "occurred_at_ms"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    log_partition: Mapped[int] = mapped_column(Integer)
    log_offset: Mapped[int] = mapped_column(BigInteger)
    scope: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(32))
    holder: Mapped[str] = mapped_column(String(256))
    generation: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(256))
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason_code: Mapped[str | None] = mapped_column(String(64))
    occurred_at_ms: Mapped[int] = mapped_column(BigInteger)


class DeadLetter(AuditBase):
    """Events that could not be decoded or applied, kept with their raw bytes."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("log_partition", "log_offset", name="uq_dead_letters_position"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    log_partition: Mapped[int] = mapped_column(Integer)
    log_offset: Mapped[int] = mapped_column(BigInteger)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    code: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    log_timestamp_ms: Mapped[int] = mapped_column(BigInteger)


class AppliedPosition(AuditBase):
    """Next offset to apply per partition, written in the same transaction as the rows."""

    __tablename__ = "applied_positions"

    log_partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)


class CurrentGeneration(ControlBase):
    """Which audit generation readers use; one row, switched in one transaction."""

    __tablename__ = "wdl_audit_current"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)


class AuditGeneration(ControlBase):
    __tablename__ = "wdl_audit_generations"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
