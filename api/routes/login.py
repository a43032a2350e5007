"""``POST /api/v1/login/access-token``: the OAuth2 password flow, rate-limited
(:mod:`api.authenticate`): over the limit the answer is 429 with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, status

from api.authenticate import authenticate
from api.deps import TOKEN_URL, Context
from api.schemas import TokenResponse

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
    check = await authenticate(ctx, username, password, address, via="api")
    if check.result == "limited":
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins; try again in {check.retry_after} s",
            headers={"Retry-After": str(check.retry_after)},
        )
    if check.user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = ctx.tokens.issue(check.user.id)
    return TokenResponse(access_token=token.token, expires_in=token.expires_in)
