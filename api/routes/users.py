"""Users: ``/api/v1/users/me`` (anyone logged in) and the admin's user management."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from api import accounts
from api.deps import AdminPrincipal, AppContext, Context, CurrentPrincipal
from api.paging import unprocessable
from api.schemas import Me, RowId, UserCreate, UserPage, UserPublic, UserSelfUpdate, UserUpdate
from gateway.audit import append_async
from gateway.clock import Clock
from gateway.reading import datetime_from_ns

router = APIRouter(prefix="/api/v1/users", tags=["users"])

MAX_PAGE = 200


def now(clock: Clock) -> datetime:
    """The clock's time as an aware UTC datetime."""
    return datetime_from_ns(clock.now_ns())


def public(user: accounts.User) -> UserPublic:
    return UserPublic(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        roles=list(user.roles),
        buildings=list(user.buildings),
        disabled=user.disabled,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


@router.get("/me", response_model=Me)
async def read_me(principal: CurrentPrincipal) -> Me:
    """Who the caller is, with roles and visible buildings. Roles: any."""
    return Me(
        kind=principal.kind,
        id=principal.id,
        name=principal.name,
        roles=sorted(principal.roles),
        buildings=None if principal.buildings is None else sorted(principal.buildings),
    )


@router.patch("/me", response_model=UserPublic)
async def update_me(body: UserSelfUpdate, principal: CurrentPrincipal, ctx: Context) -> UserPublic:
    """Change one's own display name. Roles: any user (not API keys)."""
    if principal.kind != "user":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "API keys have no user profile")
    user = await asyncio.to_thread(
        accounts.update_user,
        ctx.db,
        principal.id,
        now=now(ctx.clock),
        display_name=body.display_name,
    )
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such user")
    await append_async(
        ctx.db,
        actor=principal.actor,
        action="user.update",
        target=f"user:{user.username}",
        detail={"fields": ["display_name"]},
    )
    return public(user)


@router.get("", response_model=UserPage)
async def list_users(
    principal: AdminPrincipal,
    ctx: Context,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> UserPage:
    """All users, paged by id. Roles: admin."""
    users, total = await asyncio.to_thread(accounts.list_users, ctx.db, limit=limit, offset=offset)
    return UserPage(items=[public(u) for u in users], total=total, limit=limit, offset=offset)


def _check_buildings(ctx: AppContext, buildings: list[str]) -> None:
    """422 for a building the site does not have: a keeper assigned to a typo would see
    nothing and nobody would notice."""
    if ctx.site is None:
        return
    known = {b.id for b in ctx.site.model.buildings}
    unknown = sorted(set(buildings) - known)
    if unknown:
        raise unprocessable(
            f"no building {', '.join(unknown)} in this site (it has {', '.join(sorted(known))})"
        )


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, principal: AdminPrincipal, ctx: Context) -> UserPublic:
    """Create a user. Roles: admin."""
    _check_buildings(ctx, body.buildings)
    try:
        user = await asyncio.to_thread(
            accounts.create_user,
            ctx.db,
            username=body.username,
            password=body.password,
            roles=body.roles,
            display_name=body.display_name or "",
            buildings=body.buildings,
            now=now(ctx.clock),
        )
    except accounts.UsernameTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    await append_async(
        ctx.db,
        actor=principal.actor,
        action="user.create",
        target=f"user:{user.username}",
        detail={"roles": list(user.roles), "buildings": list(user.buildings)},
    )
    return public(user)


@router.patch("/{user_id}", response_model=UserPublic)
async def update_user(
    user_id: RowId, body: UserUpdate, principal: AdminPrincipal, ctx: Context
) -> UserPublic:
    """Change a user's name, password, roles, buildings or disabled flag. Roles: admin."""
    fields = body.model_dump(exclude_unset=True, exclude_none=True)
    _check_buildings(ctx, body.buildings or [])
    user = await asyncio.to_thread(
        accounts.update_user, ctx.db, user_id, now=now(ctx.clock), **fields
    )
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user with id {user_id}")
    shown = {k: v for k, v in fields.items() if k != "password"}
    await append_async(
        ctx.db,
        actor=principal.actor,
        action="user.update",
        target=f"user:{user.username}",
        detail={"fields": sorted(fields), **shown},
    )
    return public(user)
