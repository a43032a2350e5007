"""State-database tables of acknowledgement from a phone (migration 0005).

* ``ack_link_uses``: the nonce of every acknowledgement link that was used, so a link works
  once, across restarts and across the API and gateway processes.
* ``ack_codes``: short codes for SMS recipients, stored as a keyed hash (HMAC with the data
  directory's key: six characters are too few to survive an unkeyed hash); also the wrong
  codes entered lately, as rows whose ``code_hash`` is a marker no digest equals (the guess
  limits count them; see :mod:`alerting.acklink`).
* ``ack_requests``: the durable command queue from the API process (which serves the page)
  to the gateway (whose alert engine owns the alerts).

Times are nanoseconds since the Unix epoch, like everywhere in alerting.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models import Base

_BIGINT = BigInteger().with_variant(Integer(), "sqlite")
_NS = BigInteger()


class AckLinkUseRow(Base):
    """A used acknowledgement link, by its nonce (the primary key refuses a second use)."""

    __tablename__ = "ack_link_uses"

    nonce: Mapped[str] = mapped_column(String(32), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(32), index=True)
    contact_id: Mapped[str] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(8))
    used_at_ns: Mapped[int] = mapped_column(_NS)
    expires_at_ns: Mapped[int] = mapped_column(_NS)


class AckCodeRow(Base):
    """A short acknowledgement code issued to one recipient for one alert."""

    __tablename__ = "ack_codes"
    __table_args__ = (Index("ix_ack_codes_contact_id_code_hash", "contact_id", "code_hash"),)

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    contact_id: Mapped[str] = mapped_column(String(64))
    code_hash: Mapped[str] = mapped_column(String(64))
    alert_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at_ns: Mapped[int] = mapped_column(_NS)
    expires_at_ns: Mapped[int] = mapped_column(_NS)
    used_at_ns: Mapped[int | None] = mapped_column(_NS)


class AckRequestRow(Base):
    """An operator action on an alert asked for by a person, waiting for the alert engine
    to apply it: ``action`` ``ack`` (acknowledge) or ``resolve`` (0007)."""

    __tablename__ = "ack_requests"
    __table_args__ = (Index("ix_ack_requests_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(32), index=True)
    user: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text())
    via: Mapped[str] = mapped_column(String(8))  # 'link', 'code', 'api' or 'console'
    action: Mapped[str] = mapped_column(String(16), server_default="ack")  # 'ack', 'resolve'
    created_at_ns: Mapped[int] = mapped_column(_NS)
    status: Mapped[str] = mapped_column(String(16))  # pending, done, failed
    processed_at_ns: Mapped[int | None] = mapped_column(_NS)
    error: Mapped[str | None] = mapped_column(Text())
