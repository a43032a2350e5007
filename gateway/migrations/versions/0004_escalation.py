"""escalation: where each alert stands on its escalation policy

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "alert_escalations",
        sa.Column("alert_id", ID, nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("drill", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tiers_notified", sa.Integer(), nullable=False),
        sa.Column("next_due_ns", sa.BigInteger(), nullable=True),
        sa.Column("first_batch_id", ID, nullable=False),
        sa.Column("started_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_alert_escalations")),
    )
    op.create_index(op.f("ix_alert_escalations_status"), "alert_escalations", ["status"])
    op.create_table(
        "alert_escalation_steps",
        sa.Column("alert_id", ID, nullable=False),
        sa.Column("tier", sa.Integer(), nullable=False),
        sa.Column("due_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("sent_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", "tier", name=op.f("pk_alert_escalation_steps")),
    )


def downgrade() -> None:
    op.drop_table("alert_escalation_steps")
    op.drop_index(op.f("ix_alert_escalations_status"), table_name="alert_escalations")
    op.drop_table("alert_escalations")
