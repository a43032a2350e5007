"""Every InfluxQL query of the generated dashboards, run against the real InfluxDB 1.8.

Readings and events are seeded through the gateway's own InfluxStore (the same line protocol
the gateway writes); each query is run with the template variables and macros substituted as
Grafana substitutes them ($building, $room, $timeFilter, $__interval), and must return the
exact series and values of the seeded data. Drill readings and drill events are seeded next
to real ones, placed so that any query that let them through would return other numbers.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.reading import Event, Reading, SensorKind
from gateway.resources import demo_site_path
from gateway.site import load_site
from gateway.store.influx import InfluxStore
from grafana.dashboards import build_dashboards
from tests.servers import InfluxServer

NS = 1_000_000_000
H = 3600 * NS
# Local midnight of 2 March 2026 in the demo site's zone (Asia/Shanghai, UTC+8).
D1 = 1_772_380_800 * NS
D2 = D1 + 24 * H
START, END = D1, D1 + 48 * H
VARS = {
    "$timeFilter": f"time >= {START // 1_000_000}ms and time <= {END // 1_000_000}ms",
    "$__interval": "1h",
    "$building": "main",
    "$room": "r101",
}
SITE = load_site(demo_site_path())
DASHBOARDS = {d["uid"]: d for d in build_dashboards(SITE)}

CLASSES = {"r101": "paper", "r201": "film_master", "outdoor": "outdoor", "r999": "paper"}
SENSORS = {
    "r101-t": ("r101", SensorKind.TEMPERATURE),
    "r101-h": ("r101", SensorKind.HUMIDITY),
    "r101-smoke": ("r101", SensorKind.SMOKE),
    "r101-door": ("r101", SensorKind.DOOR),
    "r201-t": ("r201", SensorKind.TEMPERATURE),
    "r201-h": ("r201", SensorKind.HUMIDITY),
    "main-out-t": ("outdoor", SensorKind.TEMPERATURE),
    "main-out-h": ("outdoor", SensorKind.HUMIDITY),
    "r999-t": ("r999", SensorKind.TEMPERATURE),
}
# (sensor, hours after D1, value, drill id)
READINGS = [
    ("r101-t", 1, 20.0, None),
    ("r101-t", 2, 22.0, None),
    ("r101-t", 3, 25.0, None),  # above the paper band (14-24)
    ("r101-t", 25, 19.0, None),
    ("r101-t", 26, 21.0, None),
    ("r101-t", 27, 40.0, "d1"),  # drill: would be the latest, the maximum, out of band
    ("r101-h", 1, 50.0, None),
    ("r101-h", 2, 62.0, None),  # above 45-60
    ("r101-h", 25, 55.0, None),
    ("r101-h", 30, 99.0, "d1"),
    ("r101-smoke", 0.5, 1.0, "d1"),  # drill smoke before any real state
    ("r101-smoke", 1, 0.0, None),
    ("r101-smoke", 2, 1.0, None),
    ("r101-door", 1, 1.0, None),
    ("r201-t", 1, 14.0, None),
    ("r201-t", 2, 16.0, None),  # above the film-master band (13-15)
    ("r201-h", 1, 40.0, None),
    ("main-out-t", 1, 30.0, None),
    ("main-out-h", 1, 80.0, None),
    ("r999-t", 1, 18.0, "d1"),  # a room only a drill ever wrote to
]


def _event(kind: str, hours: float, room: str, severity: str, **extra: str) -> Event:
    drill = extra.pop("drill_id", None)
    building = extra.pop("building", "main")
    tags = {"site": "hn-archives", "building": building, "room": room, **extra}
    return Event(
        ts_ns=D1 + int(hours * H),
        kind=kind,
        title=extra.get("title", f"{kind} {room}"),
        text=f"{kind} at {hours} h",
        severity=severity,
        tags=tags,
        drill_id=drill,
    )


EVENTS = [
    _event("device_offline", 1.5, "r101", "warning", device="th-101"),
    _event("device_online", 2.5, "r101", "info", device="th-101"),
    _event("device_offline", 4, "r201", "warning", device="th-201"),
    _event("device_offline", 5, "r201", "warning", device="th-201", drill_id="d1"),
    _event("alert_fired", 1.2, "r101", "warning"),
    _event("alert_fired", 2.2, "r101", "critical"),
    _event("alert_resolved", 3.2, "r101", "warning"),
    _event("alert_fired", 25.2, "r101", "warning"),
    _event("alert_fired", 2.7, "r101", "critical", drill_id="d1"),
    _event("alert_fired", 1.4, "r201", "warning"),
    _event("alert_fired", 1.3, "r1", "critical", building="annex"),
]


def _reading(sensor: str, hours: float, value: float, drill: str | None) -> Reading:
    room, kind = SENSORS.get(sensor, ("r1", SensorKind.TEMPERATURE))
    return Reading(
        site="hn-archives",
        building="main",
        room=room,
        device=f"dev-{sensor}",
        sensor=sensor,
        kind=kind,
        storage_class=CLASSES[room],
        value=value,
        ts_ns=D1 + int(hours * H),
        drill_id=drill,
    )


@pytest.fixture
def seeded(influx: InfluxServer) -> InfluxServer:
    readings = [_reading(*r) for r in READINGS]
    # Another building: never in "main"'s panels, but a value of the building variable.
    readings.append(
        Reading(
            site="hn-archives",
            building="annex",
            room="r1",
            device="d",
            sensor="annex-t",
            kind=SensorKind.TEMPERATURE,
            storage_class="paper",
            value=99.0,
            ts_ns=D1 + H,
        )
    )

    async def seed() -> None:
        db = influx.database
        store = InfluxStore(influx.url, token=None, org="-", bucket=db, database=db)
        try:
            await store.write_readings(readings)
            await store.write_events(EVENTS)
        finally:
            await store.close()

    asyncio.run(seed())
    return influx


def _substitute(query: str) -> str:
    for var, value in VARS.items():
        query = query.replace(var, value)
    assert not re.search(r"\$[A-Za-z_]", query), query  # every variable substituted
    return query


def _queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard uid, what, InfluxQL) for every InfluxQL query of every dashboard."""
    for uid, d in DASHBOARDS.items():
        for panel in d["panels"]:
            for target in panel.get("targets", []):
                if "query" in target:
                    yield uid, f"{panel['title']}/{target['refId']}", target["query"]
        for annotation in d["annotations"]["list"]:
            yield uid, f"annotation {annotation['name']}", annotation["target"]["query"]
        for variable in d["templating"]["list"]:
            yield uid, f"variable {variable['name']}", variable["query"]


