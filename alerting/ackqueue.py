"""The alert engine's side of the acknowledgement queue (``ack_requests``).

The API process, which serves the acknowledgement page, cannot reach the gateway's
:class:`~alerting.engine.AlertEngine`; it queues a row instead (:mod:`alerting.acklink`).
:meth:`AckQueue.run_once`, called on every alerting tick, applies pending rows in order
with :meth:`AlertEngine.acknowledge` (which stops repeats and escalation and audits the
acknowledgement with the person's identity) and marks each row ``done``, or ``failed``
with the reason (the alert resolved meanwhile...).

A row is applied before it is marked, so a crash in between applies it again at restart:
an alert already acknowledged by the same person then counts as done, not failed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import select

from alerting.ack_models import AckRequestRow
from alerting.engine import AlertEngine
from alerting.lifecycle import AlertError
from alerting.model import AlertState
from gateway.statedb import StateDB

log = logging.getLogger(__name__)

_VIA_NOTE = {"link": "经确认链接确认", "code": "经确认码确认"}


@dataclass(frozen=True, slots=True)
class AckRequest:
    """A queued acknowledgement."""

    id: int
    alert_id: str
    user: str
    note: str
    via: str
    created_at_ns: int


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """What became of one request: ``done`` or ``failed`` with the reason."""

    request: AckRequest
    status: str
    error: str | None = None


def pending(db: StateDB, limit: int = 100) -> list[AckRequest]:
    """Pending requests, oldest first. Blocking."""
    with db.session() as session:
        rows = session.execute(
            select(AckRequestRow)
            .where(AckRequestRow.status == "pending")
            .order_by(AckRequestRow.id)
            .limit(limit)
        ).scalars()
        return [AckRequest(r.id, r.alert_id, r.user, r.note, r.via, r.created_at_ns) for r in rows]


def finish(db: StateDB, request_id: int, status: str, error: str | None, now_ns: int) -> None:
    """Mark a request ``done`` or ``failed``. Blocking."""
    with db.session(write=True) as session:
        row = session.get(AckRequestRow, request_id)
        if row is None or row.status != "pending":
            return
        row.status, row.error, row.processed_at_ns = status, error, now_ns


class AckQueue:
    """Applies queued acknowledgements to an alert engine (one consumer per state DB)."""

    def __init__(self, db: StateDB, engine: AlertEngine) -> None:
        self.db = db
        self.engine = engine
        self._failing = False

    async def run_once(self) -> list[AckOutcome]:
        """Apply every pending request; a database failure is logged once, not raised."""
        try:
            outcomes = await self._apply_pending()
        except Exception:
            if not self._failing:
                log.exception("acknowledgement queue failed; retrying on every tick")
                self._failing = True
            return []
        if self._failing:
            log.info("acknowledgement queue works again")
            self._failing = False
        return outcomes

    async def _apply_pending(self) -> list[AckOutcome]:
        outcomes = []
        for request in await asyncio.to_thread(pending, self.db):
            outcome = await self._apply(request)
            now = self.engine.clock.now_ns()
            await asyncio.to_thread(finish, self.db, request.id, outcome.status, outcome.error, now)
            outcomes.append(outcome)
        return outcomes

    async def _apply(self, request: AckRequest) -> AckOutcome:
        note = request.note.strip() or _VIA_NOTE.get(request.via, "")
        try:
            await self.engine.acknowledge(request.alert_id, request.user, note)
        except AlertError as exc:
            await self.engine.start()
            alert = self.engine.lifecycle.get(request.alert_id)
            if (
                alert is not None
                and alert.state == AlertState.ACKNOWLEDGED
                and alert.acked_by == request.user
            ):
                return AckOutcome(request, "done")  # applied before a crash
            log.info("acknowledgement of %s by %s not applied: %s", *_ids(request), exc)
            return AckOutcome(request, "failed", str(exc))
        log.info("alert %s acknowledged by %s via %s", request.alert_id, request.user, request.via)
        return AckOutcome(request, "done")


def _ids(request: AckRequest) -> tuple[str, str]:
    return request.alert_id, request.user
