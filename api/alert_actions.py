"""Alerts and silences for the API and the console: list, show, acknowledge, resolve,
silence. The routes (``api.routes.alerts``, ``api.routes.silences``) and the console call
these functions, which raise :class:`fastapi.HTTPException` with a clear detail.

Roles (``admin`` passes every check; each function checks again, whoever calls it):

============================================  ==================================================
what                                          roles
============================================  ==================================================
list and show alerts, list silences           keeper, security, inspector, drill_coordinator
acknowledge an alert                          keeper, security
resolve an alert                              security
create and expire silences                    security
============================================  ==================================================

A keeper sees the alerts of their buildings only: an alert labelled with another building,
or with no building at all, is left out of listings and is 404 for them (its existence is
not disclosed). Likewise a keeper sees only the silences about their buildings (with a
``building=<b>`` matcher for one of them); the others are left out and 404.

**The queue model.** The API process cannot reach the gateway's alert engine (another
process). Acknowledge and resolve are checked here (the alert exists, is visible, is in a
state where the action applies, and no conflicting action is queued: else 404 or 409),
queued in the state database's ``ack_requests`` and answered 202 with the request id and
status ``pending``; the gateway's :class:`~alerting.ackqueue.AckQueue` applies them on its
next tick (about a second) through the engine, which audits the change with the acting
user's name. The request itself is audited here (``alert.ack_requested``,
``alert.resolve_requested``) with the calling principal. Silences are written to the state
database directly (validated by :func:`alerting.engine.new_silence`, the engine's own
rules) and audited (``silence.created``, ``silence.expired``); the engine re-reads them on
every tick.

Who is recorded: a user by their username (as acknowledgement links record a contact id),
an API key as ``apikey:<name>``; the audit entry of the request names the principal
(``user:<name>`` or ``apikey:<name>``).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

from fastapi import HTTPException, status

from alerting import state_models
from alerting.ackqueue import QUEUE_LOCK_KEY, AckRequest, pending_in, queue_action, requests_for
from alerting.engine import new_silence
from alerting.evaluators import EVALUATORS
from alerting.lifecycle import Alert
from alerting.model import AlertState, Severity
from alerting.silence import Silence, check_against
from api.deps import AppContext, Principal
from api.models import Role
from api.paging import Page, Paging, unprocessable
from api.schemas_alerts import (
    DEFAULT_ALERT_WINDOW,
    ActionPublic,
    ActionQueued,
    AlertPublic,
    AlertQuery,
    SilenceCreate,
    SilencePublic,
)
from api.status import READER_ROLES, api_zone
from gateway.audit import append_async
from gateway.reading import datetime_from_ns, ns_from_datetime
from gateway.site import OUTDOOR_ROOM, Site
from gateway.statedb import StateDB

ACK_ROLES = (Role.KEEPER, Role.SECURITY)
RESOLVE_ROLES = (Role.SECURITY,)
SILENCE_WRITE_ROLES = (Role.SECURITY,)
VIAS = ("api", "console")
_ID = re.compile(r"[0-9a-f]{32}")
_ACTION_ROLES = {"ack": ACK_ROLES, "resolve": RESOLVE_ROLES}
_VERB = {"ack": "acknowledge", "resolve": "resolve"}
_STATUS: dict[str, Literal["pending", "done", "failed"]] = {
    "pending": "pending",
    "done": "done",
    "failed": "failed",
}


# --- helpers ---------------------------------------------------------------------------------


def _require(principal: Principal, roles: Sequence[Role]) -> None:
    if not principal.has_any(frozenset(roles)):
        names = ", ".join(sorted(r.value for r in {*roles, Role.ADMIN}))
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs one of the roles: {names}")


def acting_name(principal: Principal) -> str:
    """How an alert or a silence records who acted: a username, or ``apikey:<name>``."""
    return principal.name if principal.kind == "user" else principal.actor


def _dt(ns: int | None) -> datetime | None:
    return None if ns is None else datetime_from_ns(ns)


def _ns(ctx: AppContext, when: datetime, name: str) -> int:
    """Nanoseconds of ``when`` (without an offset: in the API's time zone, the site's); 422
    when out of range."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=api_zone(ctx))
    try:
        return ns_from_datetime(when)
    except (OverflowError, ValueError):
        raise unprocessable(f"{name} is out of range") from None


