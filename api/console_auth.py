"""Sessions for the console (``/console``): a cookie holding the login's access token.

**Session.** Logging in on the console issues a session JWT (``ctx.tokens``, kind
``console``: a working shift long, and refused as an API bearer token) and puts it in the
cookie ``archwatch_session``:
``HttpOnly`` (page scripts cannot read it), ``SameSite=Strict`` (no other site's page can
make the browser send it), ``Path=/console``, ``Secure`` when the console is served over
HTTPS (the request's scheme, or ``public_url``'s when a proxy terminates TLS and forwards
plain HTTP), and living as long as the token. Every console page checks the token and the user
on every request, exactly as the API checks a bearer token, so a disabled account is out
at its next click. When the token expires the next page is the login form again.

**CSRF.** Two independent defences on every console POST:

1. the ``SameSite=Strict`` cookie: a cross-site form or script never carries the session,
   so such a request is anonymous (401) before anything else is looked at;
2. a per-session CSRF token in every form (hidden field ``csrf``), the HMAC-SHA256 of a
   fixed label keyed with the session's access token. Only someone who holds the cookie
   can compute it, it changes with each login, and it is compared in constant time.
   A missing or wrong token gets 403 and changes nothing.

In addition a POST whose ``Origin`` (or, without one, ``Referer``) names another origin
than the console's own address (or ``public_url``) is refused with 403; the login form,
which has no session yet, relies on this check (a forged login cannot come from another
site's page).

**Login** is the API's password login (:mod:`api.authenticate`): the same failed-login
limit, password check, counter and ``login`` audit entry (with ``via: console``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response

from api import accounts
from api.authenticate import authenticate
from api.deps import AppContext, Context, Principal, app_context, user_principal
from api.models import Role
from api.security import TokenError

SESSION_COOKIE = "archwatch_session"
COOKIE_PATH = "/console"
CSRF_FIELD = "csrf"
_CSRF_LABEL = b"archwatch console csrf v1"
# Where a login may send the browser back to: console paths only (no open redirect).
_NEXT = re.compile(r"^/console(?:/[A-Za-z0-9_.\-/]*)?(?:\?[A-Za-z0-9_.\-=&%:+]*)?$")


class ConsoleDenied(Exception):
    """A console request that must not go on: the page says why, with ``status``."""

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LoginRequired(ConsoleDenied):
    """No session, or one that expired or whose account is gone: 401 and the login form."""

    status = 401


class RoleRequired(ConsoleDenied):
    """Logged in without a role the page needs: 403."""

    status = 403

    def __init__(self, reason: str, session: ConsoleSession) -> None:
        super().__init__(reason)
        self.session = session


class RequestRefused(ConsoleDenied):
    """A POST without the right CSRF token or from another origin: 403, nothing changed."""

    status = 403


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A logged-in console user: who (as the API sees them), and the form token."""

    principal: Principal
    display_name: str
    csrf: str

    def may(self, *roles: Role) -> bool:
        """True when the user holds one of ``roles`` (admin holds them all)."""
        return self.principal.has_any(frozenset(roles))


def csrf_token(session_token: str) -> str:
    """The forms' token for a session: HMAC-SHA256(key=access token, label), hex."""
    return hmac.new(session_token.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


async def _session(ctx: AppContext, request: Request) -> ConsoleSession:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequired("请先登录。")
    try:
        user_id = ctx.tokens.check(token, kind="console")
    except TokenError:
        raise LoginRequired("登录已过期，请重新登录。") from None
    user = await asyncio.to_thread(accounts.get_user, ctx.db, user_id)
    if user is None or user.disabled:
        raise LoginRequired("该账户已停用或不存在，请联系管理员。")
    return ConsoleSession(user_principal(user), user.display_name, csrf_token(token))


def console_session(*roles: Role) -> Callable[..., Awaitable[ConsoleSession]]:
    """A dependency admitting a logged-in console user with one of ``roles`` (or admin):
    :class:`LoginRequired` when anonymous, :class:`RoleRequired` without the role."""
    allowed = frozenset(roles)

    async def dependency(ctx: Context, request: Request) -> ConsoleSession:
        session = await _session(ctx, request)
        if not session.principal.has_any(allowed):
            names = "、".join(_ROLE_NAMES[r] for r in sorted(allowed | {Role.ADMIN}))
            raise RoleRequired(f"此页面需要以下角色之一：{names}。", session)
        return session

    return dependency


_ROLE_NAMES = {
    Role.KEEPER: "库房管理员",
    Role.SECURITY: "安保人员",
    Role.INSPECTOR: "检查员",
    Role.DRILL_COORDINATOR: "演练协调员",
    Role.ADMIN: "管理员",
}


def role_name(role: Role) -> str:
    """The role's Chinese name, as the console shows it."""
    return _ROLE_NAMES[role]


AnySession = Annotated[ConsoleSession, Depends(console_session(*Role))]
"""Any logged-in console user."""


def own_origin(request: Request) -> str:
    """The origin the browser used to reach this server (scheme and Host header)."""
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}".lower()


