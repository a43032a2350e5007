"""State-database tables of escalation: where each alert stands on its policy (0004).

The row is what makes escalation survive a restart: a tier falls due at ``next_due_ns`` and
is written as notified (``tiers_notified``) only after its messages are in the outbox, whose
de-duplication keys make a repeat of that step harmless. So a gateway killed while a tier
was pending, and restarted after it fell due, notifies that tier once.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models import Base

_NS = BigInteger()


class EscalationRow(Base):
    """One alert's escalation: tiers told so far, when the next one is due, and its status.

    ``status``: ``active`` (climbing), ``held`` (silenced or inhibited: keeps its place,
    resumes when the mute ends), ``done`` (last tier told), ``acknowledged`` or
    ``resolved`` (stopped).
    """

    __tablename__ = "alert_escalations"

    alert_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    severity: Mapped[str] = mapped_column(String(16))
    drill: Mapped[bool] = mapped_column(Boolean())
    status: Mapped[str] = mapped_column(String(16), index=True)
    tiers_notified: Mapped[int] = mapped_column(Integer())
    next_due_ns: Mapped[int | None] = mapped_column(_NS)
    first_batch_id: Mapped[str] = mapped_column(String(32))
    started_at_ns: Mapped[int] = mapped_column(_NS)
    updated_at_ns: Mapped[int] = mapped_column(_NS)


class EscalationStepRow(Base):
    """One tier told of one alert: when it was due, when it was sent, to whom."""

    __tablename__ = "alert_escalation_steps"

    alert_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tier: Mapped[int] = mapped_column(Integer(), primary_key=True)
    due_at_ns: Mapped[int] = mapped_column(_NS)
    sent_at_ns: Mapped[int] = mapped_column(_NS)
    recipients: Mapped[str] = mapped_column(Text())  # JSON list of contact ids