def _visible(principal: Principal, alert: Alert) -> None:
    """404 for an alert labelled with a building the principal may not see, and, for a
    principal scoped to buildings, for an alert without a building (a site-wide alert is
    not one of their buildings')."""
    building = alert.labels.get("building")
    if building is None and principal.buildings is not None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert.id}")
    if building is not None:
        principal.require_building(building, f"alert {alert.id}")


def _action(request: AckRequest) -> ActionPublic:
    return ActionPublic(
        request_id=request.id,
        action="resolve" if request.action == "resolve" else "ack",
        user=request.user,
        note=request.note,
        via=request.via,
        status=_STATUS.get(request.status, "pending"),
        requested_at=datetime_from_ns(request.created_at_ns),
        processed_at=_dt(request.processed_at_ns),
        error=request.error,
    )


def _alert_public(
    alert: Alert,
    *,
    pending: Sequence[AckRequest],
    silences: Sequence[Silence],
    now_ns: int,
    actions: Sequence[AckRequest] | None = None,
) -> AlertPublic:
    labels = alert.match_labels()
    silenced = [s.id for s in silences if alert.is_open and s.silences(labels, now_ns)]
    value = alert.value
    return AlertPublic(
        id=alert.id,
        rule_id=alert.rule_id,
        rule_kind=alert.rule_kind,
        severity=alert.severity,
        state=alert.state,
        labels=dict(alert.labels),
        building=alert.labels.get("building"),
        room=alert.labels.get("room"),
        drill=alert.drill,
        drill_id=alert.drill_id,
        # JSON has no NaN or infinity: a non-finite reading is shown as null.
        value=value if value is None or math.isfinite(value) else None,
        summary=alert.summary,
        limit=alert.limit,
        started_at=datetime_from_ns(alert.started_at_ns),
        fired_at=_dt(alert.fired_at_ns),
        acked_by=alert.acked_by,
        acked_note=alert.acked_note,
        acked_at=_dt(alert.acked_at_ns),
        resolved_by=alert.resolved_by,
        resolved_note=alert.resolved_note,
        resolved_at=_dt(alert.resolved_at_ns),
        silenced_by=silenced,
        pending_action=_action(pending[0]) if pending else None,
        actions=None if actions is None else [_action(a) for a in actions],
    )


def _pending_for(db: StateDB, alert_ids: Sequence[str]) -> Mapping[str, list[AckRequest]]:
    with db.session() as session:
        return pending_in(session, alert_ids)


# --- alerts ----------------------------------------------------------------------------------


async def list_alerts(
    ctx: AppContext, principal: Principal, query: AlertQuery, paging: Paging
) -> Page[AlertPublic]:
    """Alerts matching ``query`` that the principal may see, newest first, paged, with the
    total. :class:`AlertQuery` refuses an empty or too long window (and the API route's
    ``time_range`` dependency before it); a missing bound takes its default: ``end`` now,
    ``start`` 30 days before ``end``."""
    _require(principal, READER_ROLES)
    now = ctx.clock.now_ns()
    end = _ns(ctx, query.end, "end") if query.end is not None else now
    if query.start is not None:
        start = _ns(ctx, query.start, "start")
    else:
        start = end - int(DEFAULT_ALERT_WINDOW.total_seconds() * 1e9)
    drill = {"real": False, "drill": True, "all": None}[query.drill]

    def read() -> tuple[list[Alert], int, Mapping[str, list[AckRequest]], list[Silence]]:
        alerts, total = state_models.page_alerts(
            ctx.db,
            states=query.states,
            severities=query.severities,
            rule_kinds=query.rule_kinds,
            drill=drill,
            started_from_ns=start,
            started_until_ns=end,
            building=query.building,
            room=query.room,
            visible_buildings=principal.buildings,
            limit=paging.limit,
            offset=paging.offset,
        )
        pending = _pending_for(ctx.db, [a.id for a in alerts])
        return alerts, total, pending, state_models.load_silences(ctx.db, now)

    alerts, total, pending, silences = await asyncio.to_thread(read)
    items = [
        _alert_public(a, pending=pending.get(a.id, []), silences=silences, now_ns=now)
        for a in alerts
    ]
    return Page[AlertPublic](items=items, total=total, limit=paging.limit, offset=paging.offset)


