"""The gateway's heartbeat in the state database: its counters, for the API's /metrics.

The API runs in its own process and cannot read the gateway's in-memory metrics; the
gateway writes a snapshot of them (Prometheus text) every few seconds to one row per
gateway (migration 0008), and the API serves the newest snapshot with its age, so a
stopped gateway shows as stale rather than as a flat line of old numbers.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models import Base


class GatewayHeartbeatRow(Base):
    """The newest metrics snapshot of one gateway process (by name: the site id)."""

    __tablename__ = "gateway_heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    updated_at_ns: Mapped[int] = mapped_column(BigInteger())
    metrics: Mapped[str] = mapped_column(Text())
