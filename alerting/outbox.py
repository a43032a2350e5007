"""The durable outbox: each notification waits in the state database until a channel takes it.

A row is one message to one contact. It is committed before ``enqueue`` returns, carries its
own retry state (which URL of the contact, how many attempts there, when next), and is
marked delivered only after the channel accepted it. So a restarted worker resumes exactly
where the last one stopped. Delivery is *at least once*: a crash after the channel accepted
a message but before the row was marked delivered sends it again on restart; there is no way
to make a remote webhook and a local commit atomic.

Rows are keyed by a ``dedup_key`` (``<batch id>:<contact id>`` for batches): a batch handed
over twice after a crash (see :mod:`alerting.nflog`) is stored once.

One delivery worker per state database: rows are not claimed, so two workers would send the
same row twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import BigInteger, Index, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from alerting.contacts import Contacts
from alerting.model import NotificationBatch
from alerting.templates import render
from gateway.clock import Clock
from gateway.models import Base
from gateway.statedb import StateDB

Status = Literal["pending", "delivered", "failed", "merged"]  # merged: see alerting.ratelimit
_BIGINT = BigInteger().with_variant(Integer(), "sqlite")


class OutboxRow(Base):
    """A row of the ``outbox`` table (migration 0003)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due_at_ns", "status", "due_at_ns"),)

    id: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    contact_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text())
    body: Mapped[str] = mapped_column(Text())
    short_body: Mapped[str | None] = mapped_column(Text())
    alert_ids: Mapped[str] = mapped_column(Text())  # JSON list
    status: Mapped[str] = mapped_column(String(16))
    created_at_ns: Mapped[int] = mapped_column(BigInteger())
    due_at_ns: Mapped[int] = mapped_column(BigInteger())
    url_index: Mapped[int] = mapped_column(Integer())
    attempt: Mapped[int] = mapped_column(Integer())  # attempts made on the current URL
    attempts_total: Mapped[int] = mapped_column(Integer())
    channel: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text())  # always redacted
    finished_at_ns: Mapped[int | None] = mapped_column(BigInteger())


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A snapshot of one outbox row."""

    id: int
    dedup_key: str
    batch_id: str | None
    contact_id: str
    kind: str
    severity: str
    subject: str
    body: str
    short_body: str | None
    alert_ids: tuple[str, ...]
    status: Status
    created_at_ns: int
    due_at_ns: int
    url_index: int
    attempt: int
    attempts_total: int
    channel: str | None
    last_error: str | None
    finished_at_ns: int | None


def _snapshot(row: OutboxRow) -> OutboxMessage:
    status: Status = row.status  # type: ignore[assignment]
    return OutboxMessage(
        id=row.id,
        dedup_key=row.dedup_key,
        batch_id=row.batch_id,
        contact_id=row.contact_id,
        kind=row.kind,
        severity=row.severity,
        subject=row.subject,
        body=row.body,
        short_body=row.short_body,
        alert_ids=tuple(json.loads(row.alert_ids)),
        status=status,
        created_at_ns=row.created_at_ns,
        due_at_ns=row.due_at_ns,
        url_index=row.url_index,
        attempt=row.attempt,
        attempts_total=row.attempts_total,
        channel=row.channel,
        last_error=row.last_error,
        finished_at_ns=row.finished_at_ns,
    )


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to enqueue (see :meth:`Outbox.enqueue_message`)."""

    contact_id: str
    subject: str
    body: str
    alert_ids: tuple[str, ...]
    kind: str
    severity: str
    dedup_key: str
    short_body: str | None = None
    batch_id: str | None = None


# (batch or None, the messages, contact id -> language) -> the messages to store instead.
MessageDecorator = Callable[
    [NotificationBatch | None, Sequence[NewMessage], Mapping[str, str]], list[NewMessage]
]