async def get_alert(ctx: AppContext, principal: Principal, alert_id: str) -> AlertPublic:
    """One alert with who acknowledged or resolved it, the notes, the queued actions (the
    pending one first); 404 when unknown or in a building the principal may not see."""
    _require(principal, READER_ROLES)
    missing = HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
    if not _ID.fullmatch(alert_id):
        raise missing
    now = ctx.clock.now_ns()

    def read() -> tuple[Alert | None, list[AckRequest], list[Silence]]:
        alert = state_models.get_alert(ctx.db, alert_id)
        if alert is None:
            return None, [], []
        return alert, requests_for(ctx.db, alert_id), state_models.load_silences(ctx.db, now)

    alert, actions, silences = await asyncio.to_thread(read)
    if alert is None:
        raise missing
    _visible(principal, alert)
    pending = sorted((a for a in actions if a.status == "pending"), key=lambda a: a.id)
    return _alert_public(alert, pending=pending, silences=silences, now_ns=now, actions=actions)


def _refusal(alert: Alert, action: str, pending: Sequence[AckRequest]) -> str | None:
    """Why ``action`` does not apply to ``alert`` now (None: it does)."""
    if alert.state == AlertState.RESOLVED:
        by = f" by {alert.resolved_by}" if alert.resolved_by else ""
        return f"alert {alert.id} is already resolved{by}: there is nothing to {_VERB[action]}"
    if alert.state == AlertState.PENDING:
        return (
            f"alert {alert.id} is pending (its condition has not lasted long enough to fire): "
            f"it can be {'acknowledged' if action == 'ack' else 'resolved'} once it fires"
        )
    if action == "ack" and alert.state == AlertState.ACKNOWLEDGED:
        return f"alert {alert.id} was already acknowledged by {alert.acked_by}"
    for queued in pending:
        # A queued resolve makes any later action moot; a queued ack blocks a second ack
        # but not a resolve (acknowledge, then resolve, is the normal course).
        if queued.action == "resolve" or action == "ack":
            return (
                f"{queued.user} already asked to {_VERB.get(queued.action, queued.action)} "
                f"alert {alert.id} (request {queued.id}); the gateway applies it within a "
                "second"
            )
    return None


