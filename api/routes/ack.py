"""The acknowledgement page: ``/ack/{token}`` (signed link) and ``/ack/code`` (short code).

A GET (or HEAD) only shows what would be acknowledged: mail scanners and chat link previews
fetch links, and must acknowledge nothing. The form's POST acknowledges. It must carry the
page nonce the GET issued (bound to the token, expiring) and, when the browser sends
Origin or Referer, come from ``public_url``'s origin. The acknowledgement itself is queued
for the gateway (:mod:`alerting.ackqueue`). Refusals get a Chinese page with a fitting status:
forged 400, unknown alert 404, replayed or already handled 409, expired 410.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from alerting.acklink import MAX_NOTE_CHARS, AlertInfo, Check, Verdict
from alerting.templates import CHANGE_KINDS, SEVERITY
from api.console_auth import origin_in, public_origin
from api.deps import AppContext, Context
from api.status import api_zone, local_time

router = APIRouter(tags=["acknowledgement"])

MAX_FORM_BYTES = 8192
STATUS = {
    Verdict.OK: 200,
    Verdict.FORGED: 400,
    Verdict.UNKNOWN_ALERT: 404,
    Verdict.REPLAYED: 409,
    Verdict.ALREADY_ACKNOWLEDGED: 409,
    Verdict.RESOLVED: 409,
    Verdict.EXPIRED: 410,
    Verdict.TOO_MANY_ATTEMPTS: 429,
}
TITLES = {
    Verdict.FORGED: "链接无效",
    Verdict.UNKNOWN_ALERT: "找不到告警",
    Verdict.REPLAYED: "链接已使用",
    Verdict.ALREADY_ACKNOWLEDGED: "告警已确认",
    Verdict.RESOLVED: "告警已恢复",
    Verdict.EXPIRED: "链接已过期",
    Verdict.TOO_MANY_ATTEMPTS: "尝试次数过多",
}
# The token is a credential in the URL: never sent on as a Referer, cached or indexed.
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


def _page(ctx: AppContext, request: Request, name: str, status: int, **values: Any) -> HTMLResponse:
    response = ctx.templates.TemplateResponse(request, name, values, status_code=status)
    response.headers.update(HEADERS)
    assert isinstance(response, HTMLResponse)
    return response


def _error(ctx: AppContext, request: Request, check: Check) -> HTMLResponse:
    response = _page(
        ctx,
        request,
        "ack_error.html",
        STATUS.get(check.verdict, 400),
        title=TITLES.get(check.verdict, "无法确认"),
        reason=check.reason,
        alert=_alert_view(ctx, check.alert),
    )
    retry = check.detail.get("retry_after_s")
    if check.verdict == Verdict.TOO_MANY_ATTEMPTS and isinstance(retry, int):
        response.headers["Retry-After"] = str(retry)
    return response


def _refused(ctx: AppContext, request: Request, title: str, reason: str, status: int) -> Response:
    return _page(ctx, request, "ack_error.html", status, title=title, reason=reason, alert=None)


def _alert_view(ctx: AppContext, alert: AlertInfo | None) -> dict[str, str] | None:
    if alert is None:
        return None
    since = local_time(alert.started_at_ns, api_zone(ctx))
    value = "—" if alert.value is None else f"{alert.value:g}"
    return {
        "room": alert.room,
        "building": alert.labels.get("building", ""),
        "summary": alert.summary,
        "severity": SEVERITY["zh"].get(alert.severity, alert.severity),
        "value": value,
        "value_label": "变化量" if alert.rule_kind in CHANGE_KINDS else "当前值",
        "limit": alert.limit,
        "since": since.strftime("%Y-%m-%d %H:%M"),
        "drill": "是" if alert.labels.get("drill_id") else "",
    }


def _same_origin(ctx: AppContext, request: Request) -> bool:
    """False when Origin (or else Referer) names another origin than ``public_url``'s (the
    links point there); neither header: True, the page nonce still binds the form."""
    return origin_in(request, {public_origin(ctx)})


async def _form(request: Request) -> dict[str, str] | None:
    """The url-encoded form (first value of each field), or None when it is not one."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=20, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    return {k: v[0] for k, v in fields.items() if v}


