"""alerting state: alerts, silences and the notification log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", ID, nullable=False),
        sa.Column("fingerprint", ID, nullable=False),
        sa.Column("rule_id", sa.Text(), nullable=False),
        sa.Column("rule_kind", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("drill_id", sa.Text(), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("limit_text", sa.Text(), nullable=False),
        sa.Column("for_s", sa.Float(), nullable=False),
        sa.Column("keep_firing_for_s", sa.Float(), nullable=False),
        sa.Column("started_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("last_active_ns", sa.BigInteger(), nullable=False),
        sa.Column("fired_at_ns", sa.BigInteger(), nullable=True),
        sa.Column("inactive_since_ns", sa.BigInteger(), nullable=True),
        sa.Column("acked_by", sa.Text(), nullable=True),
        sa.Column("acked_note", sa.Text(), nullable=True),
        sa.Column("acked_at_ns", sa.BigInteger(), nullable=True),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        sa.Column("resolved_note", sa.Text(), nullable=True),
        sa.Column("resolved_at_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    op.create_index(op.f("ix_alerts_fingerprint"), "alerts", ["fingerprint"])
    op.create_index(op.f("ix_alerts_state"), "alerts", ["state"])
    op.create_table(
        "alert_silences",
        sa.Column("id", ID, nullable=False),
        sa.Column("matchers", sa.Text(), nullable=False),
        sa.Column("starts_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("ends_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("expired_by", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_silences")),
    )
    op.create_index(op.f("ix_alert_silences_ends_at_ns"), "alert_silences", ["ends_at_ns"])
    op.create_table(
        "alert_nflog_batches",
        sa.Column("id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("group_key", sa.Text(), nullable=False),
        sa.Column("created_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("enqueued", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_nflog_batches")),
    )
    op.create_index(op.f("ix_alert_nflog_batches_enqueued"), "alert_nflog_batches", ["enqueued"])
    op.create_table(
        "alert_nflog_entries",
        sa.Column("batch_id", ID, nullable=False),
        sa.Column("alert_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "alert_id", name=op.f("pk_alert_nflog_entries")),
    )
    op.create_index(op.f("ix_alert_nflog_entries_alert_id"), "alert_nflog_entries", ["alert_id"])
    op.create_table(
        "alert_nflog_recipients",
        sa.Column("alert_id", ID, nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False),
        sa.Column("at_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", "recipient", name=op.f("pk_alert_nflog_recipients")),
    )


def downgrade() -> None:
    for table in (
        "alert_nflog_recipients",
        "alert_nflog_entries",
        "alert_nflog_batches",
        "alert_silences",
        "alerts",
    ):
        op.drop_table(table)
