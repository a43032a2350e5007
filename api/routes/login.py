"""``POST /api/v1/login/access-token``: the OAuth2 password flow, rate-limited.

Failed logins are counted per username and per client address in the state database (so
the limit holds across API processes and restarts); over the limit the answer is 429 with
``Retry-After`` and the password is not even checked.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, status

from api import accounts
from api.deps import TOKEN_URL, Context
from api.schemas import USERNAME_PATTERN, TokenResponse
from api.security import verify_password
from gateway.audit import append_async

router = APIRouter(tags=["login"])

MAX_FORM_BYTES = 4096


async def _form(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "send the login as application/x-www-form-urlencoded",
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "the login form is too large")
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "the login form is malformed") from None
    return {k: v[0] for k, v in fields.items() if v}


# The form is parsed by hand (no python-multipart dependency); this declares it for OpenAPI.
LOGIN_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["username", "password"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["password"]},
                        "username": {"type": "string"},
                        "password": {"type": "string", "format": "password"},
                    },
                }
            }
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed form"},
    401: {"description": "incorrect username or password"},
    429: {"description": "too many failed logins; see Retry-After"},
}


@router.post(TOKEN_URL, response_model=TokenResponse, openapi_extra=LOGIN_FORM, responses=ERRORS)
async def access_token(request: Request, ctx: Context) -> TokenResponse:
    """Exchange ``username`` and ``password`` (form fields) for a short-lived bearer token."""
    form = await _form(request)
    grant = form.get("grant_type", "password")
    if grant != "password":
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "grant_type must be 'password'")
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "username and password are required")
    address = request.client.host if request.client else "unknown"
    now_ns = ctx.clock.now_ns()
    wait = await asyncio.to_thread(accounts.login_retry_after, ctx.db, username, address, now_ns)
    if wait is not None:
        ctx.metrics.inc("api_logins", result="limited")
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    user, password_hash = None, None
    # A name no user can have (e.g. with NUL, which PostgreSQL refuses) is not looked up.
    if re.fullmatch(USERNAME_PATTERN, username):
        user, password_hash = await asyncio.to_thread(accounts.login_user, ctx.db, username)
    ok = await asyncio.to_thread(verify_password, password, password_hash)
    if user is None or not ok or user.disabled:
        await asyncio.to_thread(accounts.record_login_failure, ctx.db, username, address, now_ns)
        ctx.metrics.inc("api_logins", result="failed")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    await asyncio.to_thread(accounts.clear_login_failures, ctx.db, username)
    ctx.metrics.inc("api_logins", result="ok")
    await append_async(
        ctx.db,
        actor=f"user:{user.username}",
        action="login",
        detail={"address": address},
    )
    token = ctx.tokens.issue(user.id)
    return TokenResponse(access_token=token.token, expires_in=token.expires_in)
