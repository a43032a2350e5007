"""InfluxQL for the dashboards: one builder per question a panel asks.

Every statement on ``readings`` or ``events`` carries ``"drill_id" = ''``: a missing tag
compares equal to '' in InfluxQL, so readings and alert events of an emergency drill never
reach a dashboard (they are counted apart, like the alert engine does). Statements use
Grafana's macros ``$timeFilter`` and ``$__interval`` and the template variables
``$building`` and ``$room`` where a panel follows them; ids inside them are the site file's
ASCII ids, which need no escaping beyond :func:`gateway.store.influx_wire.quote_literal`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.standards import Band
from gateway.store.influx_wire import EVENTS, READINGS, quote_ident, quote_literal

NOT_DRILL = f"{quote_ident('drill_id')} = ''"
TIME_FILTER = "$timeFilter"
INTERVAL = "$__interval"
# Alert lifecycle events written by alerting/engine.py (kinds alert_fired, _acknowledged,
# _resolved); device_offline/_online come from the collectors.
ALERT_KINDS = r"/^alert_/"
DEVICE_STATE_KINDS = r"/^device_(offline|online)$/"
STATE_SENSOR_KINDS = ("smoke", "door", "water_leak")

_R = quote_ident(READINGS)
_E = quote_ident(EVENTS)
_V = quote_ident("value")


def eq(tag: str, value: str) -> str:
    """``"tag" = 'value'``; ``value`` may be a template variable such as ``$room``."""
    return f"{quote_ident(tag)} = {quote_literal(value)}"


def where(*conds: str) -> str:
    """``WHERE c1 AND c2 ... AND "drill_id" = '' AND $timeFilter``."""
    return " WHERE " + " AND ".join([*conds, NOT_DRILL, TIME_FILTER])


def place(building: str, room: str) -> list[str]:
    return [eq("building", building), eq("room", room)]


def kinds_regex(kinds: Iterable[str]) -> str:
    return f"{quote_ident('kind')} =~ /^({'|'.join(kinds)})$/"


def day_offset(timezone: str, reference: datetime | None = None) -> str:
    """The offset that makes ``GROUP BY time(1d, <offset>)`` buckets start at local midnight.

    InfluxQL buckets start at the epoch plus the offset; local midnight in UTC+8 is 16:00 UTC
    of the day before, i.e. an offset of -8h. The zone's standard (January) offset is used so
    the exported JSON does not depend on the day it is exported; in a zone with summer time
    the summer days' buckets are one hour off (Asia/Shanghai has none).
    """
    when = reference or datetime(2026, 1, 1)
    utc_offset = when.replace(tzinfo=ZoneInfo(timezone)).utcoffset() or timedelta(0)
    minutes = -int(utc_offset.total_seconds() // 60)
    if minutes == 0:
        return "0s"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


# --- readings ---------------------------------------------------------------------------


def latest(building: str, room: str, kind: str) -> str:
    """The newest reading of a kind in a room (a status tile)."""
    return f"SELECT last({_V}) AS {quote_ident(kind)} FROM {_R}" + where(  # noqa: S608
        *place(building, room), eq("kind", kind)
    )


def series(building: str, room: str, kind: str, alias: str = "value") -> str:
    """Each sensor's mean per ``$__interval`` (one series per sensor)."""
    return (
        f"SELECT mean({_V}) AS {quote_ident(alias)} FROM {_R}"  # noqa: S608
        + where(*place(building, room), eq("kind", kind))
        + f' GROUP BY time({INTERVAL}), "sensor" fill(none)'
    )


def room_mean(building: str, room: str, kind: str, alias: str) -> str:
    """The room's mean per ``$__interval`` over all its sensors of a kind (one series)."""
    return (
        f"SELECT mean({_V}) AS {quote_ident(alias)} FROM {_R}"  # noqa: S608
        + where(*place(building, room), eq("kind", kind))
        + f" GROUP BY time({INTERVAL}) fill(none)"
    )


def swing(building: str, room: str, kind: str) -> str:
    """Highest minus lowest reading in the panel's range (the panel pins it to 24 h)."""
    return f"SELECT max({_V}) - min({_V}) AS {quote_ident('swing')} FROM {_R}" + where(  # noqa: S608
        *place(building, room), eq("kind", kind)
    )


def daily_swing(building: str, room: str, kind: str, timezone: str) -> str:
    """Highest minus lowest per local calendar day."""
    return (
        f"SELECT max({_V}) - min({_V}) AS {quote_ident('swing')} FROM {_R}"  # noqa: S608
        + where(*place(building, room), eq("kind", kind))
        + f" GROUP BY time(1d, {day_offset(timezone)}) fill(none)"
    )


