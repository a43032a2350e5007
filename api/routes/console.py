"""The operator console: server-rendered pages under ``/console`` (Jinja2, Chinese, no
scripts, no external assets, usable on a phone).

Pages (roles; admin passes every check):

- ``GET /console/login``, ``POST /console/login``, ``POST /console/logout``: anyone;
- ``GET /console``: room status overview, tiles coloured by status (any role; a keeper sees
  the buildings assigned to them); ``GET /console/rooms/{building}/{room}``: one room;
- ``GET /console/alerts``: the alert list with acknowledge (with a note), resolve and
  silence forms for the roles allowed; ``POST /console/alerts/{id}/ack|resolve|silence``;
- ``GET /console/silences``, ``POST /console/silences/{id}/expire``;
- ``GET /console/audit``: the audit log, paged, filtered by action (prefix) and actor, with
  the chain check (inspector, security).

Authentication and CSRF are in :mod:`api.console_auth` (session cookie with the login's
JWT; SameSite=Strict plus a per-session CSRF token in every form, and an Origin check).
An anonymous page answers **401 with the login form** (not a redirect), so a bookmarked
page works again after logging in; a user without the role gets a 403 page.

Every write goes through the functions the API's routes use (:mod:`api.alert_actions`), so
it is checked, scoped and audited with the acting user exactly as an API call would be.
After a write the browser is sent back with 303 (post/redirect/get), so reloading the list
does not submit the form again.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from alerting.acklink import MAX_NOTE_CHARS
from alerting.model import AlertState
from alerting.templates import CHANGE_KINDS, SEVERITY
from api.alert_actions import (
    ACK_ROLES,
    RESOLVE_ROLES,
    SILENCE_WRITE_ROLES,
    create_silence,
    expire_silence,
    get_alert,
    list_alerts,
    list_silences,
    request_action,
)
from api.console_auth import (
    ConsoleDenied,
    ConsoleSession,
    LoginRequired,
    RoleRequired,
    check_post,
    clear_session,
    console_session,
    log_in,
    role_name,
    safe_next,
    same_origin,
    set_session,
)
from api.deps import AppContext, Context, app_context
from api.models import Role
from api.paging import Paging, TimeRange
from api.routes.audit import AUDIT_ROLES, AuditQuery, audit_page, verify_chain
from api.schemas_alerts import (
    MAX_REASON_CHARS,
    ActionRequest,
    AlertPublic,
    AlertQuery,
    SilenceCreate,
)
from api.schemas_rooms import RoomState, RoomStatus
from api.status import READER_ROLES, api_zone, room_status, room_statuses
from gateway.audit import append_async
from gateway.reading import datetime_from_ns

# Who may open which page (admin always may). What a role may *do* is decided again by the
# functions behind each form; these only decide what is shown.
ALL_ROLES = tuple(Role)

AUDIT_PAGE_SIZE = 50
AUDIT_DAYS = (1, 7, 30, 90, 366)
MAX_FIELD = 200
_NO_NUL = r"^[^\x00]*$"

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}


def _field(description: str = "") -> Any:
    return Query(max_length=MAX_FIELD, pattern=_NO_NUL, description=description)


def _form_field(max_length: int = MAX_FIELD) -> Any:
    return Form(max_length=max_length)


def _pager(
    path: str, query: dict[str, Any], offset: int, size: int, shown: int, total: int
) -> dict[str, Any]:
    """``prev_url`` and ``next_url`` of a listing page (None at either end): ``shown``
    items from ``offset``, ``size`` a page, ``total`` in all; ``query`` keeps the filters."""

    def url(at: int) -> str:
        return f"{path}?" + urlencode({**query, "offset": at})

    return {
        "prev_url": url(max(0, offset - size)) if offset > 0 else None,
        "next_url": url(offset + size) if offset + shown < total else None,
    }


def render(
    request: Request,
    name: str,
    *,
    status: int = 200,
    session: ConsoleSession | None = None,
    **values: Any,
) -> HTMLResponse:
    """A console page with the security headers; the layout gets the session's menu."""
    ctx = app_context(request)
    if session is not None:
        values.setdefault("may_audit", session.may(*AUDIT_ROLES))
        values.setdefault("may_silence", session.may(*READER_ROLES))
        values["role_names"] = "、".join(role_name(r) for r in sorted(session.principal.roles))
    values["session"] = session
    response = ctx.templates.TemplateResponse(request, name, values, status_code=status)
    response.headers.update(HEADERS)
    assert isinstance(response, HTMLResponse)
    return response