def run(server: InfluxServer, query: str) -> list[dict[str, Any]]:
    result = server.query(_substitute(query))["results"][0]  # type: ignore[index]
    assert "error" not in result, (query, result)
    return list(result.get("series", []))


def _round(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def by_tags(series: list[dict[str, Any]]) -> dict[tuple[str, ...], list[list[Any]]]:
    """{tag values in key order: rows}, times in hours after D1."""
    out = {}
    for s in series:
        rows = [[(r[0] - D1) / H, *(_round(v) for v in r[1:])] for r in s["values"]]
        out[tuple(v for _k, v in sorted((s.get("tags") or {}).items()))] = rows
    return out


def query_of(uid: str, title_start: str, ref_id: str = "A") -> str:
    panel = next(p for p in DASHBOARDS[uid]["panels"] if p["title"].startswith(title_start))
    return next(t["query"] for t in panel["targets"] if t["refId"] == ref_id)


def test_every_query_of_every_dashboard_runs_and_finds_the_seeded_data(
    seeded: InfluxServer,
) -> None:
    queries = list(_queries())
    assert len(queries) >= 30
    empty = [(uid, what) for uid, what, q in queries if not run(seeded, q)]
    assert empty == []


@pytest.mark.parametrize(
    ("title", "ref_id", "expected"),
    [
        # The drill's 40 °C at 27 h and 99 %RH at 30 h are newer, and must not show.
        ("101 纸质档案库", "A", [[26.0, 21.0]]),
        ("101 纸质档案库", "B", [[25.0, 55.0]]),
        ("201 母片库", "A", [[2.0, 16.0]]),
        ("201 母片库", "B", [[1.0, 40.0]]),
        ("主库房楼 室外气候", "A", [[1.0, 30.0]]),
        ("主库房楼 室外气候", "B", [[1.0, 80.0]]),
    ],
)
def test_overview_tiles_show_each_rooms_latest_real_reading(
    seeded: InfluxServer, title: str, ref_id: str, expected: list[list[float]]
) -> None:
    series = run(seeded, query_of("archwatch-overview", title, ref_id))
    assert [rows for rows in by_tags(series).values()] == [expected]


ROOM = "aw-room-main-r101"


def test_room_temperature_is_one_series_per_sensor_per_interval(seeded: InfluxServer) -> None:
    series = by_tags(run(seeded, query_of(ROOM, "温度（")))
    assert series == {
        ("r101-t",): [[1.0, 20.0], [2.0, 22.0], [3.0, 25.0], [25.0, 19.0], [26.0, 21.0]]
    }
    humidity = by_tags(run(seeded, query_of(ROOM, "湿度（")))
    assert humidity == {("r101-h",): [[1.0, 50.0], [2.0, 62.0], [25.0, 55.0]]}


def test_dew_point_inputs_are_the_rooms_mean_temperature_and_humidity(
    seeded: InfluxServer,
) -> None:
    from tests.test_grafana_dashboards import apply_calculations

    t = by_tags(run(seeded, query_of(ROOM, "温度与露点", "A")))[()]
    rh = by_tags(run(seeded, query_of(ROOM, "温度与露点", "B")))[()]
    assert t[0] == [1.0, 20.0] and rh[0] == [1.0, 50.0]
    panel = next(p for p in DASHBOARDS[ROOM]["panels"] if p["title"] == "温度与露点")
    joined = apply_calculations(panel["transformations"], {"t": t[0][1], "rh": rh[0][1]})
    assert round(joined["露点"], 2) == 9.26  # Magnus check value for 20 °C, 50 %


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("近24小时温度波动", 6.0),  # 25 - 19 (the drill's 40 left out)
        ("近24小时湿度波动", 12.0),  # 62 - 50 (the drill's 99 left out)
    ],
)
def test_swing_is_highest_minus_lowest(seeded: InfluxServer, title: str, expected: float) -> None:
    rows = by_tags(run(seeded, query_of(ROOM, title)))[()]
    assert [r[1] for r in rows] == [expected]


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("每日温度波动", [[0.0, 5.0], [24.0, 2.0]]),
        ("每日湿度波动", [[0.0, 12.0], [24.0, 0.0]]),
    ],
)
def test_daily_swing_buckets_start_at_local_midnight(
    seeded: InfluxServer, title: str, expected: list[list[float]]
) -> None:
    assert by_tags(run(seeded, query_of(ROOM, title))) == {(): expected}