def _cross_origin(ctx: AppContext, request: Request) -> Response:
    reason = "请求来源与本系统地址不符，已拒绝。请直接打开通知中的链接。"
    return _refused(ctx, request, "请求被拒绝", reason, 403)


def _bad_form(ctx: AppContext, request: Request) -> Response:
    reason = "提交的表单无效，请重新打开链接后再试。"
    return _refused(ctx, request, "表单无效", reason, 400)


# --- short codes (declared before /ack/{token}, which would match "code") ---------------------


# HEAD (link checkers) answers like GET but stays out of the OpenAPI document, where a
# second operation with the same id would be a duplicate.
@router.head("/ack/code", response_class=HTMLResponse, include_in_schema=False)
@router.get("/ack/code", response_class=HTMLResponse)
async def code_page(request: Request, ctx: Context) -> Response:
    """The form for SMS recipients: the code from the message (it alone names the alert
    and the person)."""
    return _page(ctx, request, "ack_code.html", 200, max_note=MAX_NOTE_CHARS)


@router.post("/ack/code", response_class=HTMLResponse)
async def code_submit(request: Request, ctx: Context) -> Response:
    """Acknowledge with a short code (a ``contact`` field, optional, must then match).

    Wrong codes are limited per client address (:mod:`alerting.acklink`): behind a reverse
    proxy, start ``archwatch api --forwarded-allow-ips`` with the proxy's address, or every
    recipient shares the proxy's address and its limit.
    """
    if not _same_origin(ctx, request):
        return _cross_origin(ctx, request)
    form = await _form(request)
    if form is None:
        return _bad_form(ctx, request)
    contact = form.get("contact", "").strip() or None
    code = form.get("code", "").strip()[:64]
    note = form.get("note", "")[:MAX_NOTE_CHARS]
    address = request.client.host if request.client else None
    check = await asyncio.to_thread(
        ctx.links.acknowledge_by_code, code, contact, note, address=address
    )
    if not check.ok:
        return _error(ctx, request, check)
    return _page(
        ctx,
        request,
        "ack_done.html",
        200,
        who=check.contact_id,
        alert=_alert_view(ctx, check.alert),
    )


# --- signed links ------------------------------------------------------------------------------


# HEAD (link checkers) answers like GET but stays out of the OpenAPI document, where a
# second operation with the same id would be a duplicate.
@router.head("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
@router.get("/ack/{token}", response_class=HTMLResponse)
async def confirm_page(token: str, request: Request, ctx: Context) -> Response:
    """Show who would acknowledge which alert; changes nothing."""
    check = await asyncio.to_thread(ctx.links.check, token)
    if not check.ok:
        return _error(ctx, request, check)
    return _page(
        ctx,
        request,
        "ack_confirm.html",
        200,
        who=check.contact_id,
        alert=_alert_view(ctx, check.alert),
        token=token,
        page_nonce=ctx.links.signer.page_nonce(token),
        max_note=MAX_NOTE_CHARS,
    )


@router.post("/ack/{token}", response_class=HTMLResponse)
async def confirm_submit(token: str, request: Request, ctx: Context) -> Response:
    """Acknowledge: once per link, only from the confirmation page."""
    if not _same_origin(ctx, request):
        return _cross_origin(ctx, request)
    check = await asyncio.to_thread(ctx.links.check, token)
    if not check.ok:
        await asyncio.to_thread(ctx.links.record_refusal, check, via="link")
        return _error(ctx, request, check)
    form = await _form(request)
    if (
        form is None
        or form.get("token") != token
        or not ctx.links.signer.check_page_nonce(token, form.get("page_nonce", ""))
    ):
        return _bad_form(ctx, request)
    note = form.get("note", "")[:MAX_NOTE_CHARS]
    used = await asyncio.to_thread(ctx.links.use, token, note)
    if not used.ok:
        return _error(ctx, request, used)
    return _page(
        ctx, request, "ack_done.html", 200, who=used.contact_id, alert=_alert_view(ctx, used.alert)
    )
