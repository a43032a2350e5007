"""Silences: ``/api/v1/silences`` (list, create) and ``/api/v1/silences/{id}/expire``.

Roles (``admin`` passes every check):

==========================================  ==============================================
route                                       roles
==========================================  ==============================================
``GET /api/v1/silences``                    keeper, security, inspector, drill_coordinator
``POST /api/v1/silences``                   security
``POST /api/v1/silences/{id}/expire``       security
==========================================  ==============================================

Matchers are Alertmanager's (``room=a101``, ``room!=a101``, ``rule_kind=~band|threshold``,
``sensor!~.*-t``); a silence lasts at most 30 days and needs a reason; its author is the
caller. The gateway's alert engine re-reads silences on every tick (about a second).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from api import alert_actions as actions
from api.deps import Context, Principal, require_roles
from api.paging import Page, PagingDep
from api.schemas_alerts import SilenceCreate, SilencePublic
from api.status import READER_ROLES

router = APIRouter(prefix="/api/v1/silences", tags=["silences"])

Reader = Annotated[Principal, Depends(require_roles(*READER_ROLES))]
Writer = Annotated[Principal, Depends(require_roles(*actions.SILENCE_WRITE_ROLES))]
SilenceId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="32 hex digits")]


@router.get("", response_model=Page[SilencePublic])
async def list_silences(
    principal: Reader,
    ctx: Context,
    paging: PagingDep,
    active: Annotated[bool, Query(description="only the silences muting now")] = False,
) -> Page[SilencePublic]:
    """Silences newest first, paged, with the total. Roles: keeper, security, inspector,
    drill_coordinator."""
    return await actions.list_silences(ctx, principal, active, paging)


@router.post("", response_model=SilencePublic, status_code=status.HTTP_201_CREATED)
async def create_silence(body: SilenceCreate, principal: Writer, ctx: Context) -> SilencePublic:
    """Mute the notifications of alerts matching every matcher between ``starts_at``
    (default: now) and ``ends_at`` (at most 30 days later). 422 names a bad matcher or
    says what is wrong with the times. Roles: security."""
    return await actions.create_silence(ctx, principal, body)


@router.post("/{silence_id}/expire", response_model=SilencePublic)
async def expire_silence(silence_id: SilenceId, principal: Writer, ctx: Context) -> SilencePublic:
    """End a silence now (404 unknown, 409 already ended). Roles: security."""
    return await actions.expire_silence(ctx, principal, silence_id)