async def request_action(
    ctx: AppContext,
    principal: Principal,
    alert_id: str,
    action: Literal["ack", "resolve"],
    note: str,
    via: str,
) -> ActionQueued:
    """Queue an acknowledgement or a resolution for the gateway (see the module docstring).

    403 without the action's role, 404 for an unknown or invisible alert, 409 when the
    action does not apply (resolved, pending, already acknowledged, already queued).
    """
    if action not in _ACTION_ROLES:
        raise ValueError(f"unknown action {action!r}")
    if via not in VIAS:
        raise ValueError(f"unknown channel {via!r}; one of {', '.join(VIAS)}")
    _require(principal, _ACTION_ROLES[action])
    if not _ID.fullmatch(alert_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
    user = acting_name(principal)
    now = ctx.clock.now_ns()

    def queue() -> int:
        with ctx.db.session(write=True) as session:
            ctx.db.lock(session, QUEUE_LOCK_KEY)
            row = session.get(state_models.AlertRow, alert_id)
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
            alert = state_models.alert_from_row(row)
            _visible(principal, alert)
            refusal = _refusal(alert, action, pending_in(session, [alert_id]).get(alert_id, []))
            if refusal is not None:
                raise HTTPException(status.HTTP_409_CONFLICT, refusal)
            return queue_action(
                session,
                alert_id=alert_id,
                user=user,
                note=note,
                via=via,
                action=action,
                now_ns=now,
            )

    request_id = await asyncio.to_thread(queue)
    await append_async(
        ctx.db,
        actor=principal.actor,
        action=f"alert.{action}_requested",
        target=alert_id,
        detail={"request_id": request_id, "user": user, "note": note, "via": via},
    )
    return ActionQueued(
        request_id=request_id,
        alert_id=alert_id,
        action=action,
        user=user,
        note=note,
        via=via,
        requested_at=datetime_from_ns(now),
    )


# --- silences --------------------------------------------------------------------------------


def _silence_public(silence: Silence, now_ns: int) -> SilencePublic:
    state: Literal["pending", "active", "expired"]
    if silence.expired_by is not None or silence.ends_at_ns <= now_ns:
        state = "expired"
    elif silence.starts_at_ns > now_ns:
        state = "pending"
    else:
        state = "active"
    return SilencePublic(
        id=silence.id,
        matchers=[str(m) for m in silence.matchers],
        starts_at=datetime_from_ns(silence.starts_at_ns),
        ends_at=datetime_from_ns(silence.ends_at_ns),
        author=silence.author,
        reason=silence.reason,
        created_at=datetime_from_ns(silence.created_at_ns),
        expired_by=silence.expired_by,
        status=state,
    )


async def list_silences(
    ctx: AppContext, principal: Principal, active_only: bool, paging: Paging
) -> Page[SilencePublic]:
    """Silences newest first (all, or only those muting now), paged, with the total; a
    principal scoped to buildings gets only the silences about them."""
    _require(principal, READER_ROLES)
    now = ctx.clock.now_ns()
    silences, total = await asyncio.to_thread(
        state_models.page_silences,
        ctx.db,
        active_at_ns=now if active_only else None,
        visible_buildings=principal.buildings,
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page[SilencePublic](
        items=[_silence_public(s, now) for s in silences],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


def site_labels(site: Site) -> dict[str, set[str]]:
    """The values the site's alerts can carry, by label (for checking silence matchers)."""
    rooms = {r.id for _b, r in site.rooms()} | {OUTDOOR_ROOM}
    return {
        "site": {site.id},
        "building": {b.id for b in site.model.buildings},
        "room": rooms,
        "sensor": {ref.sensor for ref in site.sensors()},
        "rule_kind": set(EVALUATORS),
        "severity": {s.value for s in Severity},
    }


async def create_silence(
    ctx: AppContext, principal: Principal, body: SilenceCreate
) -> SilencePublic:
    """Create a silence authored by the principal; 422 naming a bad matcher, or saying
    what is wrong with the times (end not after start, longer than 30 days...)."""
    _require(principal, SILENCE_WRITE_ROLES)
    now = ctx.clock.now_ns()
    start = _ns(ctx, body.starts_at, "starts_at") if body.starts_at is not None else None
    end = _ns(ctx, body.ends_at, "ends_at")
    try:
        silence = new_silence(
            body.matchers,
            author=acting_name(principal),
            reason=body.reason,
            now_ns=now,
            ends_at_ns=end,
            starts_at_ns=start,
        )
        if ctx.site is not None:
            check_against(silence.matchers, site_labels(ctx.site))
    except ValueError as exc:
        raise unprocessable(str(exc)) from None
    await asyncio.to_thread(state_models.save_silence, ctx.db, silence)
    await append_async(
        ctx.db,
        actor=principal.actor,
        action="silence.created",
        target=silence.id,
        detail=silence.to_json(),
    )
    return _silence_public(silence, now)


async def expire_silence(ctx: AppContext, principal: Principal, silence_id: str) -> SilencePublic:
    """End a silence now; 404 when unknown (or not about the principal's buildings, when
    it is scoped to some), 409 when it has ended already."""
    _require(principal, SILENCE_WRITE_ROLES)
    if not _ID.fullmatch(silence_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no silence {silence_id}")
    now = ctx.clock.now_ns()
    who = acting_name(principal)
    try:
        silence = await asyncio.to_thread(
            state_models.expire_silence,
            ctx.db,
            silence_id,
            who,
            now,
            visible_buildings=principal.buildings,
        )
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no silence {silence_id}") from None
    except state_models.SilenceEnded as exc:
        by = f" (expired by {exc.silence.expired_by})" if exc.silence.expired_by else ""
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"silence {silence_id} has already ended{by}"
        ) from None
    await append_async(
        ctx.db,
        actor=principal.actor,
        action="silence.expired",
        target=silence.id,
        detail={**silence.to_json(), "expired_by": who},
    )
    return _silence_public(silence, now)


__all__ = [
    "ACK_ROLES",
    "RESOLVE_ROLES",
    "SILENCE_WRITE_ROLES",
    "acting_name",
    "create_silence",
    "expire_silence",
    "get_alert",
    "list_alerts",
    "list_silences",
    "request_action",
]
