"""acknowledgement from a phone: used link nonces, short codes, the request queue

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ack_link_uses",
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("used_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ns", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_ack_link_uses")),
    )
    op.create_index(op.f("ix_ack_link_uses_alert_id"), "ack_link_uses", ["alert_id"])
    op.create_table(
        "ack_codes",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("contact_id", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("created_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("used_at_ns", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ack_codes")),
    )
    op.create_index(op.f("ix_ack_codes_alert_id"), "ack_codes", ["alert_id"])
    op.create_index("ix_ack_codes_contact_id_code_hash", "ack_codes", ["contact_id", "code_hash"])
    op.create_table(
        "ack_requests",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("alert_id", sa.String(length=32), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("created_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("processed_at_ns", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ack_requests")),
    )
    op.create_index(op.f("ix_ack_requests_alert_id"), "ack_requests", ["alert_id"])
    op.create_index("ix_ack_requests_status_id", "ack_requests", ["status", "id"])


def downgrade() -> None:
    op.drop_table("ack_requests")
    op.drop_table("ack_codes")
    op.drop_table("ack_link_uses")
