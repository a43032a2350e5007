"""Alerts: ``/api/v1/alerts`` (list, show) and the operator actions (acknowledge, resolve).

Roles (``admin`` passes every check):

==========================================  ==============================================
route                                       roles
==========================================  ==============================================
``GET /api/v1/alerts``                      keeper, security, inspector, drill_coordinator
``GET /api/v1/alerts/{id}``                 keeper, security, inspector, drill_coordinator
``POST /api/v1/alerts/{id}/ack``            keeper, security
``POST /api/v1/alerts/{id}/resolve``        security
==========================================  ==============================================

A keeper sees only the alerts of their buildings (others: left out, 404). Acknowledge and
resolve answer 202: the action is queued and the gateway's alert engine applies it within
about a second (:mod:`api.alert_actions` explains the queue model).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from alerting.model import AlertState, Severity
from api import alert_actions as actions
from api.deps import Context, Principal, require_roles
from api.paging import Page, PagingDep, TimeRange, time_range
from api.schemas_alerts import (
    DEFAULT_ALERT_WINDOW,
    MAX_ALERT_WINDOW,
    ActionQueued,
    ActionRequest,
    AlertPublic,
    AlertQuery,
    DrillFilter,
)
from api.status import READER_ROLES

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

Reader = Annotated[Principal, Depends(require_roles(*READER_ROLES))]
Acker = Annotated[Principal, Depends(require_roles(*actions.ACK_ROLES))]
Resolver = Annotated[Principal, Depends(require_roles(*actions.RESOLVE_ROLES))]
Window = Annotated[
    TimeRange, Depends(time_range(default=DEFAULT_ALERT_WINDOW, longest=MAX_ALERT_WINDOW))
]
AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="32 hex digits")]
Label = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


_PARAM = {"states": "state", "severities": "severity", "rule_kinds": "rule_kind"}


def _query(**fields: object) -> AlertQuery:
    """The query model; its validation errors are a 422 naming the query parameter."""
    try:
        return AlertQuery.model_validate(fields)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False, include_context=False):
            loc = [_PARAM.get(str(part), part) for part in error["loc"]]
            errors.append({**error, "loc": ["query", *loc]})
        raise RequestValidationError(errors) from None


@router.get("", response_model=Page[AlertPublic])
async def list_alerts(
    principal: Reader,
    ctx: Context,
    paging: PagingDep,
    window: Window,
    state: Annotated[list[AlertState] | None, Query(description="any of these states")] = None,
    severity: Annotated[list[Severity] | None, Query(description="any of these")] = None,
    building: Label = None,
    room: Label = None,
    rule_kind: Annotated[list[str] | None, Query(description="any of these rule kinds")] = None,
    drill: Annotated[DrillFilter, Query(description="real (default), drill or all")] = "real",
) -> Page[AlertPublic]:
    """Alerts newest first, paged, with the total. ``start``/``end`` bound when alerts
    started (default: the last 30 days; at most 366 days); open alerts are listed whatever
    their start. Roles: keeper (own buildings), security, inspector, drill_coordinator."""
    query = _query(
        states=state,
        severities=severity,
        building=building,
        room=room,
        rule_kinds=rule_kind,
        drill=drill,
        start=window.start,
        end=window.end,
    )
    return await actions.list_alerts(ctx, principal, query, paging)


@router.get("/{alert_id}", response_model=AlertPublic)
async def get_alert(alert_id: AlertId, principal: Reader, ctx: Context) -> AlertPublic:
    """One alert: who acknowledged or resolved it, the notes, and the actions queued for
    it. Roles: keeper (own buildings), security, inspector, drill_coordinator."""
    return await actions.get_alert(ctx, principal, alert_id)


async def _act(
    ctx: Context,
    principal: Principal,
    alert_id: str,
    action: Literal["ack", "resolve"],
    body: ActionRequest | None,
) -> ActionQueued:
    note = body.note if body is not None else ""
    return await actions.request_action(ctx, principal, alert_id, action, note, "api")


@router.post("/{alert_id}/ack", response_model=ActionQueued, status_code=status.HTTP_202_ACCEPTED)
async def acknowledge(
    alert_id: AlertId, principal: Acker, ctx: Context, body: ActionRequest | None = None
) -> ActionQueued:
    """Acknowledge a firing alert (stops its repeats and escalation), with an optional
    note: queued, applied by the gateway within about a second. 409 when the alert is not
    firing or an action is already queued for it. Roles: keeper (own buildings), security."""
    return await _act(ctx, principal, alert_id, "ack", body)


@router.post(
    "/{alert_id}/resolve", response_model=ActionQueued, status_code=status.HTTP_202_ACCEPTED
)
async def resolve(
    alert_id: AlertId, principal: Resolver, ctx: Context, body: ActionRequest | None = None
) -> ActionQueued:
    """Resolve a firing or acknowledged alert by hand, with an optional note: queued,
    applied by the gateway within about a second (those who were told get the resolution
    notice). 409 when it is pending or resolved, or a resolution is already queued.
    Roles: security."""
    return await _act(ctx, principal, alert_id, "resolve", body)