def login_page(request: Request, *, status: int, reason: str = "", target: str = "") -> Response:
    """The login form (401 on a page that needed a session)."""
    return render(
        request,
        "console/login.html",
        status=status,
        reason=reason,
        next=safe_next(target),
        username="",
    )


def error_page(
    request: Request, status: int, title: str, reason: str, session: ConsoleSession | None = None
) -> Response:
    """A page saying what went wrong, with the status that says it to machines."""
    return render(
        request, "console/error.html", status=status, session=session, title=title, reason=reason
    )


_TITLES = {
    400: "请求无效",
    403: "无权操作",
    404: "未找到",
    409: "无法执行",
    413: "提交内容过大",
    422: "输入有误",
    429: "操作过于频繁",
    503: "暂时无法读取",
}
# A store outage (api.status.store_unavailable): the page says so in the console's language.
_STORE_DOWN = "读数存储暂时没有响应，请稍后刷新页面再试。"


def _validation_reason(exc: RequestValidationError | ValidationError) -> str:
    fields = []
    for error in exc.errors():
        where = [str(p) for p in error.get("loc", ()) if p not in ("query", "body", "path")]
        fields.append(".".join(where) or "?")
    return "以下输入无效：" + "、".join(dict.fromkeys(fields)) + "。请检查后重试。"


def _list_of(request: Request) -> str:
    path = request.url.path
    for listing in ("/console/alerts", "/console/silences"):
        if path.startswith(listing + "/"):
            return listing
    return "/console"


