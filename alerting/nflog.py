"""The notification log: which batches were handed to delivery, and who was told of what.

It is what makes notifications exactly-once across restarts. A batch is written here
(``enqueued`` false) *before* it is handed to the sink, then marked enqueued; a batch still
unmarked after a crash is handed over again with the same id, so a sink that ignores a batch
id it already holds (the outbox does) delivers it once. Delivery reports the contacts it
told of a batch through ``AlertEngine.record_recipients``; those, and only those, get
the alert's resolution notice.

Reads come from an in-memory cache filled by :meth:`load`. Writes go to the state database
first (``write_*``, blocking: async callers use ``asyncio.to_thread``), then to the cache
(``note_*``, on the event loop, so that dispatch never reads a cache another thread is
changing).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import select

from alerting.model import NotificationBatch
from alerting.state_models import NflogBatchRow, NflogEntryRow, NflogRecipientRow
from gateway.statedb import StateDB


class NotificationLog:
    """Notices given per alert (kind, time) and recipients per alert, persisted."""

    def __init__(self, db: StateDB) -> None:
        self._db = db
        self._notices: dict[str, dict[str, int]] = defaultdict(dict)  # alert -> kind -> ns
        self._recipients: dict[str, set[str]] = defaultdict(set)
        self._batch_alerts: dict[str, tuple[str, ...]] = {}

    def load(self, alert_ids: Iterable[str]) -> None:
        """Cache the log of ``alert_ids`` (the open alerts and those awaiting resolution)."""
        ids = list(alert_ids)
        with self._db.session() as session:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for entry in session.execute(
                    select(NflogEntryRow).where(NflogEntryRow.alert_id.in_(chunk))
                ).scalars():
                    self._note(entry.alert_id, entry.kind, entry.at_ns)
                    self._batch_alerts.setdefault(entry.batch_id, ())
                    self._batch_alerts[entry.batch_id] += (entry.alert_id,)
                for rcpt in session.execute(
                    select(NflogRecipientRow).where(NflogRecipientRow.alert_id.in_(chunk))
                ).scalars():
                    self._recipients[rcpt.alert_id].add(rcpt.recipient)

    def told(self, alert_id: str) -> bool:
        """Whether a firing notice of the alert was handed to delivery."""
        return "firing" in self._notices.get(alert_id, {})

    def has(self, alert_id: str, kind: str) -> bool:
        return kind in self._notices.get(alert_id, {})

    def last_notice_ns(self, alert_id: str) -> int | None:
        """When the alert was last announced (firing or repeat)."""
        got = self._notices.get(alert_id, {})
        times = [got[k] for k in ("firing", "repeat") if k in got]
        return max(times) if times else None

    def recipients(self, alert_id: str) -> tuple[str, ...]:
        return tuple(sorted(self._recipients.get(alert_id, ())))

    def forget(self, alert_id: str) -> None:
        """Drop a finished alert from the cache (its rows stay in the database)."""
        self._notices.pop(alert_id, None)
        self._recipients.pop(alert_id, None)

    def write_batch(self, batch: NotificationBatch) -> None:
        """Persist ``batch`` as not yet enqueued, with one entry per alert (blocking)."""
        with self._db.session(write=True) as session:
            session.add(
                NflogBatchRow(
                    id=batch.id,
                    kind=batch.kind,
                    group_key=batch.group_key,
                    created_at_ns=batch.created_at_ns,
                    payload=json.dumps(batch.to_json(), ensure_ascii=False),
                    enqueued=False,
                )
            )
            for alert in batch.alerts:
                session.add(
                    NflogEntryRow(
                        batch_id=batch.id,
                        alert_id=alert.id,
                        kind=batch.kind,
                        at_ns=batch.created_at_ns,
                    )
                )

    def note_batch(self, batch: NotificationBatch) -> None:
        """Update the cache after :meth:`write_batch` (on the thread that reads it)."""
        self._batch_alerts[batch.id] = tuple(a.id for a in batch.alerts)
        for alert in batch.alerts:
            self._note(alert.id, batch.kind, batch.created_at_ns)

    def mark_enqueued(self, batch_id: str) -> None:
        with self._db.session(write=True) as session:
            row = session.get(NflogBatchRow, batch_id)
            if row is not None:
                row.enqueued = True

    def unenqueued(self) -> list[NotificationBatch]:
        """Batches written but not confirmed enqueued (a crash in between), oldest first."""
        with self._db.session() as session:
            rows = session.execute(
                select(NflogBatchRow)
                .where(NflogBatchRow.enqueued.is_(False))
                .order_by(NflogBatchRow.created_at_ns, NflogBatchRow.id)
            ).scalars()
            return [NotificationBatch.from_json(json.loads(r.payload)) for r in rows]

    def write_recipients(
        self, batch_id: str, recipients: Sequence[str], at_ns: int
    ) -> tuple[str, ...]:
        """Persist that delivery told ``recipients`` of batch ``batch_id``'s alerts (blocking).

        Returns the alert ids of the batch, for :meth:`note_recipients`.
        """
        alert_ids = self._batch_alerts.get(batch_id)
        with self._db.session(write=True) as session:
            if alert_ids is None:
                alert_ids = tuple(
                    session.execute(
                        select(NflogEntryRow.alert_id).where(NflogEntryRow.batch_id == batch_id)
                    ).scalars()
                )
            for alert_id in alert_ids:
                for recipient in recipients:
                    if recipient in self._recipients.get(alert_id, ()):
                        continue
                    if session.get(NflogRecipientRow, (alert_id, recipient)) is None:
                        session.add(
                            NflogRecipientRow(alert_id=alert_id, recipient=recipient, at_ns=at_ns)
                        )
        return alert_ids

    def note_recipients(self, alert_ids: Iterable[str], recipients: Sequence[str]) -> None:
        """Update the cache after :meth:`write_recipients`."""
        for alert_id in alert_ids:
            self._recipients[alert_id].update(recipients)

    def _note(self, alert_id: str, kind: str, at_ns: int) -> None:
        got = self._notices[alert_id]
        got[kind] = max(got.get(kind, at_ns), at_ns)
