"""Room status and the daily ledger.

- ``GET /api/v1/rooms``: every visible room's status (paged; ``building``, ``status`` filters).
- ``GET /api/v1/rooms/{building}/{room}``: one room's status and each sensor's newest reading.
- ``GET /api/v1/rooms/{building}/{room}/daily``: per local day, temperature and humidity
  minimum, mean, maximum and time in band (api.summaries).

Roles: keeper, security, inspector, drill_coordinator (admin always). A keeper's listing
holds only their buildings; a room elsewhere answers 404. How a status is decided:
api.status.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import Context, Principal, SiteDep, require_roles
from api.paging import Page, PagingDep, TimeRange, time_range
from api.schemas_rooms import RoomDaily, RoomDetail, RoomState, RoomStatus
from api.status import READER_ROLES, not_found, room_status, room_statuses
from api.summaries import room_daily

router = APIRouter(prefix="/api/v1/rooms", tags=["rooms"])

Reader = Annotated[Principal, Depends(require_roles(*READER_ROLES))]

LONGEST_DAILY = timedelta(days=92)


@router.get("", response_model=Page[RoomStatus])
async def list_rooms(
    principal: Reader,
    site: SiteDep,
    ctx: Context,
    paging: PagingDep,
    building: Annotated[str | None, Query(max_length=64, description="building id")] = None,
    status: Annotated[
        RoomState | None, Query(description="only rooms whose status is this")
    ] = None,
) -> Page[RoomStatus]:
    """The status of each room the caller sees, in site-file order."""
    if building is not None:
        principal.require_building(building, f"building {building}")
        if not any(b.id == building for b in site.model.buildings):
            raise not_found(f"building {building}")
    rooms = [
        r
        for r in await room_statuses(ctx, site, principal)
        if (building is None or r.building == building) and (status is None or r.status is status)
    ]
    return Page(
        items=rooms[paging.offset : paging.offset + paging.limit],
        total=len(rooms),
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{building}/{room}", response_model=RoomDetail)
async def read_room(
    building: str, room: str, principal: Reader, site: SiteDep, ctx: Context
) -> RoomDetail:
    """One room's status, its flags, and the newest reading of each of its sensors."""
    return await room_status(ctx, site, principal, building, room)


@router.get("/{building}/{room}/daily", response_model=RoomDaily)
async def read_room_daily(
    building: str,
    room: str,
    principal: Reader,
    site: SiteDep,
    ctx: Context,
    rng: Annotated[
        TimeRange, Depends(time_range(default=timedelta(days=7), longest=LONGEST_DAILY))
    ],
) -> RoomDaily:
    """Per local day (the API's time zone) beginning in [start, end): temperature and
    humidity minimum, mean, maximum and time in band; at most 92 days. ``start`` and ``end``
    may be dates: ``start=2026-01-01&end=2026-01-08`` is 1 to 7 January."""
    return await room_daily(ctx, site, principal, building, room, rng)