def public_origin(ctx: AppContext) -> str:
    """The origin of ``public_url`` (scheme and host), lower case."""
    public = urlsplit(ctx.settings.public_url)
    return f"{public.scheme}://{public.netloc}".lower()


def origin_in(request: Request, allowed: set[str]) -> bool:
    """False when Origin (or else Referer) names an origin outside ``allowed``. Neither
    header present (some privacy settings strip both): True; the form's own token (CSRF
    token, page nonce) still binds it."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.strip().lower().rstrip("/") in allowed
    referer = request.headers.get("referer")
    if referer is not None:
        try:
            parts = urlsplit(referer.strip())
        except ValueError:
            return False
        return f"{parts.scheme}://{parts.netloc}".lower() in allowed
    return True


def same_origin(ctx: AppContext, request: Request) -> bool:
    """False when Origin (or else Referer) names an origin other than this server's or
    ``public_url``'s (see :func:`origin_in`)."""
    return origin_in(request, {own_origin(request), public_origin(ctx)})


def check_post(ctx: AppContext, request: Request, session: ConsoleSession, sent: str) -> None:
    """Refuse a console POST (:class:`RequestRefused`) from another origin or without this
    session's CSRF token."""
    if not same_origin(ctx, request):
        raise RequestRefused("请求来源与本系统地址不符，已拒绝。")
    if not hmac.compare_digest(sent.encode("utf-8"), session.csrf.encode("utf-8")):
        raise RequestRefused("表单已失效（可能已重新登录），请刷新页面后再试。")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: ``target`` when it is a console path, else /console."""
    if target and _NEXT.fullmatch(target) and ".." not in target:
        return target
    return COOKIE_PATH


def _secure(request: Request) -> bool:
    """Whether the cookie must be ``Secure``: the browser reaches the console over HTTPS.
    Behind a proxy that terminates TLS the request here is plain HTTP, so ``public_url``
    (the address people use) counts too; a cookie sent in clear would give the session
    away."""
    if request.url.scheme == "https":
        return True
    public = app_context(request).settings.public_url
    return urlsplit(public).scheme.lower() == "https"


def set_session(request: Request, response: Response, token: str, max_age: int) -> None:
    """Put the access token in the session cookie (see the module docstring)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


def clear_session(request: Request, response: Response) -> None:
    """Remove the session cookie."""
    response.delete_cookie(
        SESSION_COOKIE,
        path=COOKIE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


@dataclass(frozen=True, slots=True)
class LoginOutcome:
    """A login attempt: ``user`` when it succeeded, else the page status and reason."""

    user: accounts.User | None
    status: int
    reason: str
    retry_after: int | None = None


async def log_in(ctx: AppContext, username: str, password: str, address: str) -> LoginOutcome:
    """Check a console login exactly as the API's password login does
    (:func:`api.authenticate.authenticate`); the reasons are the login page's."""
    if not username or not password:
        return LoginOutcome(None, 400, "请输入用户名和密码。")
    check = await authenticate(ctx, username, password, address, via="console")
    if check.result == "limited":
        wait = check.retry_after
        return LoginOutcome(None, 429, f"登录失败次数过多，请 {wait} 秒后再试。", wait)
    if check.user is None:
        return LoginOutcome(None, 401, "用户名或密码错误。")
    return LoginOutcome(check.user, 200, "")
