"""The alert engine's side of the operator-action queue (``ack_requests``).

The API process (the acknowledgement page, the REST API, the console) cannot reach the
gateway's :class:`~alerting.engine.AlertEngine`; it queues a row instead
(:func:`queue_action`, :mod:`alerting.acklink`). :meth:`AckQueue.run_once`, called on every
alerting tick, applies pending rows in order and marks each ``done``, or ``failed`` with the
reason (the alert resolved meanwhile...):

* ``ack`` through :meth:`AlertEngine.acknowledge` (which stops repeats and escalation and
  audits the acknowledgement with the person's identity);
* ``resolve`` through :meth:`AlertEngine.resolve` (audited the same way; those who were
  told get the resolution notice).

A row is applied before it is marked, so a crash in between applies it again at restart:
an alert already acknowledged (or resolved) by the same person then counts as done, not
failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting import state_models
from alerting.ack_models import AckRequestRow
from alerting.engine import AlertEngine
from alerting.lifecycle import AlertError
from alerting.model import AlertState
from gateway.statedb import StateDB

log = logging.getLogger(__name__)

Action = Literal["ack", "resolve"]
ACTIONS: tuple[Action, ...] = ("ack", "resolve")
VIAS = ("link", "code", "api", "console")
MAX_USER_CHARS = 64  # the column's width
MAX_NOTE_CHARS = 500
# pg_advisory_xact_lock key serialising check-then-queue across processes: ASCII "ackqueue".
QUEUE_LOCK_KEY = 0x61636B7175657565

_VIA_NOTE = {"link": "经确认链接确认", "code": "经确认码确认"}


@dataclass(frozen=True, slots=True)
class AckRequest:
    """A queued operator action: ``ack`` (the default, as queued by links and codes) or
    ``resolve``."""

    id: int
    alert_id: str
    user: str
    note: str
    via: str
    created_at_ns: int
    action: str = "ack"
    status: str = "pending"
    processed_at_ns: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class AckOutcome:
    """What became of one request: ``done`` or ``failed`` with the reason."""

    request: AckRequest
    status: str
    error: str | None = None


def _request(row: AckRequestRow) -> AckRequest:
    return AckRequest(
        id=row.id,
        alert_id=row.alert_id,
        user=row.user,
        note=row.note,
        via=row.via,
        created_at_ns=row.created_at_ns,
        action=row.action or "ack",
        status=row.status,
        processed_at_ns=row.processed_at_ns,
        error=row.error,
    )


def queue_action(
    session: Session,
    *,
    alert_id: str,
    user: str,
    note: str,
    via: str,
    action: Action,
    now_ns: int,
) -> int:
    """Add a pending request in ``session``'s transaction; returns its id.

    The caller checks first, in the same transaction, that the action applies (and takes
    ``StateDB.lock(session, QUEUE_LOCK_KEY)`` so two processes cannot both pass the check).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if via not in VIAS:
        raise ValueError(f"unknown channel {via!r}")
    row = AckRequestRow(
        alert_id=alert_id,
        user=user[:MAX_USER_CHARS],
        note=note[:MAX_NOTE_CHARS],
        via=via,
        action=action,
        created_at_ns=now_ns,
        status="pending",
    )
    session.add(row)
    session.flush()
    return row.id


def pending_in(session: Session, alert_ids: Iterable[str]) -> dict[str, list[AckRequest]]:
    """Pending requests per alert among ``alert_ids``, oldest first."""
    ids = list(alert_ids)
    if not ids:
        return {}
    out: dict[str, list[AckRequest]] = {}
    rows = session.execute(
        select(AckRequestRow)
        .where(AckRequestRow.alert_id.in_(ids), AckRequestRow.status == "pending")
        .order_by(AckRequestRow.id)
    ).scalars()
    for row in rows:
        out.setdefault(row.alert_id, []).append(_request(row))
    return out


def requests_for(db: StateDB, alert_id: str, limit: int = 20) -> list[AckRequest]:
    """The latest requests about one alert, newest first, whatever their status. Blocking."""
    with db.session() as session:
        rows = session.execute(
            select(AckRequestRow)
            .where(AckRequestRow.alert_id == alert_id)
            .order_by(AckRequestRow.id.desc())
            .limit(limit)
        ).scalars()
        return [_request(row) for row in rows]


def pending(db: StateDB, limit: int = 100) -> list[AckRequest]:
    """Pending requests, oldest first. Blocking."""
    with db.session() as session:
        rows = session.execute(
            select(AckRequestRow)
            .where(AckRequestRow.status == "pending")
            .order_by(AckRequestRow.id)
            .limit(limit)
        ).scalars()
        return [_request(row) for row in rows]


def finish(db: StateDB, request_id: int, status: str, error: str | None, now_ns: int) -> None:
    """Mark a request ``done`` or ``failed``. Blocking."""
    with db.session(write=True) as session:
        row = session.get(AckRequestRow, request_id)
        if row is None or row.status != "pending":
            return
        row.status, row.error, row.processed_at_ns = status, error, now_ns


class AckQueue:
    """Applies queued operator actions to an alert engine (one consumer per state DB)."""

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
                log.exception("operator-action queue failed; retrying on every tick")
                self._failing = True
            return []
        if self._failing:
            log.info("operator-action queue works again")
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
        if request.action == "resolve":
            return await self._resolve(request)
        if request.action != "ack":
            return AckOutcome(request, "failed", f"unknown action {request.action!r}")
        note = request.note.strip() or _VIA_NOTE.get(request.via, "")
        try:
            await self.engine.acknowledge(
                request.alert_id, request.user, note, via=request.via, actor=audit_actor(request)
            )
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

    async def _resolve(self, request: AckRequest) -> AckOutcome:
        try:
            await self.engine.resolve(
                request.alert_id,
                request.user,
                request.note.strip(),
                via=request.via,
                actor=audit_actor(request),
            )
        except AlertError as exc:
            alert = await asyncio.to_thread(state_models.get_alert, self.db, request.alert_id)
            if (
                alert is not None
                and alert.state == AlertState.RESOLVED
                and alert.resolved_by == request.user
            ):
                return AckOutcome(request, "done")  # applied before a crash
            log.info("resolution of %s by %s not applied: %s", *_ids(request), exc)
            return AckOutcome(request, "failed", str(exc))
        log.info("alert %s resolved by %s via %s", request.alert_id, request.user, request.via)
        return AckOutcome(request, "done")


def _ids(request: AckRequest) -> tuple[str, str]:
    return request.alert_id, request.user


def audit_actor(request: AckRequest) -> str:
    """How the audit log names who asked: ``user:<name>`` for someone logged in to the API
    or console (as the API's own entries name them, so one actor filter finds both the
    request and its application); keys are ``apikey:<name>`` already; a link or code
    acknowledgement is the contact's id."""
    if request.via in ("api", "console") and ":" not in request.user:
        return f"user:{request.user}"
    return request.user
