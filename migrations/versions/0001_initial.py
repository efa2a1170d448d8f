"""Initial audit schema: events with verdicts, deployments, leases, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _big() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _position_columns() -> list[sa.Column[int]]:
    return [
        sa.Column("id", _big(), primary_key=True, autoincrement=True),
        sa.Column("log_partition", sa.Integer(), nullable=False),
        sa.Column("log_offset", sa.BigInteger(), nullable=False),
    ]


def upgrade() -> None:
    ctx = op.get_context()
    target = ctx.opts["wdl_target"]
    if target == "control":
        op.create_table(
            "wdl_audit_generations",
            sa.Column("generation", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
            sa.Column("state", sa.String(16), nullable=False),
        )
        op.create_table(
            "wdl_audit_current",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
            sa.Column("generation", sa.Integer(), nullable=False),
        )
        return
    schema = ctx.opts["wdl_schema"]
    op.create_table(
        "audit_events",
        *_position_columns(),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=False),
        sa.Column("aggregate_kind", sa.String(16), nullable=False),
        sa.Column("aggregate_id", sa.String(512), nullable=False),
        sa.Column("namespace", sa.String(63)),
        sa.Column("worker", sa.String(63)),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason_code", sa.String(64)),
        sa.Column("reason", sa.Text()),
        sa.Column("aggregate_version", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(256)),
        sa.Column("correlation_id", sa.Uuid()),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.UniqueConstraint("log_partition", "log_offset", name="uq_audit_events_position"),
        schema=schema,
    )
    for name, cols in {
        "ix_audit_events_ns_time": ["namespace", "occurred_at_ms"],
        "ix_audit_events_ns_worker_time": ["namespace", "worker", "occurred_at_ms"],
        "ix_audit_events_actor_time": ["actor", "occurred_at_ms"],
        "ix_audit_events_type_time": ["event_type", "occurred_at_ms"],
        "ix_audit_events_time": ["occurred_at_ms"],
        "ix_audit_events_event_id": ["event_id"],
        "ix_audit_events_idem": ["idempotency_key"],
    }.items():
        op.create_index(name, "audit_events", cols, schema=schema)
    op.create_table(
        "deployments",
        *_position_columns(),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("worker", sa.String(63), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("version_id", sa.String(128)),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason_code", sa.String(64)),
        sa.Column("occurred_at_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("log_partition", "log_offset", name="uq_deployments_position"),
        schema=schema,
    )
    op.create_index("ix_deployments_worker", "deployments",
                    ["namespace", "worker", "occurred_at_ms"], schema=schema)
    op.create_table(
        "lease_history",
        *_position_columns(),
        sa.Column("scope", sa.String(256), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger()),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason_code", sa.String(64)),
        sa.Column("occurred_at_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("log_partition", "log_offset", name="uq_lease_history_position"),
        schema=schema,
    )
    op.create_index("ix_lease_history_scope", "lease_history", ["scope", "occurred_at_ms"],
                    schema=schema)
    op.create_table(
        "dead_letters",
        *_position_columns(),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("log_timestamp_ms", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("log_partition", "log_offset", name="uq_dead_letters_position"),
        schema=schema,
    )
    op.create_table(
        "applied_positions",
        sa.Column("log_partition", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        schema=schema,
    )


def downgrade() -> None:
    ctx = op.get_context()
    if ctx.opts["wdl_target"] == "control":
        op.drop_table("wdl_audit_current")
        op.drop_table("wdl_audit_generations")
        return
    schema = ctx.opts["wdl_schema"]
    for table in ("applied_positions", "dead_letters", "lease_history", "deployments",
                  "audit_events"):
        op.drop_table(table, schema=schema)
