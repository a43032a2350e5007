"""The gateway's heartbeat: its newest metrics snapshot, for the API's /metrics

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_heartbeats",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("updated_at_ns", sa.BigInteger(), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_gateway_heartbeats")),
    )


def downgrade() -> None:
    op.drop_table("gateway_heartbeats")
