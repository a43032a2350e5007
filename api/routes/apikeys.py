"""API keys for machines (Grafana, scripts): create (the key is shown once), list, revoke."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, Response, status

from api import accounts
from api.deps import AdminPrincipal, AppContext, Context
from api.routes.users import now
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, RowId
from gateway.audit import append_async

router = APIRouter(prefix="/api/v1/apikeys", tags=["api keys"])


def public(key: accounts.ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        roles=list(key.roles),
        created_by=key.created_by,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


@router.get("", response_model=list[ApiKeyPublic])
async def list_keys(principal: AdminPrincipal, ctx: Context) -> list[ApiKeyPublic]:
    """Every key, revoked ones included (never the secret). Roles: admin."""
    return [public(k) for k in await asyncio.to_thread(accounts.list_api_keys, ctx.db)]


@router.post("", response_model=ApiKeyCreated, status_code=status.HTTP_201_CREATED)
async def create_key(body: ApiKeyCreate, principal: AdminPrincipal, ctx: Context) -> ApiKeyCreated:
    """Create a key with the given roles; the answer holds the key, shown once. Roles: admin."""
    key, secret = await asyncio.to_thread(
        accounts.create_api_key,
        ctx.db,
        name=body.name,
        roles=body.roles,
        created_by=principal.actor,
        now=now(ctx.clock),
    )
    await accounts_audit(ctx, principal.actor, "apikey.create", key)
    return ApiKeyCreated(**public(key).model_dump(), key=secret)


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: RowId, principal: AdminPrincipal, ctx: Context) -> Response:
    """Revoke a key; it stops working at once. Roles: admin."""
    key = await asyncio.to_thread(accounts.revoke_api_key, ctx.db, key_id, now=now(ctx.clock))
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key with id {key_id}")
    await accounts_audit(ctx, principal.actor, "apikey.revoke", key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def accounts_audit(ctx: AppContext, actor: str, action: str, key: accounts.ApiKey) -> None:
    await append_async(
        ctx.db,
        actor=actor,
        action=action,
        target=f"apikey:{key.id}",
        detail={"name": key.name, "prefix": key.prefix, "roles": list(key.roles)},
    )
