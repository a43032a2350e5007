"""Room status through the API: each status, the precedence between them, and what never
counts (drills, pending or resolved alerts, another building's room with the same id).

Readings go into a real embedded store, alerts into the real state database; a ManualClock
decides what is stale and which calibration is overdue.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerting.model import AlertState, Severity
from api.main import create_app
from api.models import Role
from gateway.clock import ManualClock
from gateway.settings import Settings
from gateway.site import Site
from gateway.statedb import StateDB
from tests.api.conftest import add_user, bearer
from tests.api.rooms_helpers import S, alert, reading, seed, write_site

HOUR = 3600


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return write_site(tmp_path)


@pytest.fixture
def app(settings: Settings, state: StateDB, clock: ManualClock, site: Site) -> FastAPI:
    return create_app(settings, db=state, clock=clock, site=site)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@dataclass(frozen=True)
class Case:
    """Readings as (sensor, age in seconds, value[, drill id]) and alerts as keyword
    arguments of ``rooms_helpers.alert``, after the clock moved ``advance_s``."""

    name: str
    status: str
    flags: list[str]
    readings: list[tuple[Any, ...]]
    alerts: list[dict[str, Any]] = field(default_factory=list)
    advance_s: float = 0
    room: str = "r101"
    expect: dict[str, Any] = field(default_factory=dict)


FRESH = [("r101-t", 5, 20.0), ("r101-h", 5, 50.0)]
CRITICAL = {"severity": Severity.CRITICAL}
# ManualClock starts at 2026-01-01T00:00Z, 08:00 in Shanghai; r101-t is due for calibration
# on 2026-01-01, so it is overdue from 2026-01-02 00:00 local time, 16 hours later.
TO_LOCAL_MIDNIGHT = 16 * HOUR

CASES = [
    Case("fresh and in band", "in_band", ["in_band"], FRESH),
    Case(
        "band edges are inside", "in_band", ["in_band"], [("r101-t", 1, 24.0), ("r101-h", 1, 45.0)]
    ),
    Case(
        "temperature too high",
        "excursion",
        ["excursion"],
        [("r101-t", 5, 24.1), ("r101-h", 5, 50.0)],
        expect={"excursion_sensors": ["r101-t"], "temperature": 24.1},
    ),
    Case(
        "humidity too low",
        "excursion",
        ["excursion"],
        [("r101-t", 5, 20.0), ("r101-h", 5, 44.9)],
        expect={"excursion_sensors": ["r101-h"], "humidity": 44.9},
    ),
    Case(
        "the latest reading decides, not an older excursion",
        "in_band",
        ["in_band"],
        [("r101-t", 20, 30.0), ("r101-t", 5, 20.0), ("r101-h", 5, 50.0)],
        expect={"temperature": 20.0},
    ),
    Case(
        "a drill's excursion does not count",
        "in_band",
        ["in_band"],
        [*FRESH, ("r101-t", 1, 35.0, "drill-1"), ("r101-h", 1, 99.0, "drill-1")],
        expect={"temperature": 20.0, "humidity": 50.0},
    ),
    Case(
        "a sensor without readings is offline",
        "offline",
        ["offline"],
        [("r101-t", 5, 20.0)],
        expect={"offline_sensors": ["r101-h"]},
    ),
    Case(
        "30 s old is still online (3 polls of 10 s)",
        "in_band",
        ["in_band"],
        [("r101-t", 30, 20.0), ("r101-h", 30, 50.0)],
    ),
    Case(
        "31 s old is offline",
        "offline",
        ["offline"],
        [("r101-t", 5, 20.0), ("r101-h", 31, 50.0)],
        expect={"offline_sensors": ["r101-h"]},
    ),
    Case(
        "a fresh drill reading does not keep a sensor online",
        "offline",
        ["offline"],
        [("r101-t", 5, 20.0), ("r101-h", 600, 50.0), ("r101-h", 1, 50.0, "drill-1")],
        expect={"offline_sensors": ["r101-h"]},
    ),
    Case(
        "MQTT device: 5 × 60 s allowed (offline_after 5)",
        "in_band",
        ["in_band"],
        [("r102-t", 300, 14.0), ("r102-h", 300, 40.0)],
        room="r102",
    ),
    Case(
        "MQTT device: 301 s is offline",
        "offline",
        ["offline"],
        [("r102-t", 301, 14.0), ("r102-h", 5, 40.0)],
        room="r102",
        expect={"offline_sensors": ["r102-t"]},
    ),
    Case(
        "a firing critical alert is an alarm",
        "alarm",
        ["alarm"],
        FRESH,
        alerts=[CRITICAL],
    ),
    Case(
        "an acknowledged critical alert is still an alarm",
        "alarm",
        ["alarm"],
        FRESH,
        alerts=[{**CRITICAL, "state": AlertState.ACKNOWLEDGED}],
    ),
    Case(
        "pending and resolved critical alerts are not",
        "in_band",
        ["in_band"],
        FRESH,
        alerts=[
            {**CRITICAL, "state": AlertState.PENDING},
            {**CRITICAL, "state": AlertState.RESOLVED},
        ],
    ),
    Case(
        "a drill's critical alert is not an alarm",
        "in_band",
        ["in_band"],
        FRESH,
        alerts=[{**CRITICAL, "drill_id": "drill-1"}],
    ),
    Case(
        "room 101 of the other building is another room",
        "in_band",
        ["in_band"],
        FRESH,
        alerts=[{**CRITICAL, "building": "b2"}, {**CRITICAL, "room": "r102"}],
    ),
    Case(
        "an open warning band alert is an excursion (hysteresis)",
        "excursion",
        ["excursion"],
        FRESH,
        alerts=[{"severity": Severity.WARNING, "rule_kind": "band"}],
    ),
    Case(
        "a warning of another kind changes nothing",
        "in_band",
        ["in_band"],
        FRESH,
        alerts=[{"severity": Severity.WARNING, "rule_kind": "battery_low"}],
    ),
    Case(
        "calibration due today is not overdue",
        "in_band",
        ["in_band"],
        FRESH,
        advance_s=TO_LOCAL_MIDNIGHT - 1,
    ),
    Case(
        "overdue from local midnight (UTC is still on the due date)",
        "calibration_overdue",
        ["calibration_overdue"],
        FRESH,
        advance_s=TO_LOCAL_MIDNIGHT,
        expect={"calibration_overdue_sensors": ["r101-t"]},
    ),
    Case(
        "excursion beats calibration",
        "excursion",
        ["excursion", "calibration_overdue"],
        [("r101-t", 5, 10.0), ("r101-h", 5, 50.0)],
        advance_s=TO_LOCAL_MIDNIGHT,
    ),
    Case(
        "offline beats excursion",
        "offline",
        ["offline", "excursion"],
        [("r101-t", 5, 10.0)],
    ),
    Case(
        "alarm beats everything, and every flag is listed",
        "alarm",
        ["alarm", "offline", "excursion", "calibration_overdue"],
        [("r101-t", 5, 30.0)],
        alerts=[CRITICAL],
        advance_s=TO_LOCAL_MIDNIGHT,
        expect={"offline_sensors": ["r101-h"], "excursion_sensors": ["r101-t"]},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_room_status(
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    state: StateDB,
    clock: ManualClock,
    site: Site,
    case: Case,
) -> None:
    clock.advance(case.advance_s)
    now = clock.now_ns()
    seed(
        settings,
        [
            reading(site, sensor, now - int(age * S), value, *drill)
            for sensor, age, value, *drill in case.readings
        ],
    )
    alerts = [alert(state, at_ns=now - 60 * S, **kwargs) for kwargs in case.alerts]
    headers = bearer(app, add_user(state, Role.INSPECTOR))

    detail = client.get(f"/api/v1/rooms/b1/{case.room}", headers=headers)
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert (body["status"], body["flags"]) == (case.status, case.flags)
    for key, value in case.expect.items():
        assert body[key] == value, key
    assert body["alarm_alerts"] == [
        a.id
        for a in reversed(alerts)
        if a.severity is Severity.CRITICAL
        and a.state in (AlertState.FIRING, AlertState.ACKNOWLEDGED)
        and a.drill_id is None
        and (a.labels["building"], a.labels["room"]) == ("b1", case.room)
    ]

    # The listing says the same about the room.
    listing = client.get("/api/v1/rooms", headers=headers).json()
    [row] = [r for r in listing["items"] if (r["building"], r["room"]) == ("b1", case.room)]
    assert {k: v for k, v in body.items() if k != "sensors"} == row


def test_detail_lists_each_sensor_with_its_latest_reading(
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    state: StateDB,
    clock: ManualClock,
    site: Site,
) -> None:
    now = clock.now_ns()
    seed(
        settings,
        [
            reading(site, "r101-t", now - 20 * S, 19.0),
            reading(site, "r101-t", now - 10 * S, 21.5),
            reading(site, "r101-t", now - 1 * S, 80.0, "drill-1"),
            reading(site, "b2-r101-t", now - 1 * S, 30.0),  # same room id, other building
        ],
    )
    body = client.get(
        "/api/v1/rooms/b1/r101",
        headers=bearer(app, add_user(state, Role.KEEPER, buildings=("b1",))),
    ).json()
    assert body["room_name"] == "101 纸质档案库"
    assert body["building_name"] == "一号库房楼"
    assert body["storage_class"] == "paper"
    assert body["band"] == "14–24 °C, 45–60 %RH"
    assert body["temperature"] == 21.5
    assert body["humidity"] is None
    # 2026-01-01T00:00:00Z minus 10 s, shown in Shanghai time.
    assert body["last_seen"] == "2026-01-01T07:59:50+08:00"
    sensors = {s["sensor"]: s for s in body["sensors"]}
    assert list(sensors) == ["r101-t", "r101-h"]
    assert sensors["r101-t"] | {} == {
        "sensor": "r101-t",
        "sensor_name": "101 温度",
        "building": "b1",
        "room": "r101",
        "device": "th-101",
        "kind": "temperature",
        "unit": "°C",
        "value": 21.5,
        "at": "2026-01-01T07:59:50+08:00",
        "stale": False,
        "stale_after_s": 30.0,
    }
    assert (sensors["r101-h"]["value"], sensors["r101-h"]["stale"]) == (None, True)


def test_listing_filters_by_building_and_status_and_pages(
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    state: StateDB,
    clock: ManualClock,
    site: Site,
) -> None:
    now = clock.now_ns()
    seed(
        settings,
        [reading(site, s, now - S, v) for s, v in (("r101-t", 20.0), ("r101-h", 50.0))]
        + [reading(site, s, now - S, v) for s, v in (("r102-t", 30.0), ("r102-h", 40.0))],
    )
    headers = bearer(app, add_user(state, Role.SECURITY))
    everything = client.get("/api/v1/rooms", headers=headers).json()
    assert everything["total"] == 3
    assert [(r["building"], r["room"], r["status"]) for r in everything["items"]] == [
        ("b1", "r101", "in_band"),
        ("b1", "r102", "excursion"),
        ("b2", "r101", "offline"),
    ]
    page = client.get("/api/v1/rooms?limit=1&offset=1", headers=headers).json()
    assert (page["total"], [r["room"] for r in page["items"]]) == (3, ["r102"])
    b2 = client.get("/api/v1/rooms?building=b2", headers=headers).json()
    assert [(r["building"], r["room"]) for r in b2["items"]] == [("b2", "r101")]
    offline = client.get("/api/v1/rooms?status=offline", headers=headers).json()
    assert [(r["building"], r["room"]) for r in offline["items"]] == [("b2", "r101")]
    bad = client.get("/api/v1/rooms?status=on_fire", headers=headers)
    assert bad.status_code == 422
    assert "status" in bad.text
