"""Message texts: Chinese by default, English by setting; a short form for SMS.

The title names the severity and the room; the body names, for each alert, the room, what
is wrong, the value against its limit (the profile band for climate rules) and since when,
in the site's time zone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from alerting.model import AlertSnapshot, NotificationBatch

SEVERITY = {
    "zh": {"critical": "紧急", "warning": "警告", "info": "提示"},
    "en": {"critical": "CRITICAL", "warning": "WARNING", "info": "INFO"},
}
KIND = {
    "zh": {"firing": "告警", "repeat": "仍未处理", "resolved": "已恢复", "acknowledged": "已确认"},
    "en": {
        "firing": "alert",
        "repeat": "still unacknowledged",
        "resolved": "resolved",
        "acknowledged": "acknowledged",
    },
}
# Rule kinds whose alert value is a change (a rise, a 24-hour swing), not a reading: their
# messages must not call it the current value.
CHANGE_KINDS = frozenset({"rate_of_change", "fluctuation"})

_TEXT = {
    "zh": {
        "drill": "【演练】",
        "value": "当前值 {value}",
        "change": "变化量 {value}",
        "limit": "限值 {limit}",
        "since": "自 {ts} 起",
        "resolved": "已于 {ts} 恢复",
        "acked": "{who} 已确认：{note}",
        "more": "另有 {n} 条",
        "sep": "；",
        "colon": "：",
    },
    "en": {
        "drill": "[DRILL] ",
        "value": "value {value}",
        "change": "change {value}",
        "limit": "limit {limit}",
        "since": "since {ts}",
        "resolved": "resolved at {ts}",
        "acked": "acknowledged by {who}: {note}",
        "more": "{n} more",
        "sep": "; ",
        "colon": ": ",
    },
}


def _lang(language: str) -> str:
    return language if language in _TEXT else "zh"


def _ts(ns: int, tz: ZoneInfo, *, short: bool) -> str:
    local = datetime.fromtimestamp(ns / 1e9, tz=tz)
    return local.strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def _value(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if value != int(value) else f"{int(value)}"


def room_label(labels: Mapping[str, str], names: Mapping[str, str]) -> str:
    """The room's display name (from the site file) with its id, or what place is known."""
    room = labels.get("room") or labels.get("building") or labels.get("site") or "?"
    name = names.get(room)
    return f"{name}（{room}）" if name and name != room else room


def title(batch: NotificationBatch, *, language: str = "zh", names: Mapping[str, str]) -> str:
    """``[紧急] 一号库房（a101） 告警`` / ``[CRITICAL] a101 alert``."""
    lang = _lang(language)
    text = _TEXT[lang]
    sev = SEVERITY[lang].get(batch.severity.value, batch.severity.value)
    kind = KIND[lang].get(batch.kind, batch.kind)
    labels = batch.group_labels or (batch.alerts[0].labels if batch.alerts else {})
    drill = text["drill"] if batch.drill_id else ""
    return f"{drill}[{sev}] {room_label(labels, names)} {kind}"


def alert_line(
    alert: AlertSnapshot,
    kind: str,
    *,
    language: str,
    tz: ZoneInfo,
    names: Mapping[str, str],
    short: bool,
) -> str:
    lang = _lang(language)
    text = _TEXT[lang]
    parts = [f"{room_label(alert.labels, names)}{text['colon']}{alert.summary or alert.rule_id}"]
    if alert.value is not None:
        label = "change" if alert.rule_kind in CHANGE_KINDS else "value"
        parts.append(text[label].format(value=_value(alert.value)))
    if alert.limit:
        parts.append(text["limit"].format(limit=alert.limit))
    parts.append(text["since"].format(ts=_ts(alert.started_at_ns, tz, short=short)))
    if kind == "resolved" and alert.resolved_at_ns is not None:
        parts.append(text["resolved"].format(ts=_ts(alert.resolved_at_ns, tz, short=short)))
    if kind == "acknowledged" and alert.acked_by and not short:
        parts.append(text["acked"].format(who=alert.acked_by, note=alert.acked_note or ""))
    return text["sep"].join(parts)


def render(
    batch: NotificationBatch,
    *,
    language: str = "zh",
    timezone: str = "Asia/Shanghai",
    names: Mapping[str, str] | None = None,
    short: bool = False,
) -> tuple[str, str]:
    """``(subject, body)`` of ``batch``; ``short`` for SMS: one line per alert, at most two."""
    lang = _lang(language)
    tz = ZoneInfo(timezone)
    names = names or {}
    subject = title(batch, language=lang, names=names)
    alerts = list(batch.alerts)
    shown = alerts[:2] if short else alerts
    lines = [
        alert_line(a, batch.kind, language=lang, tz=tz, names=names, short=short) for a in shown
    ]
    if len(alerts) > len(shown):
        lines.append(_TEXT[lang]["more"].format(n=len(alerts) - len(shown)))
    if short:
        return subject, f"{subject} " + " / ".join(lines)
    return subject, "\n".join(lines)


_ACK_TEXT = {
    "zh": {
        "link": "点击确认{room}：{url}",
        "code": "确认码{room} {code}",
        "room": "（{room}）",
        "where": "（在 {url} 输入）",
    },
    "en": {
        "link": "Acknowledge{room}: {url}",
        "code": "ack code{room} {code}",
        "room": " ({room})",
        "where": " (enter it at {url})",
    },
}


def ack_text(
    *,
    links: Sequence[tuple[str, str]],
    codes: Sequence[tuple[str, str]],
    language: str = "zh",
    short: bool = False,
    code_url: str | None = None,
) -> str:
    """How to acknowledge: ``links`` and ``codes`` are ``(room, url or code)`` per alert.

    The room is named only when there are several alerts; ``short`` (SMS) puts everything on
    one line. ``code_url`` (the code-entry page) follows the codes, after each code's own
    text, so the SMS template fields' parser still finds ``确认码 <code>``.
    """
    text = _ACK_TEXT[_lang(language)]
    several = max(len(links), len(codes)) > 1

    def room(r: str) -> str:
        return text["room"].format(room=r) if several and r else ""

    lines = [text["link"].format(room=room(r), url=u) for r, u in links]
    lines += [text["code"].format(room=room(r), code=c) for r, c in codes]
    if codes and code_url:
        lines[-1] += text["where"].format(url=code_url)
    return (" " if short else "\n").join(lines)