def binary_states(building: str, room: str, kinds: Sequence[str] = STATE_SENSOR_KINDS) -> str:
    """Smoke, door and leak per sensor: the highest value per interval, so a short alarm
    inside an interval still shows; the last state is carried forward."""
    return (
        f"SELECT max({_V}) AS {quote_ident('state')} FROM {_R}"  # noqa: S608
        + where(*place(building, room), kinds_regex(kinds))
        + f' GROUP BY time({INTERVAL}), "sensor" fill(previous)'
    )


def daily_stats(building: str, kind: str, timezone: str, room: str | None = None) -> str:
    """Minimum, mean and maximum per local day, per room of a building."""
    conds = [eq("building", building), eq("kind", kind)]
    if room is not None:
        conds.append(eq("room", room))
    return (
        f"SELECT min({_V}) AS {quote_ident('min')}, mean({_V}) AS {quote_ident('mean')}, "  # noqa: S608
        f"max({_V}) AS {quote_ident('max')} FROM {_R}"
        + where(*conds)
        + f' GROUP BY time(1d, {day_offset(timezone)}), "room" fill(none)'
    )


def daily_count(
    building: str, kind: str, timezone: str, alias: str, bands: dict[str, Band] | None = None
) -> str:
    """Readings per local day and room; with ``bands`` (storage class → band) only those
    inside their room's band (inclusive, as gateway.standards.Band.contains)."""
    conds = [eq("building", building), eq("kind", kind)]
    if bands is not None:
        ors = [
            f"({eq('storage_class', cls)} AND {_V} >= {band.min:g} AND {_V} <= {band.max:g})"
            for cls, band in sorted(bands.items())
        ]
        conds.append("(" + " OR ".join(ors) + ")")
    return (
        f"SELECT count({_V}) AS {quote_ident(alias)} FROM {_R}"  # noqa: S608
        + where(*conds)
        + f' GROUP BY time(1d, {day_offset(timezone)}), "room" fill(none)'
    )


# --- events -----------------------------------------------------------------------------


def device_states(building: str, room: str) -> str:
    """Offline/online changes of the room's devices; the kind tag is the state."""
    return (
        f"SELECT {quote_ident('title')}, {quote_ident('kind')}::tag AS {quote_ident('state')} "  # noqa: S608
        f"FROM {_E}"
        + where(*place(building, room), f"{quote_ident('kind')} =~ {DEVICE_STATE_KINDS}")
        + ' GROUP BY "device"'
    )


def alert_annotations(building: str, room: str) -> str:
    """Alert lifecycle events of a room, for annotations (title, text, tags)."""
    return (
        f'SELECT "title", "text", "kind"::tag AS "kind", "severity"::tag AS "severity" '  # noqa: S608
        f"FROM {_E}" + where(*place(building, room), f"{quote_ident('kind')} =~ {ALERT_KINDS}")
    )


def alert_counts(building: str) -> str:
    """Alerts fired per room and severity in the range."""
    return (
        f"SELECT count({quote_ident('title')}) AS {quote_ident('fired')} FROM {_E}"  # noqa: S608
        + where(eq("building", building), eq("kind", "alert_fired"))
        + ' GROUP BY "room", "severity"'
    )


def alert_rate(building: str) -> str:
    """Alerts fired per interval and severity."""
    return (
        f"SELECT count({quote_ident('title')}) AS {quote_ident('fired')} FROM {_E}"  # noqa: S608
        + where(eq("building", building), eq("kind", "alert_fired"))
        + f' GROUP BY time({INTERVAL}), "severity" fill(0)'
    )


def recent_events(building: str, limit: int = 200) -> str:
    """The newest alert and device events of a building, newest first."""
    kinds = f"{quote_ident('kind')} =~ /^(alert_|device_(offline|online)$)/"
    return (
        'SELECT "title", "text", "kind"::tag AS "kind", "severity"::tag AS "severity", '  # noqa: S608
        f'"room"::tag AS "room", "device"::tag AS "device" FROM {_E}'
        + where(eq("building", building), kinds)
        + f" ORDER BY time DESC LIMIT {int(limit)}"
    )


# --- template variables -----------------------------------------------------------------


def tag_values(key: str, building_var: str | None = None) -> str:
    """``SHOW TAG VALUES`` for a variable, restricted to the chosen building for rooms."""
    conds = [eq("building", building_var)] if building_var is not None else []
    # A tag key that only drill readings carry would otherwise offer a drill-only value.
    return f"SHOW TAG VALUES FROM {_R} WITH KEY = {quote_ident(key)} WHERE " + " AND ".join(
        [*conds, NOT_DRILL]
    )
