"""Password login, shared by the API's token route and the console's login form.

Failed logins are counted per username and per client address in the state database (so
the limit holds across API processes and restarts); over the limit the password is not
even checked. The password check costs the same whether or not the user exists. Every
outcome is counted in ``api_logins``; a success is audited as ``login`` with the address
and the way in (``via``: ``api`` or ``console``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Literal

from api import accounts
from api.deps import AppContext
from api.schemas import USERNAME_PATTERN
from api.security import verify_password
from gateway.audit import append_async


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """The outcome: ``ok`` with the user, ``limited`` with the seconds to wait, ``failed``."""

    result: Literal["ok", "limited", "failed"]
    user: accounts.User | None = None
    retry_after: int | None = None


async def authenticate(
    ctx: AppContext, username: str, password: str, address: str, *, via: str
) -> LoginCheck:
    """Check ``username`` and ``password`` from ``address``."""
    now_ns = ctx.clock.now_ns()
    wait = await asyncio.to_thread(accounts.login_retry_after, ctx.db, username, address, now_ns)
    if wait is not None:
        ctx.metrics.inc("api_logins", result="limited")
        return LoginCheck("limited", retry_after=wait)
    user, password_hash = None, None
    # A name no user can have (e.g. with NUL, which PostgreSQL refuses) is not looked up.
    if re.fullmatch(USERNAME_PATTERN, username):
        user, password_hash = await asyncio.to_thread(accounts.login_user, ctx.db, username)
    ok = await asyncio.to_thread(verify_password, password, password_hash)
    if user is None or not ok or user.disabled:
        await asyncio.to_thread(accounts.record_login_failure, ctx.db, username, address, now_ns)
        ctx.metrics.inc("api_logins", result="failed")
        return LoginCheck("failed")
    await asyncio.to_thread(accounts.clear_login_failures, ctx.db, username)
    ctx.metrics.inc("api_logins", result="ok")
    await append_async(
        ctx.db,
        actor=f"user:{user.username}",
        action="login",
        detail={"address": address, "via": via},
    )
    return LoginCheck("ok", user=user)