class Outbox:
    """The outbox table: enqueue (from dispatch), and the worker's view of due messages.

    ``contacts`` routes batches without explicit recipients; ``names`` maps room ids to
    display names for the templates; ``on_enqueue`` is called (on the loop) after each
    commit, to wake the delivery worker. Blocking database work runs in a thread.
    """

    def __init__(
        self,
        db: StateDB,
        clock: Clock,
        *,
        contacts: Contacts | None = None,
        timezone: str = "Asia/Shanghai",
        names: Mapping[str, str] | None = None,
        on_enqueue: Callable[[], None] | None = None,
        decorate: MessageDecorator | None = None,
    ) -> None:
        self._db = db
        # Adds each recipient's acknowledgement link and code (alerting.acklink); blocking.
        self.decorate = decorate
        self._clock = clock
        self.contacts = contacts
        self._timezone = timezone
        self._names = dict(names or {})
        self._on_enqueue = on_enqueue

    def __repr__(self) -> str:
        return f"Outbox({self._db!r})"

    # --- enqueue ------------------------------------------------------------------------

    async def enqueue_message(
        self,
        contact_id: str,
        subject: str,
        body: str,
        *,
        alert_ids: Sequence[str],
        kind: str,
        severity: str,
        dedup_key: str,
        short_body: str | None = None,
    ) -> None:
        """Store one message for ``contact_id``; committed when this returns.

        A ``dedup_key`` already present is ignored (the message is already queued or sent).
        """
        message = NewMessage(
            contact_id=contact_id,
            subject=subject,
            body=body,
            alert_ids=tuple(alert_ids),
            kind=kind,
            severity=severity,
            dedup_key=dedup_key,
            short_body=short_body,
        )
        messages = [message]
        if self.decorate is not None:
            language: dict[str, str] = {}
            if self.contacts is not None and (contact := self.contacts.get(contact_id)):
                language[contact_id] = self.contacts.language_of(contact)
            messages = await asyncio.to_thread(self.decorate, None, messages, language)
        await asyncio.to_thread(self.insert, messages)
        self._wake()

    async def enqueue(self, batch: NotificationBatch) -> None:
        """The dispatcher's sink (``alerting.dispatch.NotificationSink``): see
        :meth:`enqueue_batch`."""
        await self.enqueue_batch(batch)

    async def enqueue_batch(self, batch: NotificationBatch) -> list[str]:
        """Render ``batch`` for each recipient and store the messages in one transaction.

        Recipients: ``batch.recipients`` if given (unknown ids skipped), else the contacts
        whose routes take the batch's severity, building and room. Returns the contact ids
        messages were stored for (also when the batch was already stored before).
        """
        messages = self.messages_for(batch)
        if self.decorate is not None and self.contacts is not None and messages:
            languages = {
                c.id: self.contacts.language_of(c)
                for c in self.contacts.resolve([m.contact_id for m in messages])
            }
            messages = await asyncio.to_thread(self.decorate, batch, messages, languages)
        await asyncio.to_thread(self.insert, messages)
        self._wake()
        return [m.contact_id for m in messages]

    def messages_for(self, batch: NotificationBatch) -> list[NewMessage]:
        """The messages ``batch`` becomes, one per recipient (no I/O)."""
        if self.contacts is None:
            raise RuntimeError("Outbox.enqueue(batch) needs contacts to route and render")
        # Group labels (room, severity) lack the building: take the place from the alerts,
        # which share the group's room.
        labels = {**(batch.alerts[0].labels if batch.alerts else {}), **batch.group_labels}
        if batch.recipients is not None:
            recipients = self.contacts.resolve(batch.recipients)
        else:
            recipients = self.contacts.recipients(
                severity=batch.severity.value,
                building=labels.get("building", ""),
                room=labels.get("room", ""),
                drill=batch.drill_id is not None,
            )
        out = []
        for contact in recipients:
            language = self.contacts.language_of(contact)
            subject, body = render(
                batch, language=language, timezone=self._timezone, names=self._names
            )
            _, short = render(
                batch, language=language, timezone=self._timezone, names=self._names, short=True
            )
            out.append(
                NewMessage(
                    contact_id=contact.id,
                    subject=subject,
                    body=body,
                    short_body=short,
                    alert_ids=tuple(a.id for a in batch.alerts),
                    kind=batch.kind,
                    severity=batch.severity.value,
                    dedup_key=f"{batch.id}:{contact.id}",
                    batch_id=batch.id,
                )
            )
        return out

    def insert(self, messages: Sequence[NewMessage]) -> int:
        """Insert ``messages`` in one transaction, skipping known dedup keys; return how many
        were new. Blocking."""
        if not messages:
            return 0
        now = self._clock.now_ns()
        keys = [m.dedup_key for m in messages]
        with self._db.session(write=True) as session:
            known = set(
                session.execute(
                    select(OutboxRow.dedup_key).where(OutboxRow.dedup_key.in_(keys))
                ).scalars()
            )
            new = [m for m in messages if m.dedup_key not in known]
            for m in new:
                known.add(m.dedup_key)
                session.add(
                    OutboxRow(
                        dedup_key=m.dedup_key,
                        batch_id=m.batch_id,
                        contact_id=m.contact_id,
                        kind=m.kind,
                        severity=m.severity,
                        subject=m.subject,
                        body=m.body,
                        short_body=m.short_body,
                        alert_ids=json.dumps(list(m.alert_ids)),
                        status="pending",
                        created_at_ns=now,
                        due_at_ns=now,
                        url_index=0,
                        attempt=0,
                        attempts_total=0,
                    )
                )
            return len(new)

    def _wake(self) -> None:
        if self._on_enqueue is not None:
            self._on_enqueue()

    # --- the worker's side (blocking; the worker calls them in a thread) -------------------

    def due(self, limit: int = 100) -> list[OutboxMessage]:
        """Pending messages due now, oldest first."""
        now = self._clock.now_ns()
        with self._db.session() as session:
            rows = session.execute(
                select(OutboxRow)
                .where(OutboxRow.status == "pending", OutboxRow.due_at_ns <= now)
                .order_by(OutboxRow.due_at_ns, OutboxRow.id)
                .limit(limit)
            ).scalars()
            return [_snapshot(r) for r in rows]

    def next_due_ns(self) -> int | None:
        """When the earliest pending message is due (None: nothing pending)."""
        with self._db.session() as session:
            got = session.execute(
                select(func.min(OutboxRow.due_at_ns)).where(OutboxRow.status == "pending")
            ).scalar_one_or_none()
            return None if got is None else int(got)

    def record_attempt(
        self,
        message_id: int,
        *,
        url_index: int,
        attempt: int,
        due_at_ns: int,
        error: str | None,
    ) -> None:
        """A failed attempt: where to try next (``url_index``, ``attempt``) and when."""
        with self._db.session(write=True) as session:
            row = session.get(OutboxRow, message_id)
            if row is None or row.status != "pending":
                return
            row.url_index = url_index
            row.attempt = attempt
            row.attempts_total += 1
            row.due_at_ns = due_at_ns
            row.last_error = error

    def mark_delivered(self, message_id: int, *, channel: str, url_index: int) -> None:
        """The channel accepted the message: it is never sent again."""
        self._finish(message_id, "delivered", channel=channel, url_index=url_index, error=None)

    def mark_failed(self, message_id: int, *, error: str) -> None:
        """Every URL of the contact was exhausted."""
        self._finish(message_id, "failed", channel=None, url_index=None, error=error)

    def _finish(
        self,
        message_id: int,
        status: Status,
        *,
        channel: str | None,
        url_index: int | None,
        error: str | None,
    ) -> None:
        with self._db.session(write=True) as session:
            row = session.get(OutboxRow, message_id)
            if row is None:
                return
            row.status = status
            row.attempts_total += 1
            row.finished_at_ns = self._clock.now_ns()
            if channel is not None:
                row.channel = channel
            if url_index is not None:
                row.url_index = url_index
            if error is not None:
                row.last_error = error

    def get(self, message_id: int) -> OutboxMessage | None:
        with self._db.session() as session:
            row = session.get(OutboxRow, message_id)
            return None if row is None else _snapshot(row)

    def all(self, *, status: Status | None = None) -> list[OutboxMessage]:
        """Every message (optionally of one status), oldest first."""
        query = select(OutboxRow).order_by(OutboxRow.id)
        if status is not None:
            query = query.where(OutboxRow.status == status)
        with self._db.session() as session:
            return [_snapshot(r) for r in session.execute(query).scalars()]

    def counts(self) -> dict[str, int]:
        """Messages per status."""
        with self._db.session() as session:
            rows = session.execute(
                select(OutboxRow.status, func.count()).group_by(OutboxRow.status)
            ).all()
            return {str(status): int(n) for status, n in rows}
