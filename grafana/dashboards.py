"""Dashboards generated from the site file: dashboards as code, never hand-edited JSON.

``build_dashboards(site)`` returns every dashboard of a site, keyed by its uid:

- ``archwatch-overview``: a tile per room coloured by its band (latest temperature and
  humidity), the outdoor climate of each building, each room's status from the API;
- ``aw-room-<building>-<room>``: one per room, because the room's band (drawn as threshold
  areas) differs per storage class and Grafana thresholds cannot follow a variable;
- ``archwatch-alerts``: firing alerts from the API, alert events counted from InfluxDB;
- ``archwatch-daily``: daily minimum, mean and maximum per room in the site's time zone and
  the share of readings inside the band.

Panels reference datasources only by the fixed uids below, which grafana/provisioning.py
provisions. All InfluxQL comes from grafana/queries.py (drill readings excluded).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.site import OUTDOOR_ROOM, Building, Room, Site
from gateway.standards import StandardsProfile
from grafana import panels as p
from grafana import queries as q

INFLUX_DS_UID = "archwatch-influxdb"
INFLUX_DS_TYPE = "influxdb"
API_DS_UID = "archwatch-api"
# The Infinity plugin (JSON/CSV/XML over HTTP): its base URL is the API, its key read-only.
API_DS_TYPE = "yesoreyeram-infinity-datasource"
DATASOURCE_UIDS = frozenset({INFLUX_DS_UID, API_DS_UID})

INFLUX = p.ref(INFLUX_DS_TYPE, INFLUX_DS_UID)
API = p.ref(API_DS_TYPE, API_DS_UID)

TAG = "archwatch"
SCHEMA_VERSION = 39  # Grafana 11.2 (docker-compose.yml); older dashboards are migrated up
OVERVIEW_UID = "archwatch-overview"
ALERTS_UID = "archwatch-alerts"
DAILY_UID = "archwatch-daily"

# Magnus over water (domain notes: a = 17.625, b = 243.04 °C), the same constants as the
# condensation rule.
MAGNUS_A = 17.625
MAGNUS_B = 243.04

ROOM_STATUS = {
    "in_band": ("正常", p.GREEN),
    "excursion": ("超出范围", p.ORANGE),
    "alarm": ("报警", p.RED),
    "offline": ("离线", "purple"),
    "calibration_overdue": ("校准过期", "yellow"),
}
BINARY_STATES = {
    "0": ("正常/关闭", p.GREEN),
    "1": ("报警/打开", p.RED),
    "device_offline": ("离线", p.RED),
    "device_online": ("在线", p.GREEN),
}
SEVERITY = {
    "critical": ("严重", p.RED),
    "warning": ("警告", p.ORANGE),
    "info": ("提示", p.BLUE),
}

JSON = dict[str, Any]


def room_uid(building: str, room: str) -> str:
    """Stable uid of a room's dashboard; Grafana allows at most 40 characters, so long ids
    become a hash (still stable: the same ids give the same uid)."""
    uid = f"aw-room-{building}-{room}"
    if len(uid) <= 40:
        return uid
    return "aw-room-" + hashlib.sha256(f"{building}/{room}".encode()).hexdigest()[:24]


def _label(obj: Building | Room) -> str:
    return obj.name or obj.id


def _room_kinds(site: Site, building: str, room: str) -> set[str]:
    return {str(s.kind) for s in site.sensors() if s.building == building and s.room == room}


def _dashboard(
    site: Site,
    uid: str,
    title: str,
    panels: list[JSON],
    *,
    variables: list[JSON] | None = None,
    annotations: list[JSON] | None = None,
    time_from: str = "now-24h",
) -> JSON:
    return {
        # Grafana adds its built-in annotation (its own annotations and alerts) by itself.
        "annotations": {"list": annotations or []},
        "description": f"由 archwatch 根据站点文件生成，请勿手工修改（{site.id}）",
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "tags": [TAG],
                "targetBlank": False,
                "title": "档案库房看板",
                "tooltip": "",
                "type": "dashboards",
                "url": "",
            }
        ],
        "panels": panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG, site.id],
        "templating": {"list": variables or []},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": site.model.site.timezone,
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "monday",
    }


def _variable(name: str, label: str, query: str) -> JSON:
    return {
        "datasource": INFLUX,
        "hide": 0,
        "includeAll": False,
        "label": label,
        "multi": False,
        "name": name,
        "options": [],
        "query": query,
        "refresh": 1,  # on dashboard load
        "skipUrlSync": False,
        "sort": 1,  # alphabetical
        "type": "query",
    }


BUILDING_VAR = _variable("building", "楼栋", q.tag_values("building"))
ROOM_VAR = _variable("room", "库房", q.tag_values("room", "$building"))


# --- building overview ------------------------------------------------------------------


def _room_tile(site: Site, building: Building, room: Room, profile: StandardsProfile) -> JSON:
    b, r = building.id, room.id
    return p.stat(
        _label(room),
        INFLUX,
        [
            p.influx_target(INFLUX, "A", q.latest(b, r, "temperature"), alias="温度"),
            p.influx_target(INFLUX, "B", q.latest(b, r, "humidity"), alias="湿度"),
        ],
        unit=p.UNIT_TEMPERATURE,
        thresholds=p.band_thresholds(profile.temperature),
        overrides=[
            p.override_by_ref(
                "B",
                {"unit": p.UNIT_HUMIDITY, "thresholds": p.band_thresholds(profile.humidity)},
            )
        ],
        description=(
            f"{profile.name}：温度 {profile.temperature.min:g}–{profile.temperature.max:g} °C，"
            f"湿度 {profile.humidity.min:g}–{profile.humidity.max:g} %RH"
            f"（{profile.source}）。蓝：低于下限，绿：范围内，红：高于上限。"
        ),
    ) | {"links": [{"title": "库房详情", "url": f"/d/{room_uid(b, r)}"}]}


def overview(site: Site) -> JSON:
    layout = p.Layout()
    for building in site.model.buildings:
        layout.row(_label(building))
        for room in building.rooms:
            profile = site.standards.get(room.storage_class)
            layout.add(_room_tile(site, building, room, profile), w=6, h=5)
        outdoor = _room_kinds(site, building.id, OUTDOOR_ROOM)
        if outdoor & {"temperature", "humidity"}:
            layout.newline()
            targets = []
            if "temperature" in outdoor:
                targets.append(
                    p.influx_target(
                        INFLUX,
                        "A",
                        q.room_mean(building.id, OUTDOOR_ROOM, "temperature", "t"),
                        alias="室外温度",
                    )
                )
            if "humidity" in outdoor:
                targets.append(
                    p.influx_target(
                        INFLUX,
                        "B",
                        q.room_mean(building.id, OUTDOOR_ROOM, "humidity", "rh"),
                        alias="室外湿度",
                    )
                )
            panel = p.timeseries(
                f"{_label(building)} 室外气候", INFLUX, targets, unit=p.UNIT_TEMPERATURE
            )
            panel["fieldConfig"]["overrides"] = [
                p.override_by_ref("B", {"unit": p.UNIT_HUMIDITY, "custom.axisPlacement": "right"})
            ]
            layout.add(panel, w=24, h=8)
    layout.row("库房状态（接口）")
    layout.add(
        p.table(
            "各库房状态",
            API,
            [p.api_target(API, "A", "/api/v1/rooms?limit=500")],
            mappings=p.value_map(ROOM_STATUS),
            description="archwatch API /api/v1/rooms：范围内、超出范围、报警、离线、校准过期。",
        ),
        w=24,
        h=8,
    )
    return _dashboard(
        site, OVERVIEW_UID, f"{site.model.site.name or site.id} 库房总览", layout.panels
    )


# --- room detail ------------------------------------------------------------------------


def _dew_point_transformations() -> list[JSON]:
    """Magnus dew point from the room's mean temperature ``t`` and humidity ``rh`` per
    interval, computed by Grafana (InfluxQL cannot join the two series):
    γ = ln(rh/100) + a·t/(b+t), Td = b·γ/(a−γ)."""
    a, b = f"{MAGNUS_A}", f"{MAGNUS_B}"
    steps = [
        p.calc_binary("t", "+", b, "_bt"),
        p.calc_binary("t", "*", a, "_at"),
        p.calc_binary("_at", "/", "_bt", "_q"),
        p.calc_binary("rh", "/", "100", "_h"),
        p.calc_unary("ln", "_h", "_lnh"),
        p.calc_binary("_lnh", "+", "_q", "_g"),
        p.calc_binary("_g", "*", b, "_num"),
        p.calc_binary(a, "-", "_g", "_den"),
        p.calc_binary("_num", "/", "_den", "露点"),
    ]
    hidden = ["_bt", "_at", "_q", "_h", "_lnh", "_g", "_num", "_den", "rh"]
    return [
        {"id": "joinByField", "options": {"byField": "Time", "mode": "outer"}},
        *steps,
        {
            "id": "organize",
            "options": {
                "excludeByName": {name: True for name in hidden},
                "renameByName": {"t": "温度"},
            },
        },
    ]


def room_detail(site: Site, building: Building, room: Room) -> JSON:
    b, r = building.id, room.id
    profile = site.standards.get(room.storage_class)
    kinds = _room_kinds(site, b, r)
    fluct = profile.fluctuation
    tz = site.model.site.timezone
    layout = p.Layout()
    climate = (
        ("temperature", "温度", p.UNIT_TEMPERATURE, profile.temperature),
        ("humidity", "湿度", p.UNIT_HUMIDITY, profile.humidity),
    )
    for kind, name, unit, band in climate:
        if kind in kinds:
            layout.add(
                p.timeseries(
                    f"{name}（{band.min:g}–{band.max:g}）",
                    INFLUX,
                    [p.influx_target(INFLUX, "A", q.series(b, r, kind), alias="$tag_sensor")],
                    unit=unit,
                    thresholds=p.band_thresholds(band),
                    threshold_style="line+area",
                    description=f"{profile.name}的{name}范围（{profile.source}），按传感器。",
                ),
                w=12,
                h=8,
            )
    if {"temperature", "humidity"} <= kinds:
        layout.add(
            p.timeseries(
                "温度与露点",
                INFLUX,
                [
                    p.influx_target(INFLUX, "A", q.room_mean(b, r, "temperature", "t"), alias="t"),
                    p.influx_target(INFLUX, "B", q.room_mean(b, r, "humidity", "rh"), alias="rh"),
                ],
                unit=p.UNIT_TEMPERATURE,
                description=(
                    "露点按 Magnus 公式（a=17.625，b=243.04 °C）由 Grafana 从库房平均温度和"
                    "湿度计算；两线越近越易结露。"
                ),
            )
            | {"transformations": _dew_point_transformations()},
            w=12,
            h=8,
        )
    for kind, name, unit, _band in climate:
        if kind not in kinds:
            continue
        limit = fluct.allowed_span(kind)
        layout.add(
            p.stat(
                f"近24小时{name}波动",
                INFLUX,
                [p.influx_target(INFLUX, "A", q.swing(b, r, kind), alias="最高−最低")],
                unit=unit,
                thresholds=p.limit_thresholds(limit),
                description=(
                    f"最近 24 小时（截至现在）最高减最低，限值 {limit:g}"
                    f"（±{getattr(fluct, kind):g}，模式 {fluct.mode.value}）。"
                ),
            )
            | {"timeFrom": "24h"},
            w=6,
            h=8,
        )
    layout.newline()
    for kind, name, unit, _band in climate:
        if kind not in kinds:
            continue
        limit = fluct.allowed_span(kind)
        layout.add(
            p.timeseries(
                f"每日{name}波动（限值 {limit:g}）",
                INFLUX,
                [p.influx_target(INFLUX, "A", q.daily_swing(b, r, kind, tz), alias="最高−最低")],
                unit=unit,
                thresholds=p.limit_thresholds(limit),
                threshold_style="line",
                draw="bars",
                description=f"每个自然日（{tz}）最高减最低；滚动 24 小时值见上方。",
            ),
            w=12,
            h=7,
        )
    if room.devices:
        states = [p.influx_target(INFLUX, "B", q.device_states(b, r), alias="$tag_device $col")]
        if kinds & set(q.STATE_SENSOR_KINDS):
            binary = q.binary_states(b, r)
            states.insert(0, p.influx_target(INFLUX, "A", binary, alias="$tag_sensor"))
        layout.add(
            p.state_timeline(
                "烟感 / 门磁 / 漏水 / 设备在线",
                INFLUX,
                states,
                mappings=p.value_map(BINARY_STATES),
                transformations=[
                    {
                        "id": "filterFieldsByName",
                        "options": {"exclude": {"pattern": " title$"}},
                    },
                    {
                        "id": "renameByRegex",
                        "options": {"regex": "^(.*) state$", "renamePattern": "$1 在线状态"},
                    },
                ],
                description="1 = 报警/门开/漏水；设备离线、恢复来自 events。",
            ),
            w=24,
            h=7,
        )
    annotation = {
        "datasource": INFLUX,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "name": "告警事件",
        "target": {
            "fromAnnotations": True,
            "query": q.alert_annotations(b, r),
            "rawQuery": True,
            "refId": "Anno",
            "resultFormat": "table",
            "tagsColumn": "kind,severity",
            "textColumn": "text",
            "titleColumn": "title",
        },
    }
    return _dashboard(
        site,
        room_uid(b, r),
        f"{_label(building)} · {_label(room)}",
        layout.panels,
        annotations=[annotation],
    )


# --- alerts -----------------------------------------------------------------------------


def alerts(site: Site) -> JSON:
    layout = p.Layout()
    layout.add(
        p.table(
            "正在告警",
            API,
            [
                p.api_target(
                    API,
                    "A",
                    "/api/v1/alerts?state=firing&state=acknowledged&building=$building&limit=500",
                )
            ],
            mappings=p.value_map(SEVERITY),
            description="archwatch API /api/v1/alerts：未恢复的告警（含已确认）。",
        ),
        w=24,
        h=8,
    )
    layout.add(
        p.timeseries(
            "告警触发次数（按级别）",
            INFLUX,
            [p.influx_target(INFLUX, "A", q.alert_rate("$building"), alias="$tag_severity")],
            unit=p.UNIT_COUNT,
            draw="bars",
            decimals=0,
        ),
        w=16,
        h=8,
    )
    layout.add(
        p.table(
            "各库房告警次数",
            INFLUX,
            [p.influx_target(INFLUX, "A", q.alert_counts("$building"), table=True)],
            unit=p.UNIT_COUNT,
            decimals=0,
            mappings=p.value_map(SEVERITY),
        ),
        w=8,
        h=8,
    )
    layout.add(
        p.table(
            "最近告警与设备事件",
            INFLUX,
            [p.influx_target(INFLUX, "A", q.recent_events("$building"), table=True)],
            mappings=p.value_map({**SEVERITY, **ROOM_STATUS, **BINARY_STATES}),
            description="events 中的告警触发、确认、恢复和设备离线、恢复；演练事件不计入。",
        ),
        w=24,
        h=10,
    )
    return _dashboard(
        site, ALERTS_UID, "告警", layout.panels, variables=[BUILDING_VAR], time_from="now-7d"
    )


# --- daily summary ----------------------------------------------------------------------


def daily(site: Site) -> JSON:
    tz = site.model.site.timezone
    layout = p.Layout()
    bld = "$building"
    for kind, name, unit in (
        ("temperature", "温度", p.UNIT_TEMPERATURE),
        ("humidity", "湿度", p.UNIT_HUMIDITY),
    ):
        layout.add(
            p.table(
                f"每日{name}（最低 / 平均 / 最高）",
                INFLUX,
                [p.influx_target(INFLUX, "A", q.daily_stats(bld, kind, tz), table=True)],
                unit=unit,
                decimals=1,
                description=f"按 {tz} 的自然日统计，每个库房一行。",
            ),
            w=12,
            h=9,
        )
    classes = {r.storage_class for _b, r in site.rooms()}
    bands = {
        kind: {c: getattr(site.standards.get(c), kind) for c in classes}
        for kind in ("temperature", "humidity")
    }
    counts = (
        ("A", "temperature", "t_in_band", bands["temperature"]),
        ("B", "temperature", "t_total", None),
        ("C", "humidity", "h_in_band", bands["humidity"]),
        ("D", "humidity", "h_total", None),
    )
    targets = [
        p.influx_target(INFLUX, ref_id, q.daily_count(bld, kind, tz, alias, band), table=True)
        for ref_id, kind, alias, band in counts
    ]
    layout.add(
        p.table(
            "每日按读数计的达标比例（范围内读数 ÷ 全部读数）",
            INFLUX,
            targets,
            unit="percentunit",
            decimals=1,
            description=(
                "按原始读数计数：范围内读数 ÷ 全部读数（A÷B 温度，C÷D 湿度），上报越频繁的"
                "传感器权重越大。不是 API 每日汇总的 time_in_band（按五分钟均值计的范围内时间"
                "占比），两者不可互相比较。一天内没有一个范围内读数的库房，该列为空。"
            ),
            transformations=[
                {"id": "merge", "options": {}},
                p.calc_binary("t_in_band", "/", "t_total", "温度达标比例（按读数）"),
                p.calc_binary("h_in_band", "/", "h_total", "湿度达标比例（按读数）"),
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {alias: True for _r, _k, alias, _b in counts},
                        "renameByName": {"room": "库房"},
                    },
                },
            ],
        ),
        w=24,
        h=9,
    )
    for kind, name, unit in (
        ("temperature", "温度", p.UNIT_TEMPERATURE),
        ("humidity", "湿度", p.UNIT_HUMIDITY),
    ):
        layout.add(
            p.timeseries(
                f"$room 每日{name}",
                INFLUX,
                [p.influx_target(INFLUX, "A", q.daily_stats(bld, kind, tz, "$room"), alias="$col")],
                unit=unit,
                draw="bars",
            ),
            w=12,
            h=8,
        )
    return _dashboard(
        site,
        DAILY_UID,
        "每日汇总",
        layout.panels,
        variables=[BUILDING_VAR, ROOM_VAR],
        time_from="now-30d",
    )


def build_dashboards(site: Site) -> list[JSON]:
    """Every dashboard of the site, in uid order (stable across runs)."""
    out = [overview(site)]
    out += [room_detail(site, building, room) for building, room in site.rooms()]
    out += [alerts(site), daily(site)]
    return sorted(out, key=lambda d: str(d["uid"]))


# Rule kinds whose alerts concern the smoke/door/leak/online state timeline of a room.
_STATE_RULE_KINDS = frozenset(
    {
        "smoke",
        "water_leak",
        "confirmed_fire",
        "door_schedule",
        "door_held",
        "door_forced",
        "access_badge",
        "offline",
        "stuck",
        "battery_low",
    }
)


def alert_target(
    labels: Mapping[str, str], rule_kind: str, dashboards: Sequence[JSON]
) -> tuple[str | None, int | None]:
    """Where ``archwatch grafana sync`` draws an alert: the room's dashboard (the overview
    for an alert without a room of its own) and, for smoke/door/leak/offline alerts, the
    state timeline panel; climate alerts annotate the whole room dashboard (None)."""
    by_uid = {str(d["uid"]): d for d in dashboards}
    building, room = labels.get("building"), labels.get("room")
    uid = room_uid(building, room) if building and room else None
    if uid not in by_uid:
        return (OVERVIEW_UID if OVERVIEW_UID in by_uid else None), None
    assert uid is not None
    if rule_kind in _STATE_RULE_KINDS:
        for panel in by_uid[uid]["panels"]:
            if panel["type"] == "state-timeline":
                return uid, int(panel["id"])
    return uid, None
