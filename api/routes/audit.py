"""The audit log over HTTP: ``GET /api/v1/audit`` (paged, filtered) and ``/api/v1/audit/verify``.

Roles: inspector and security (admin passes every check). Entries come newest first, each
with everything its hash covers (``seq``, ``ts``, ``actor``, ``action``, ``target``,
``detail``, ``prev_hash``) and its ``hash``, so a client can check the chain itself (the
recipe is in :mod:`gateway.audit`). Filters: ``actor`` and ``target`` exact, ``action`` a
prefix (``alert.`` lists every alert action), ``start``/``end`` a bounded time range.

:func:`audit_page` is shared with the console's audit page, so both list the same entries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, func, select

from api.deps import Context, Principal, require_roles
from api.models import Role
from api.paging import Page, Paging, PagingDep, TimeRange, time_range
from gateway import audit
from gateway.audit import AuditLogRow
from gateway.models import as_utc
from gateway.statedb import StateDB

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

AUDIT_ROLES = (Role.INSPECTOR, Role.SECURITY)
DEFAULT_SPAN = timedelta(days=30)
LONGEST_SPAN = timedelta(days=366)
MAX_FILTER_CHARS = 200
# PostgreSQL text cannot hold NUL: refused here with a 422 instead of failing in the query.
_NO_NUL = r"^[^\x00]*$"

AuditReader = Annotated[Principal, Depends(require_roles(*AUDIT_ROLES))]
AuditRange = Annotated[TimeRange, Depends(time_range(default=DEFAULT_SPAN, longest=LONGEST_SPAN))]


def _filter(description: str) -> Any:
    return Query(max_length=MAX_FILTER_CHARS, pattern=_NO_NUL, description=description)


class AuditEntryPublic(BaseModel):
    """One audit entry, with the fields its hash covers and the hash itself."""

    seq: int
    ts: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditVerifyPublic(BaseModel):
    """The chain check: ``ok`` with the number of entries, or the first bad entry and why."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str
    head_hash: str | None


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which entries to list: every given filter must match."""

    range: TimeRange
    actor: str | None = None
    action_prefix: str | None = None
    target: str | None = None


def _where(query: AuditQuery) -> list[ColumnElement[bool]]:
    where = [
        AuditLogRow.ts >= as_utc(query.range.start),
        AuditLogRow.ts < as_utc(query.range.end),
    ]
    if query.actor:
        where.append(AuditLogRow.actor == query.actor)
    if query.action_prefix:
        # autoescape: a "%" or "_" typed in the filter matches itself, not any character.
        where.append(AuditLogRow.action.startswith(query.action_prefix, autoescape=True))
    if query.target:
        where.append(AuditLogRow.target == query.target)
    return where


def _public(row: AuditLogRow) -> AuditEntryPublic:
    return AuditEntryPublic(
        seq=row.seq,
        ts=as_utc(row.ts),
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail=audit.parse_detail(row.detail),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def read_page(db: StateDB, query: AuditQuery, paging: Paging) -> Page[AuditEntryPublic]:
    """One page of matching entries, newest first, with the total. Blocking."""
    where = _where(query)
    with db.session() as session:
        total = int(
            session.execute(
                select(func.count()).select_from(AuditLogRow).where(*where)
            ).scalar_one()
        )
        rows = session.execute(
            select(AuditLogRow)
            .where(*where)
            .order_by(AuditLogRow.seq.desc())
            .offset(paging.offset)
            .limit(paging.limit)
        ).scalars()
        items = [_public(row) for row in rows]
    return Page(items=items, total=total, limit=paging.limit, offset=paging.offset)


async def audit_page(db: StateDB, query: AuditQuery, paging: Paging) -> Page[AuditEntryPublic]:
    """:func:`read_page` in a worker thread, for the event loop."""
    return await asyncio.to_thread(read_page, db, query, paging)


async def verify_chain(db: StateDB) -> AuditVerifyPublic:
    """The result of :func:`gateway.audit.verify` as the API shows it."""
    result = await audit.verify_async(db)
    return AuditVerifyPublic(
        ok=result.ok,
        entries=result.entries,
        first_bad_seq=result.first_bad_seq,
        reason=result.reason,
        head_hash=result.head_hash,
    )


@router.get("", response_model=Page[AuditEntryPublic])
async def list_audit(
    ctx: Context,
    _principal: AuditReader,
    paging: PagingDep,
    span: AuditRange,
    actor: Annotated[str | None, _filter("exact actor, e.g. user:zhang")] = None,
    action: Annotated[
        str | None, _filter("action prefix, e.g. alert. or alert.acknowledged")
    ] = None,
    target: Annotated[str | None, _filter("exact target, e.g. an alert id")] = None,
) -> Page[AuditEntryPublic]:
    """Audit entries, newest first, paged; ``start``/``end`` default to the last 30 days and
    span at most 366. Roles: inspector, security."""
    query = AuditQuery(range=span, actor=actor, action_prefix=action, target=target)
    return await audit_page(ctx.db, query, paging)


@router.get("/verify", response_model=AuditVerifyPublic)
async def verify_audit(ctx: Context, _principal: AuditReader) -> AuditVerifyPublic:
    """Recompute the whole chain: ``ok`` and the number of entries, or the first bad entry
    (``first_bad_seq``) and why. Answers 200 either way: the check itself succeeded.
    Roles: inspector, security."""
    return await verify_chain(ctx.db)