def test_state_timeline_shows_smoke_door_and_device_changes(seeded: InfluxServer) -> None:
    states = by_tags(run(seeded, query_of(ROOM, "烟感", "A")))
    assert set(states) == {("r101-door",), ("r101-smoke",)}
    smoke = [r for r in states[("r101-smoke",)] if r[1] is not None]
    # The drill's smoke at 0.5 h would have made the first bucket 1.
    assert smoke[:3] == [[1.0, 0.0], [2.0, 1.0], [3.0, 1.0]]
    assert states[("r101-door",)][1] == [1.0, 1.0]
    devices = by_tags(run(seeded, query_of(ROOM, "烟感", "B")))
    assert devices == {
        ("th-101",): [
            [1.5, "device_offline r101", "device_offline"],
            [2.5, "device_online r101", "device_online"],
        ]
    }


def test_room_annotations_are_the_rooms_real_alert_events(seeded: InfluxServer) -> None:
    annotation = DASHBOARDS[ROOM]["annotations"]["list"][0]["target"]["query"]
    rows = by_tags(run(seeded, annotation))[()]
    assert [(r[0], r[3], r[4]) for r in rows] == [
        (1.2, "alert_fired", "warning"),
        (2.2, "alert_fired", "critical"),
        (3.2, "alert_resolved", "warning"),
        (25.2, "alert_fired", "warning"),
    ]
    assert rows[0][1] == "alert_fired r101"


