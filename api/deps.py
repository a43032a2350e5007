"""Dependencies shared by the routers (FastAPI's ``Annotated`` style).

Authentication: a JWT bearer token (``Authorization: Bearer ...``, from the password login)
or an API key (``X-API-Key``). Authorisation: every route names the roles it allows through
:func:`require_roles`; ``admin`` passes every check. Anonymous requests get 401 (with
``WWW-Authenticate``), principals without an allowed role 403.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from fastapi.templating import Jinja2Templates

from alerting.acklink import AckLinks
from api import accounts
from api.models import Role
from api.security import TokenError, Tokens
from gateway.clock import Clock
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.site import Site
from gateway.statedb import StateDB
from gateway.store.base import Store

TOKEN_URL = "/api/v1/login/access-token"  # noqa: S105 - a path, not a secret


@dataclass(frozen=True, slots=True)
class AppContext:
    """What the routes share: settings, the state database, the store, the site, links,
    templates, the clock, the access-token issuer and the API process's own metrics.

    ``site`` is None when the API was started without a site file: routes about buildings,
    rooms and sensors then answer 409 saying so (the rest of the API works).
    """

    settings: Settings
    db: StateDB
    store: Store
    site: Site | None
    links: AckLinks
    templates: Jinja2Templates
    clock: Clock
    tokens: Tokens
    metrics: Metrics = field(default_factory=Metrics)


def app_context(request: Request) -> AppContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


Context = Annotated[AppContext, Depends(app_context)]


def site_of(ctx: Context) -> Site:
    """The site the API describes; 409 when the API runs without a site file."""
    if ctx.site is None:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail="the API runs without a site file: start it with --site FILE "
            "or set ARCHWATCH_SITE_FILE",
        )
    return ctx.site


SiteDep = Annotated[Site, Depends(site_of)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a logged-in user or an API key, with its roles.

    ``buildings`` is None when the principal sees every building; a user whose only role
    is keeper sees just the buildings assigned to them.
    """

    id: int
    kind: Literal["user", "apikey"]
    name: str
    roles: frozenset[Role]
    buildings: frozenset[str] | None

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        return f"{self.kind}:{self.name}"

    def has_any(self, roles: frozenset[Role]) -> bool:
        return Role.ADMIN in self.roles or bool(self.roles & roles)

    def sees_building(self, building: str) -> bool:
        return self.buildings is None or building in self.buildings

    def require_building(self, building: str, what: str) -> None:
        """404 (not 403) for an object in a building this principal may not see: its
        existence is not disclosed. ``what`` names the object for the message."""
        if not self.sees_building(building):
            raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no {what}")


def user_principal(user: accounts.User) -> Principal:
    roles = frozenset(user.roles)
    scoped = roles == {Role.KEEPER}
    return Principal(
        id=user.id,
        kind="user",
        name=user.username,
        roles=roles,
        buildings=frozenset(user.buildings) if scoped else None,
    )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False)


async def optional_principal(
    ctx: Context,
    token: Annotated[str | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal | None:
    """The caller, None when anonymous; 401 when credentials are given but not valid."""
    if token:
        try:
            user_id = ctx.tokens.check(token)
        except TokenError as exc:
            raise _unauthorized(str(exc)) from None
        user = await asyncio.to_thread(accounts.get_user, ctx.db, user_id)
        if user is None or user.disabled:
            raise _unauthorized("the account no longer exists or is disabled")
        return user_principal(user)
    if api_key:
        key = await asyncio.to_thread(accounts.find_api_key, ctx.db, api_key)
        if key is None:
            raise _unauthorized("the API key is unknown or revoked")
        # Keys are not scoped to buildings, so the role keeper (which is) never counts for
        # one, even on a key stored before keys were refused that role.
        return Principal(
            id=key.id,
            kind="apikey",
            name=key.name,
            roles=frozenset(key.roles) - {Role.KEEPER},
            buildings=None,
        )
    return None


def require_roles(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting principals with one of ``roles`` (or ``admin``)."""
    allowed = frozenset(roles)

    async def dependency(
        principal: Annotated[Principal | None, Depends(optional_principal)],
    ) -> Principal:
        if principal is None:
            raise _unauthorized("log in, or send an API key in X-API-Key")
        if not principal.has_any(allowed):
            names = ", ".join(sorted(r.value for r in allowed | {Role.ADMIN}))
            raise HTTPException(
                status_code=status.HTTP_403_FORBIDDEN,
                detail=f"this needs one of the roles: {names}",
            )
        return principal

    return dependency


ALL_ROLES = tuple(Role)
CurrentPrincipal = Annotated[Principal, Depends(require_roles(*ALL_ROLES))]
"""Any authenticated principal (any role)."""
AdminPrincipal = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
"""An admin."""