class ConsoleRoute(APIRoute):
    """A route whose refusals are pages, not JSON: 401 the login form, 403 the missing
    role, 4xx from the API's functions their reason."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                # Back to the page after logging in; a form's target is no page to go back
                # to (its session ended before the POST): the list it came from is.
                target = request.url.path if request.method == "GET" else _list_of(request)
                if request.method == "GET" and request.url.query:
                    target += "?" + request.url.query
                return login_page(request, status=401, reason=exc.reason, target=target)
            except RoleRequired as exc:
                return error_page(request, 403, "无权访问", exc.reason, exc.session)
            except ConsoleDenied as exc:
                return error_page(request, exc.status, _TITLES.get(exc.status, "错误"), exc.reason)
            except (RequestValidationError, ValidationError) as exc:
                return error_page(request, 422, _TITLES[422], _validation_reason(exc))
            except HTTPException as exc:
                if exc.status_code == 503:
                    page = error_page(request, 503, _TITLES[503], _STORE_DOWN)
                    page.headers.update(exc.headers or {})
                    return page
                if exc.status_code >= 500:
                    raise
                reason = exc.detail if isinstance(exc.detail, str) else "请求无法完成。"
                return error_page(
                    request, exc.status_code, _TITLES.get(exc.status_code, "错误"), reason
                )

        return guarded


router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def session_for(*roles: Role) -> Any:
    """``Depends`` on a console session with one of ``roles``."""
    return Depends(console_session(*roles))


AnySession = Annotated[ConsoleSession, session_for(*ALL_ROLES)]
AuditSession = Annotated[ConsoleSession, session_for(*AUDIT_ROLES)]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# --- login ----------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, next: Annotated[str, _field("where to go after logging in")] = ""
) -> Response:
    """The login form."""
    return login_page(request, status=200, target=next)


@router.post("/login", response_class=HTMLResponse)
async def login_submit(
    request: Request,
    ctx: Context,
    username: Annotated[str, _form_field()] = "",
    password: Annotated[str, _form_field(max_length=1100)] = "",
    next: Annotated[str, _form_field(max_length=500)] = "",
) -> Response:
    """Check the password; on success set the session cookie and go to ``next``."""
    if not same_origin(ctx, request):
        return error_page(request, 403, "请求被拒绝", "请求来源与本系统地址不符，已拒绝。")
    outcome = await log_in(ctx, username.strip(), password, _client(request))
    if outcome.user is None:
        page = render(
            request,
            "console/login.html",
            status=outcome.status,
            reason=outcome.reason,
            next=safe_next(next),
            username=username[:64],
        )
        if outcome.retry_after is not None:
            page.headers["Retry-After"] = str(outcome.retry_after)
        return page
    token = ctx.tokens.issue(outcome.user.id, kind="console")
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session(request, response, token.token, token.expires_in)
    response.headers.update(HEADERS)
    return response


@router.post("/logout", response_class=HTMLResponse)
async def logout(
    request: Request, ctx: Context, csrf: Annotated[str, _form_field()] = ""
) -> Response:
    """End the session: the cookie is removed (the token itself expires on its own)."""
    try:
        session = await console_session(*ALL_ROLES)(ctx, request)
    except LoginRequired:
        session = None
    if session is not None:
        check_post(ctx, request, session, csrf)
        await append_async(
            ctx.db, actor=session.principal.actor, action="logout", detail={"via": "console"}
        )
    response = login_page(request, status=200, reason="已退出登录。")
    clear_session(request, response)
    return response


# --- audit log ------------------------------------------------------------------------------


def _local(ctx: AppContext, ts: datetime) -> str:
    return ts.astimezone(api_zone(ctx)).strftime("%Y-%m-%d %H:%M:%S")


@router.get("/audit", response_class=HTMLResponse)
async def audit_log(
    request: Request,
    ctx: Context,
    session: AuditSession,
    action: Annotated[str, _field("action prefix")] = "",
    actor: Annotated[str, _field("exact actor")] = "",
    days: Annotated[int, Query(ge=1, le=max(AUDIT_DAYS))] = 30,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    verify: Annotated[bool, Query()] = False,
) -> Response:
    """The audit log, newest first, 50 a page. Roles: inspector, security."""
    now = datetime_from_ns(ctx.clock.now_ns())
    span = TimeRange(now - timedelta(days=days), now + timedelta(microseconds=1))
    query = AuditQuery(
        range=span, actor=actor.strip() or None, action_prefix=action.strip() or None
    )
    page = await audit_page(ctx.db, query, Paging(AUDIT_PAGE_SIZE, offset))
    entries = [
        {
            "seq": e.seq,
            "when": _local(ctx, e.ts),
            "actor": e.actor,
            "action": e.action,
            "target": e.target,
            "detail": json.dumps(e.detail, ensure_ascii=False, sort_keys=True) if e.detail else "",
        }
        for e in page.items
    ]
    base = {"action": action, "actor": actor, "days": days}

    return render(
        request,
        "console/audit.html",
        session=session,
        here="audit",
        filters=base,
        day_choices=sorted({*AUDIT_DAYS, days}),
        page=page,
        entries=entries,
        first=offset + 1 if entries else 0,
        last=offset + len(entries),
        **_pager("/console/audit", base, offset, AUDIT_PAGE_SIZE, len(entries), page.total),
        verify=await verify_chain(ctx.db) if verify else None,
    )


# --- rooms ----------------------------------------------------------------------------------

ROOM_STATE_TEXT = {
    RoomState.ALARM: "报警",
    RoomState.OFFLINE: "离线",
    RoomState.EXCURSION: "超出范围",
    RoomState.CALIBRATION_OVERDUE: "校准过期",
    RoomState.IN_BAND: "正常",
}
SENSOR_KIND_TEXT = {
    "temperature": "温度",
    "humidity": "湿度",
    "smoke": "烟感",
    "door": "门磁",
    "water_leak": "漏水",
    "light": "照度",
    "co2": "二氧化碳",
    "voc": "VOC",
    "pm2_5": "PM2.5",
    "battery": "电量",
    "access": "门禁",
    "uv": "紫外线",
}


def _when(value: datetime | None, ctx: AppContext) -> str:
    return "无" if value is None else _local(ctx, value)


def _climate(status: RoomStatus) -> str:
    t = "—" if status.temperature is None else f"{status.temperature:.1f} °C"
    h = "—" if status.humidity is None else f"{status.humidity:.0f} %RH"
    return f"温度 {t} · 湿度 {h}"


def _room_view(ctx: AppContext, status: RoomStatus) -> dict[str, Any]:
    return {
        "key": f"{status.building}/{status.room}",
        "name": f"{status.building_name} · {status.room_name}",
        "url": f"/console/rooms/{quote(status.building)}/{quote(status.room)}",
        "status": status.status.value,
        "status_text": ROOM_STATE_TEXT[status.status],
        "more": [ROOM_STATE_TEXT[f] for f in status.flags if f != status.status],
        "climate": _climate(status),
        "storage": status.storage_class_name,
        "band": status.band,
        "alerts": len(status.alarm_alerts) + len(status.excursion_alerts),
        "last_seen": _when(status.last_seen, ctx),
    }


# Both /console and /console/: a redirect between them would greet an anonymous visitor
# with a 307 instead of the 401 login page.
@router.get("/", response_class=HTMLResponse)
@router.get("", response_class=HTMLResponse)
async def overview(request: Request, ctx: Context, session: AnySession) -> Response:
    """Room status overview: a tile per room, coloured by status. Roles: any (a keeper
    sees the buildings assigned to them)."""
    if ctx.site is None:
        return render(request, "console/overview.html", session=session, here="rooms", no_site=True)
    statuses = await room_statuses(ctx, ctx.site, session.principal)
    rooms = [_room_view(ctx, s) for s in statuses]
    tally = Counter(s.status for s in statuses)
    counts = "、".join(
        f"{ROOM_STATE_TEXT[state]} {tally[state]}" for state in RoomState if tally[state]
    )
    return render(
        request,
        "console/overview.html",
        session=session,
        here="rooms",
        rooms=rooms,
        counts=f"共 {len(rooms)} 间库房" + (f"：{counts}" if counts else ""),
        now=_local(ctx, datetime_from_ns(ctx.clock.now_ns())),
    )


@router.get("/rooms/{building}/{room}", response_class=HTMLResponse)
async def room_page(
    request: Request,
    ctx: Context,
    session: AnySession,
    building: Annotated[str, Path(max_length=64)],
    room: Annotated[str, Path(max_length=64)],
) -> Response:
    """One room: its status and the newest reading of each sensor. Roles: any (scoped)."""
    if ctx.site is None:
        return render(request, "console/overview.html", session=session, here="rooms", no_site=True)
    detail = await room_status(ctx, ctx.site, session.principal, building, room)
    sensors = []
    for s in detail.sensors:
        flags = []
        if s.stale:
            flags.append("离线")
        if s.sensor in detail.excursion_sensors:
            flags.append("超出范围")
        if s.sensor in detail.calibration_overdue_sensors:
            flags.append("校准过期")
        sensors.append(
            {
                "id": s.sensor,
                "name": s.sensor_name,
                "kind": SENSOR_KIND_TEXT.get(s.kind, s.kind),
                "value": "—" if s.value is None else f"{s.value:g} {s.unit}".strip(),
                "at": _when(s.at, ctx),
                "flags": flags,
            }
        )
    return render(
        request,
        "console/room.html",
        session=session,
        here="rooms",
        r=_room_view(ctx, detail),
        sensors=sensors,
        alerts_url="/console/alerts?" + urlencode({"building": building, "room": room}),
    )


# --- alerts ---------------------------------------------------------------------------------

ALERT_PAGE_SIZE = 50
SILENCE_HOURS = (1, 2, 4, 8, 24, 72, 168)
MAX_SILENCE_HOURS = 30 * 24
STATE_TEXT = {
    AlertState.PENDING: "待定",
    AlertState.FIRING: "告警中",
    AlertState.ACKNOWLEDGED: "已确认",
    AlertState.RESOLVED: "已恢复",
}
STATE_CHOICES: dict[str, tuple[str, tuple[AlertState, ...] | None]] = {
    "open": ("未恢复", (AlertState.PENDING, AlertState.FIRING, AlertState.ACKNOWLEDGED)),
    "firing": ("告警中（未确认）", (AlertState.FIRING,)),
    "acknowledged": ("已确认", (AlertState.ACKNOWLEDGED,)),
    "resolved": ("已恢复", (AlertState.RESOLVED,)),
    "all": ("全部", None),
}
DRILL_CHOICES = {"real": "真实告警", "drill": "演练", "all": "全部"}
FLASH = {
    "ack": "已提交确认，网关将在约一秒内处理；刷新页面即可看到结果。",
    "resolve": "已提交关闭请求，网关将在约一秒内处理。",
    "silence": "已创建静默：该库房的告警在静默期内不再发送通知。",
    "expired": "静默已结束。",
}
ReadSession = Annotated[ConsoleSession, session_for(*READER_ROLES)]
StateName = Literal["open", "firing", "acknowledged", "resolved", "all"]
LabelId = Annotated[str, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]*$")]


def _room_names(ctx: AppContext) -> dict[tuple[str, str], str]:
    if ctx.site is None:
        return {}
    return {(b.id, r.id): f"{b.name or b.id} · {r.name or r.id}" for b, r in ctx.site.rooms()}


def _who(user: str | None, note: str | None, at: datetime | None, ctx: AppContext) -> str:
    if user is None:
        return ""
    text = f"{user}，{_when(at, ctx)}"
    return f"{text}：{note}" if note else text


def _alert_view(
    ctx: AppContext, session: ConsoleSession, a: AlertPublic, names: dict[tuple[str, str], str]
) -> dict[str, Any]:
    place = names.get(
        (a.building or "", a.room or ""), "/".join(x for x in (a.building, a.room) if x)
    )
    pending = a.pending_action
    open_ = a.state in (AlertState.FIRING, AlertState.ACKNOWLEDGED)
    queued_resolve = pending is not None and pending.action == "resolve"
    return {
        "id": a.id,
        "state": a.state.value,
        "state_text": STATE_TEXT[a.state],
        "severity": SEVERITY["zh"].get(a.severity.value, a.severity.value),
        "drill": a.drill,
        "place": place,
        "summary": a.summary,
        "value": "—" if a.value is None else f"{a.value:g}",
        "value_label": "变化量" if a.rule_kind in CHANGE_KINDS else "当前值",
        "limit": a.limit,
        "started": _when(a.started_at, ctx),
        "acked": _who(a.acked_by, a.acked_note, a.acked_at, ctx),
        "resolved": _who(a.resolved_by, a.resolved_note, a.resolved_at, ctx),
        "pending": ""
        if pending is None
        else f"{pending.user} 已请求{'确认' if pending.action == 'ack' else '关闭'}，等待网关处理",
        "silenced": bool(a.silenced_by),
        "can_ack": a.state == AlertState.FIRING and pending is None and session.may(*ACK_ROLES),
        "can_resolve": open_ and not queued_resolve and session.may(*RESOLVE_ROLES),
        "can_silence": open_ and a.room is not None and session.may(*SILENCE_WRITE_ROLES),
    }


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(
    request: Request,
    ctx: Context,
    session: ReadSession,
    state: Annotated[StateName, Query()] = "open",
    drill: Annotated[Literal["real", "drill", "all"], Query()] = "real",
    building: LabelId = "",
    room: LabelId = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    done: Annotated[str, _field()] = "",
) -> Response:
    """The alert list, newest first, with the actions the user's roles allow. Roles:
    keeper (their buildings), security, inspector, drill_coordinator."""
    query = AlertQuery(
        states=list(STATE_CHOICES[state][1] or ()) or None,
        drill=drill,
        building=building or None,
        room=room or None,
    )
    page = await list_alerts(ctx, session.principal, query, Paging(ALERT_PAGE_SIZE, offset))
    names = _room_names(ctx)
    base = {"state": state, "drill": drill, "building": building, "room": room}

    return render(
        request,
        "console/alerts.html",
        session=session,
        here="alerts",
        flash=FLASH.get(done, ""),
        filters=base,
        state_choices=[(k, v[0]) for k, v in STATE_CHOICES.items()],
        drill_choices=list(DRILL_CHOICES.items()),
        page=page,
        alerts=[_alert_view(ctx, session, a, names) for a in page.items],
        max_note=MAX_NOTE_CHARS,
        max_reason=MAX_REASON_CHARS,
        silence_hours=SILENCE_HOURS,
        **_pager("/console/alerts", base, offset, ALERT_PAGE_SIZE, len(page.items), page.total),
    )


AlertId = Annotated[str, Path(max_length=64)]
Csrf = Annotated[str, _form_field()]
NoteField = Annotated[str, _form_field(max_length=MAX_NOTE_CHARS)]


async def _queue(
    request: Request,
    ctx: Context,
    session: ConsoleSession,
    alert_id: str,
    action: Literal["ack", "resolve"],
    csrf: str,
    note: str,
) -> Response:
    check_post(ctx, request, session, csrf)
    body = ActionRequest.model_validate({"note": note})
    await request_action(ctx, session.principal, alert_id, action, body.note, via="console")
    return RedirectResponse(f"/console/alerts?done={action}", status_code=303)


@router.post("/alerts/{alert_id}/ack", response_class=HTMLResponse)
async def ack_alert(
    request: Request,
    ctx: Context,
    session: ReadSession,
    alert_id: AlertId,
    csrf: Csrf = "",
    note: NoteField = "",
) -> Response:
    """Acknowledge with a note (queued for the gateway, audited with the user). Roles:
    keeper, security."""
    return await _queue(request, ctx, session, alert_id, "ack", csrf, note)


@router.post("/alerts/{alert_id}/resolve", response_class=HTMLResponse)
async def resolve_alert(
    request: Request,
    ctx: Context,
    session: ReadSession,
    alert_id: AlertId,
    csrf: Csrf = "",
    note: NoteField = "",
) -> Response:
    """Resolve (queued for the gateway, audited with the user). Roles: security."""
    return await _queue(request, ctx, session, alert_id, "resolve", csrf, note)


@router.post("/alerts/{alert_id}/silence", response_class=HTMLResponse)
async def silence_room(
    request: Request,
    ctx: Context,
    session: ReadSession,
    alert_id: AlertId,
    csrf: Csrf = "",
    hours: Annotated[int, Form(ge=1, le=MAX_SILENCE_HOURS)] = 2,
    reason: Annotated[str, _form_field(max_length=MAX_REASON_CHARS)] = "",
) -> Response:
    """Silence the alert's room for ``hours`` with a reason (audited). Roles: security."""
    check_post(ctx, request, session, csrf)
    if not session.may(*SILENCE_WRITE_ROLES):
        # create_silence checks this too; checked first so that the answer does not
        # depend on whether the alert exists.
        raise RoleRequired("创建静默需要安保人员或管理员角色。", session)
    alert = await get_alert(ctx, session.principal, alert_id)
    if alert.room is None:
        raise ConsoleDenied("该告警不属于某个库房，无法按库房静默。")
    matchers = [f"room={alert.room}"]
    if alert.building is not None:
        matchers.insert(0, f"building={alert.building}")
    ends = datetime_from_ns(ctx.clock.now_ns()) + timedelta(hours=hours)
    body = SilenceCreate.model_validate({"matchers": matchers, "ends_at": ends, "reason": reason})
    await create_silence(ctx, session.principal, body)
    return RedirectResponse("/console/alerts?done=silence", status_code=303)