def test_alert_counts_per_room_and_severity(seeded: InfluxServer) -> None:
    counts = by_tags(run(seeded, query_of("archwatch-alerts", "各库房告警次数")))
    assert {k: rows[0][1] for k, rows in counts.items()} == {
        ("r101", "critical"): 1,  # the drill's critical alert is not counted
        ("r101", "warning"): 2,
        ("r201", "warning"): 1,
    }
    rate = by_tags(run(seeded, query_of("archwatch-alerts", "告警触发次数")))
    assert {k: sum(r[1] for r in rows) for k, rows in rate.items()} == {
        ("critical",): 1,
        ("warning",): 3,
    }


def test_recent_events_are_newest_first_without_drills_or_other_buildings(
    seeded: InfluxServer,
) -> None:
    rows = by_tags(run(seeded, query_of("archwatch-alerts", "最近告警与设备事件")))[()]
    assert [r[0] for r in rows] == [25.2, 4.0, 3.2, 2.5, 2.2, 1.5, 1.4, 1.2]


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        (
            "每日温度",
            {
                ("outdoor",): [[0.0, 30.0, 30.0, 30.0]],
                ("r101",): [[0.0, 20.0, 22.333333, 25.0], [24.0, 19.0, 20.0, 21.0]],
                ("r201",): [[0.0, 14.0, 15.0, 16.0]],
            },
        ),
        (
            "每日湿度",
            {
                ("outdoor",): [[0.0, 80.0, 80.0, 80.0]],
                ("r101",): [[0.0, 50.0, 56.0, 62.0], [24.0, 55.0, 55.0, 55.0]],
                ("r201",): [[0.0, 40.0, 40.0, 40.0]],
            },
        ),
    ],
)
def test_daily_minimum_mean_maximum_per_room(
    seeded: InfluxServer, title: str, expected: dict[tuple[str, ...], list[list[float]]]
) -> None:
    got = by_tags(run(seeded, query_of("archwatch-daily", title)))
    assert got == expected


@pytest.mark.parametrize(
    ("ref_id", "expected"),
    [
        ("A", {("r101",): [[0.0, 2], [24.0, 2]], ("r201",): [[0.0, 1]]}),  # temperature in band
        ("B", {("outdoor",): [[0.0, 1]], ("r101",): [[0.0, 3], [24.0, 2]], ("r201",): [[0.0, 2]]}),
        ("C", {("r101",): [[0.0, 1], [24.0, 1]], ("r201",): [[0.0, 1]]}),  # humidity in band
        ("D", {("outdoor",): [[0.0, 1]], ("r101",): [[0.0, 2], [24.0, 1]], ("r201",): [[0.0, 1]]}),
    ],
)
def test_time_in_band_counts_readings_inside_each_rooms_own_band(
    seeded: InfluxServer, ref_id: str, expected: dict[tuple[str, ...], list[list[float]]]
) -> None:
    got = by_tags(run(seeded, query_of("archwatch-daily", "每日按读数计的达标比例", ref_id)))
    assert got == expected


def test_selected_room_daily_chart_follows_the_room_variable(seeded: InfluxServer) -> None:
    got = by_tags(run(seeded, query_of("archwatch-daily", "$room 每日温度")))
    assert got == {("r101",): [[0.0, 20.0, 22.333333, 25.0], [24.0, 19.0, 20.0, 21.0]]}


def test_template_variables_list_buildings_and_the_buildings_real_rooms(
    seeded: InfluxServer,
) -> None:
    variables = {v["name"]: v["query"] for v in DASHBOARDS["archwatch-daily"]["templating"]["list"]}
    buildings = run(seeded, variables["building"])
    assert [v[1] for v in buildings[0]["values"]] == ["annex", "main"]
    rooms = run(seeded, variables["room"])
    # r999 has only drill readings; r1 is in the annex.
    assert [v[1] for v in rooms[0]["values"]] == ["outdoor", "r101", "r201"]