# --- silences -------------------------------------------------------------------------------

SILENCE_STATUS_TEXT = {"pending": "未开始", "active": "生效中", "expired": "已结束"}


@router.get("/silences", response_class=HTMLResponse)
async def silences_page(
    request: Request,
    ctx: Context,
    session: ReadSession,
    all: Annotated[bool, Query()] = False,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    done: Annotated[str, _field()] = "",
) -> Response:
    """Silences (active ones by default), with "expire" for the roles allowed. Roles:
    keeper, security, inspector, drill_coordinator."""
    page = await list_silences(ctx, session.principal, not all, Paging(ALERT_PAGE_SIZE, offset))
    may_expire = session.may(*SILENCE_WRITE_ROLES)
    silences = [
        {
            "id": s.id,
            "status": s.status,
            "status_text": SILENCE_STATUS_TEXT[s.status],
            "matchers": "，".join(s.matchers),
            "reason": s.reason,
            "author": s.author,
            "starts": _local(ctx, s.starts_at),
            "ends": _local(ctx, s.ends_at),
            "expired_by": s.expired_by or "",
            "can_expire": may_expire and s.status != "expired",
        }
        for s in page.items
    ]
    base = {"all": "true" if all else "false"}

    return render(
        request,
        "console/silences.html",
        session=session,
        here="silences",
        flash=FLASH.get(done, ""),
        show_all=all,
        silences=silences,
        **_pager("/console/silences", base, offset, ALERT_PAGE_SIZE, len(silences), page.total),
    )


@router.post("/silences/{silence_id}/expire", response_class=HTMLResponse)
async def expire(
    request: Request,
    ctx: Context,
    session: ReadSession,
    silence_id: Annotated[str, Path(max_length=64)],
    csrf: Csrf = "",
) -> Response:
    """End a silence now (audited with the user). Roles: security."""
    check_post(ctx, request, session, csrf)
    await expire_silence(ctx, session.principal, silence_id)
    return RedirectResponse("/console/silences?done=expired", status_code=303)
