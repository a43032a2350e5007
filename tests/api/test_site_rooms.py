"""The site tree, latest readings, series and daily summaries: who may call them, what they
answer, on both stores (embedded SQLite and the real InfluxDB), and bad input.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.models import Role
from gateway.clock import ManualClock
from gateway.reading import Reading, ns_from_datetime
from gateway.settings import Settings
from gateway.site import Site
from gateway.statedb import StateDB
from tests.api.conftest import add_user, api_key, bearer
from tests.api.rooms_helpers import S, reading, seed, write_site
from tests.servers import InfluxServer

READERS = ["keeper", "security", "inspector", "drill_coordinator", "admin"]


def local(text: str) -> int:
    """Nanoseconds of a Shanghai wall-clock time ``YYYY-MM-DDTHH:MM:SS``."""
    return ns_from_datetime(datetime.fromisoformat(text + "+08:00"))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return write_site(tmp_path)


@pytest.fixture(params=["embedded", "influx"])
def backend_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings whose store is the embedded file or the real InfluxDB (emptied)."""
    if request.param == "embedded":
        return Settings(data_dir=tmp_path / "data")
    server: InfluxServer = request.getfixturevalue("influx")
    return Settings(
        data_dir=tmp_path / "data", influx_url=server.url, influx_bucket=server.database
    )


@pytest.fixture
def settings(backend_settings: Settings) -> Settings:
    return backend_settings


@pytest.fixture
def app(settings: Settings, state: StateDB, clock: ManualClock, site: Site) -> FastAPI:
    # No store given: the app builds the configured one and closes it at shutdown.
    return create_app(settings, db=state, clock=clock, site=site)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def who(app: FastAPI, db: StateDB, name: str) -> dict[str, str]:
    if name == "anonymous":
        return {}
    if name.startswith("key:"):
        return api_key(db, Role(name.removeprefix("key:")))[1]
    buildings = ("b1",) if name == "keeper" else ()
    return bearer(app, add_user(db, Role(name), buildings=buildings))


# (path, belongs to building b1?): the keeper below is assigned b1 only.
ROUTES = [
    ("/api/v1/site", True),
    ("/api/v1/rooms", True),
    ("/api/v1/rooms/b1/r101", True),
    ("/api/v1/rooms/b2/r101", False),
    ("/api/v1/rooms/b1/r101/daily", True),
    ("/api/v1/rooms/b2/r101/daily", False),
    ("/api/v1/readings/latest", True),
    ("/api/v1/readings/latest?building=b1&room=r101", True),
    ("/api/v1/readings/latest?building=b2", False),
    ("/api/v1/readings/latest?room=r102", True),
    ("/api/v1/sensors/r101-t/series", True),
    ("/api/v1/sensors/b2-r101-t/series", False),
]


@pytest.mark.parametrize("backend_settings", ["embedded"], indirect=True)
@pytest.mark.parametrize(
    "principal", ["anonymous", *READERS, "key:inspector", "key:drill_coordinator"]
)
def test_role_route_matrix(
    app: FastAPI, client: TestClient, state: StateDB, principal: str
) -> None:
    headers = who(app, state, principal)
    for path, own in ROUTES:
        response = client.get(path, headers=headers)
        if principal == "anonymous":
            expected = 401
        elif principal == "keeper" and not own:
            expected = 404  # not 403: another building's rooms are not disclosed
        else:
            expected = 200
        assert response.status_code == expected, (principal, path, response.text)
        if expected == 401:
            assert response.headers["www-authenticate"] == "Bearer"
        if expected == 404:
            assert response.json()["detail"].startswith("no ")


@pytest.mark.parametrize("backend_settings", ["embedded"], indirect=True)
def test_a_keeper_lists_only_their_buildings(
    app: FastAPI, client: TestClient, state: StateDB
) -> None:
    headers = who(app, state, "keeper")
    tree = client.get("/api/v1/site", headers=headers).json()
    assert [b["id"] for b in tree["buildings"]] == ["b1"]
    rooms = client.get("/api/v1/rooms", headers=headers).json()
    assert [(r["building"], r["room"]) for r in rooms["items"]] == [("b1", "r101"), ("b1", "r102")]
    assert rooms["total"] == 2
    latest = client.get("/api/v1/readings/latest", headers=headers).json()
    assert {r["building"] for r in latest["items"]} == {"b1"}
    assert latest["total"] == 5
    # Asking for the room id both buildings have gives only the keeper's.
    r101 = client.get("/api/v1/readings/latest?room=r101", headers=headers).json()
    assert [r["sensor"] for r in r101["items"]] == ["r101-t", "r101-h"]


@pytest.mark.parametrize("backend_settings", ["embedded"], indirect=True)
def test_site_tree_has_names_bands_devices_and_calibration(
    app: FastAPI, client: TestClient, state: StateDB
) -> None:
    tree = client.get("/api/v1/site", headers=who(app, state, "inspector")).json()
    assert (tree["id"], tree["name"], tree["timezone"]) == ("hq", "测试档案馆", "Asia/Shanghai")
    assert [(b["id"], b["name"]) for b in tree["buildings"]] == [
        ("b1", "一号库房楼"),
        ("b2", "二号库房楼"),
    ]
    b1 = tree["buildings"][0]
    [weather] = b1["outdoor"]
    assert (weather["id"], weather["name"], weather["sensors"][0]["name"]) == (
        "wx-1",
        "室外气象站",
        "室外温度",
    )
    r101, r102 = b1["rooms"]
    assert (r101["id"], r101["name"], r101["tier"]) == ("r101", "101 纸质档案库", "ordinary")
    paper = r101["storage_class"]
    assert (paper["id"], paper["name"], paper["band"]) == (
        "paper",
        "纸质档案库",
        "14–24 °C, 45–60 %RH",
    )
    assert paper["temperature"] == {"min": 14.0, "max": 24.0, "unit": "°C"}
    assert paper["humidity"] == {"min": 45.0, "max": 60.0, "unit": "%RH"}
    assert r102["storage_class"]["band"] == "13–15 °C, 35–45 %RH"
    [device] = r101["devices"]
    assert (device["id"], device["protocol"], device["interval_s"], device["offline_after"]) == (
        "th-101",
        "modbus_tcp",
        10.0,
        3,
    )
    temperature, humidity = device["sensors"]
    assert temperature == {
        "id": "r101-t",
        "name": "101 温度",
        "kind": "temperature",
        "unit": "°C",
        "calibration": {"calibrated_on": "2025-01-01", "interval_days": 365, "due": "2026-01-01"},
    }
    assert (humidity["kind"], humidity["unit"], humidity["calibration"]) == (
        "humidity",
        "%RH",
        None,
    )


@pytest.mark.parametrize("backend_settings", ["embedded"], indirect=True)
def test_without_a_site_file_the_site_routes_say_so(
    settings: Settings, state: StateDB, clock: ManualClock
) -> None:
    app = create_app(settings, db=state, clock=clock)
    with TestClient(app) as client:
        headers = who(app, state, "inspector")
        for path in ("/api/v1/site", "/api/v1/rooms", "/api/v1/sensors/x/series"):
            response = client.get(path, headers=headers)
            assert response.status_code == 409, path
            assert "site file" in response.json()["detail"]


# --- latest readings ---------------------------------------------------------------------


def test_latest_reading_per_sensor_filtered_and_paged(
    app: FastAPI,
    client: TestClient,
    state: StateDB,
    settings: Settings,
    clock: ManualClock,
    site: Site,
) -> None:
    now = clock.now_ns()
    seed(
        settings,
        [
            reading(site, "r101-t", now - 100 * S, 18.0),
            reading(site, "r101-t", now - 20 * S, 19.5),
            reading(site, "r101-t", now - 1 * S, 50.0, "drill-1"),
            reading(site, "out-t", now - 10 * S, 31.0),
            reading(site, "r102-t", now - 10 * S, 14.0),
        ],
    )
    headers = who(app, state, "security")
    body = client.get(
        "/api/v1/readings/latest?building=b1&kind=temperature", headers=headers
    ).json()
    assert body["total"] == 3
    got = [(r["sensor"], r["value"], r["at"], r["stale"]) for r in body["items"]]
    assert got == [
        ("out-t", 31.0, "2026-01-01T07:59:50+08:00", False),
        ("r101-t", 19.5, "2026-01-01T07:59:40+08:00", False),
        ("r102-t", 14.0, "2026-01-01T07:59:50+08:00", False),
    ]
    page = client.get(
        "/api/v1/readings/latest?building=b1&kind=temperature&limit=1&offset=2", headers=headers
    ).json()
    assert (page["total"], [r["sensor"] for r in page["items"]]) == (3, ["r102-t"])
    outdoor = client.get("/api/v1/readings/latest?room=outdoor", headers=headers).json()
    assert [r["sensor"] for r in outdoor["items"]] == ["out-t"]
    # A sensor with nothing stored yet is listed, empty and stale.
    [humidity] = client.get(
        "/api/v1/readings/latest?building=b1&room=r101&kind=humidity", headers=headers
    ).json()["items"]
    assert (humidity["sensor"], humidity["value"], humidity["at"], humidity["stale"]) == (
        "r101-h",
        None,
        None,
        True,
    )


# --- series ------------------------------------------------------------------------------

SERIES = [
    ("r101-t", "2026-01-01T00:10:00", 10.0),
    ("r101-t", "2026-01-01T00:50:00", 20.0),
    ("r101-t", "2026-01-01T02:30:00", 5.0),
    ("r101-t", "2026-01-01T03:00:00", 7.0),  # at `end`: outside [start, end)
    ("r101-h", "2026-01-01T01:30:00", 55.0),  # another sensor
]
SERIES_DRILL = ("r101-t", "2026-01-01T01:15:00", 500.0)
SERIES_RANGE = "start=2026-01-01T00:00:00%2B08:00&end=2026-01-01T03:00:00%2B08:00"
HOURS = ["2026-01-01T00:00:00+08:00", "2026-01-01T01:00:00+08:00", "2026-01-01T02:00:00+08:00"]


def seed_series(settings: Settings, site: Site) -> None:
    data = [reading(site, s, local(t), v) for s, t, v in SERIES]
    sensor, t, v = SERIES_DRILL
    seed(settings, [*data, reading(site, sensor, local(t), v, "drill-1")])


@pytest.mark.parametrize(
    ("agg", "values"),
    [
        ("mean", [15.0, None, 5.0]),
        ("min", [10.0, None, 5.0]),
        ("max", [20.0, None, 5.0]),
        ("count", [2.0, None, 1.0]),
        ("last", [20.0, None, 5.0]),
    ],
)
def test_series_is_aggregated_by_the_store(
    app: FastAPI,
    client: TestClient,
    state: StateDB,
    settings: Settings,
    site: Site,
    agg: str,
    values: list[float | None],
) -> None:
    seed_series(settings, site)
    response = client.get(
        f"/api/v1/sensors/r101-t/series?{SERIES_RANGE}&step=3600&agg={agg}",
        headers=who(app, state, "keeper"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["sensor"], body["room"], body["unit"], body["agg"], body["step_s"]) == (
        "r101-t",
        "r101",
        "°C",
        agg,
        3600,
    )
    assert body["points"] == [{"at": at, "value": v} for at, v in zip(HOURS, values, strict=True)]


def test_daily_series_buckets_start_at_local_midnight(
    app: FastAPI, client: TestClient, state: StateDB, settings: Settings, site: Site
) -> None:
    seed_series(settings, site)
    response = client.get(
        "/api/v1/sensors/r101-t/series?start=2026-01-01&end=2026-01-03&step=86400&agg=max",
        headers=who(app, state, "inspector"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["points"] == [
        {"at": "2026-01-01T00:00:00+08:00", "value": 20.0},  # 07:00 local is still Jan 1
        {"at": "2026-01-02T00:00:00+08:00", "value": None},
    ]


# America/New_York moves to summer time at 02:00 on 2026-03-08 (UTC-5 to UTC-4).
NY_READINGS = [
    ("2026-03-07T12:00:00-05:00", 10.0),
    ("2026-03-08T03:30:00-04:00", 20.0),
    ("2026-03-09T12:00:00-04:00", 30.0),
    ("2026-03-10T12:00:00-04:00", 40.0),
]
NY_CROSSES = "crosses a change of UTC offset in America/New_York"


@pytest.mark.parametrize(
    ("query", "status", "expected"),
    [
        # Day (and 2-hour) buckets cannot start at local midnight on both sides: refused.
        ("start=2026-03-07&end=2026-03-10&step=86400", 422, NY_CROSSES),
        ("start=2026-03-07&end=2026-03-10&step=7200", 422, "use a step dividing 3600 s"),
        # After the change: local midnights at -04:00.
        (
            "start=2026-03-09&end=2026-03-11&step=86400",
            200,
            [("2026-03-09T00:00:00-04:00", 1.0), ("2026-03-10T00:00:00-04:00", 1.0)],
        ),
        # Hours are hours on both sides; 02:00 does not exist that night.
        (
            "start=2026-03-08T00:00&end=2026-03-08T04:00&step=3600",
            200,
            [
                ("2026-03-08T00:00:00-05:00", None),
                ("2026-03-08T01:00:00-05:00", None),
                ("2026-03-08T03:00:00-04:00", 1.0),
            ],
        ),
    ],
)
def test_series_across_a_utc_offset_change_stays_on_local_time_or_says_why_not(
    settings: Settings,
    state: StateDB,
    clock: ManualClock,
    tmp_path: Path,
    query: str,
    status: int,
    expected: str | list[tuple[str, float | None]],
) -> None:
    site = write_site(tmp_path, "America/New_York")
    seed(
        settings,
        [
            reading(site, "r101-t", ns_from_datetime(datetime.fromisoformat(t)), v)
            for t, v in NY_READINGS
        ],
    )
    app = create_app(settings, db=state, clock=clock, site=site)
    with TestClient(app) as client:
        response = client.get(
            f"/api/v1/sensors/r101-t/series?{query}&agg=count",
            headers=who(app, state, "inspector"),
        )
    assert response.status_code == status, response.text
    if isinstance(expected, str):
        assert expected in response.json()["detail"]
    else:
        got = [(point["at"], point["value"]) for point in response.json()["points"]]
        assert got == expected


@pytest.mark.parametrize("backend_settings", ["embedded"], indirect=True)
def test_series_default_step_across_a_utc_offset_change_is_one_that_fits(
    settings: Settings, state: StateDB, clock: ManualClock, tmp_path: Path
) -> None:
    site = write_site(tmp_path, "America/New_York")
    app = create_app(settings, db=state, clock=clock, site=site)
    with TestClient(app) as client:
        response = client.get(
            "/api/v1/sensors/r101-t/series?start=2026-03-01&end=2026-03-31",
            headers=who(app, state, "inspector"),
        )
    assert response.status_code == 200, response.text
    body = response.json()
    # 30 local days, one of 23 hours: 719 hours of half-hour buckets.
    assert (body["step_s"], len(body["points"])) == (1800, 1438)
    assert (body["points"][0]["at"], body["points"][-1]["at"]) == (
        "2026-03-01T00:00:00-05:00",
        "2026-03-30T23:30:00-04:00",
    )


@pytest.mark.parametrize("backend_settings", ["embedded"], indirect=True)
@pytest.mark.parametrize(
    ("query", "step", "points"),
    [
        ("", 60, 1440),  # the last 24 hours by default
        ("&start=2026-01-01&end=2026-02-01", 1800, 1488),  # 31 days
        ("&start=2026-01-01T00:00&end=2026-01-01T00:05", 10, 30),
    ],
)
def test_series_default_step_keeps_within_2000_points(
    app: FastAPI, client: TestClient, state: StateDB, query: str, step: int, points: int
) -> None:
    response = client.get(
        f"/api/v1/sensors/r101-t/series?agg=count{query}", headers=who(app, state, "inspector")
    )
    assert response.status_code == 200, response.text
    assert (response.json()["step_s"], len(response.json()["points"])) == (step, points)


BAD_SERIES = [
    ("/api/v1/sensors/r101-t/series?step=5", 422, "step must be at least 10 s"),
    ("/api/v1/sensors/r101-t/series?step=-60", 422, "step must be at least 10 s"),
    ("/api/v1/sensors/r101-t/series?step=10", 422, "at most 2000 per request"),
    ("/api/v1/sensors/r101-t/series?step=99999999999", 422, "step must be at most 31 days"),
    ("/api/v1/sensors/r101-t/series?step=ten", 422, "step"),
    ("/api/v1/sensors/r101-t/series?agg=median", 422, "agg"),
    (
        "/api/v1/sensors/r101-t/series?start=2026-01-01&end=2026-02-02",
        422,
        "longer than 31 days",
    ),
    (
        "/api/v1/sensors/r101-t/series?start=2026-01-02&end=2026-01-01",
        422,
        "end must be after start",
    ),
    ("/api/v1/sensors/r101-t/series?start=yesterday", 422, "start"),
    (
        "/api/v1/sensors/r101-t/series?start=9999-12-30T00:00:00Z&end=9999-12-31T00:00:00Z",
        422,
        "between 1970 and 2262",
    ),
    (
        "/api/v1/rooms/b1/r101/daily?start=0001-01-01T00:00:00Z&end=0001-01-02T00:00:00Z",
        422,
        "between 1970 and 2262",
    ),
    ("/api/v1/sensors/nope/series", 404, "no sensor nope"),
    ("/api/v1/rooms/b1/r999", 404, "no room b1/r999"),
    ("/api/v1/rooms/b9/r101", 404, "no room b9/r101"),
    ("/api/v1/rooms/b1/r999/daily", 404, "no room b1/r999"),
    ("/api/v1/rooms?building=b9", 404, "no building b9"),
    ("/api/v1/readings/latest?building=b9", 404, "no building b9"),
    ("/api/v1/readings/latest?building=b2&room=r102", 404, "no room b2/r102"),
    ("/api/v1/readings/latest?kind=pressure", 422, "kind"),
    ("/api/v1/readings/latest?limit=0", 422, "limit"),
    ("/api/v1/rooms/b1/r101/daily?start=2026-01-01&end=2026-04-04", 422, "longer than 92 days"),
    ("/api/v1/rooms/b1/r101/daily?start=2026-01-03&end=2026-01-01", 422, "end must be after"),
]


@pytest.mark.parametrize("backend_settings", ["embedded"], indirect=True)
@pytest.mark.parametrize(("path", "status", "says"), BAD_SERIES, ids=[p for p, *_ in BAD_SERIES])
def test_bad_input_gets_a_clear_4xx(
    app: FastAPI, client: TestClient, state: StateDB, path: str, status: int, says: str
) -> None:
    response = client.get(path, headers=who(app, state, "admin"))
    assert response.status_code == status, response.text
    assert says in response.text


# --- daily summaries ---------------------------------------------------------------------

# Paper room 14–24 °C, 45–60 %RH. Local day 1 (1 January) and day 2 (2 January); with UTC
# days the day-2 readings before 08:00 local would fall into day 1.
DAILY = [
    ("r101-t", "2026-01-01T00:00:00", 20.0),  # one 5-minute bucket: mean 22.25, in
    ("r101-t", "2026-01-01T00:04:59", 24.5),
    ("r101-t", "2026-01-01T00:05:00", 24.5),  # the next bucket: out
    ("r101-t", "2026-01-01T06:00:00", 25.0),  # out
    ("r101-t", "2026-01-01T12:00:00", 14.0),  # the band's edge: in
    ("r101-t", "2026-01-01T23:59:59", 12.0),  # out
    ("r101-t", "2026-01-02T00:00:00", 18.0),
    ("r101-t", "2026-01-02T07:59:00", 19.0),
    ("r101-h", "2026-01-01T10:00:00", 61.0),
    ("r101-t", "2025-12-31T23:59:59", 100.0),  # the day before: not asked for
    ("r101-t", "2026-01-03T00:00:00", 100.0),  # the day after
]
DAILY_DRILL = [("r101-t", "2026-01-01T13:00:00", 99.0), ("r101-h", "2026-01-02T01:00:00", 10.0)]


def day_of(band: dict[str, Any], **values: Any) -> dict[str, Any]:
    return {"band": band, **values}


TEMP_BAND = {"min": 14.0, "max": 24.0, "unit": "°C"}
RH_BAND = {"min": 45.0, "max": 60.0, "unit": "%RH"}
NO_DATA = {
    "min": None,
    "mean": None,
    "max": None,
    "readings": 0,
    "minutes_with_data": 0,
    "minutes_in_band": 0,
    "time_in_band": None,
}


def test_daily_summary_per_local_day(
    app: FastAPI,
    client: TestClient,
    state: StateDB,
    settings: Settings,
    clock: ManualClock,
    site: Site,
) -> None:
    data: list[Reading] = [reading(site, s, local(t), v) for s, t, v in DAILY]
    data += [reading(site, s, local(t), v, "drill-1") for s, t, v in DAILY_DRILL]
    seed(settings, data)
    clock.advance(2 * 86400)  # now: 2026-01-03 08:00 local
    response = client.get(
        "/api/v1/rooms/b1/r101/daily?start=2026-01-01&end=2026-01-03",
        headers=who(app, state, "keeper"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["timezone"], body["band"], body["sensors"]) == (
        "Asia/Shanghai",
        "14–24 °C, 45–60 %RH",
        {"temperature": ["r101-t"], "humidity": ["r101-h"]},
    )
    assert body["days"] == [
        {
            "date": "2026-01-01",
            "start": "2026-01-01T00:00:00+08:00",
            "end": "2026-01-02T00:00:00+08:00",
            "complete": True,
            "temperature": day_of(
                TEMP_BAND,
                min=12.0,
                mean=20.0,
                max=25.0,
                readings=6,
                minutes_with_data=25,
                minutes_in_band=10,
                time_in_band=0.4,
            ),
            "humidity": day_of(
                RH_BAND,
                min=61.0,
                mean=61.0,
                max=61.0,
                readings=1,
                minutes_with_data=5,
                minutes_in_band=0,
                time_in_band=0.0,
            ),
        },
        {
            "date": "2026-01-02",
            "start": "2026-01-02T00:00:00+08:00",
            "end": "2026-01-03T00:00:00+08:00",
            "complete": True,
            "temperature": day_of(
                TEMP_BAND,
                min=18.0,
                mean=18.5,
                max=19.0,
                readings=2,
                minutes_with_data=10,
                minutes_in_band=10,
                time_in_band=1.0,
            ),
            "humidity": day_of(RH_BAND, **NO_DATA),
        },
    ]


def test_daily_summary_over_two_sensors_weights_the_mean_by_readings(
    app: FastAPI,
    client: TestClient,
    state: StateDB,
    settings: Settings,
    clock: ManualClock,
    site: Site,
) -> None:
    seed(
        settings,
        [
            reading(site, "b2-r101-t", local("2026-01-01T09:00:00"), 10.0),  # out
            reading(site, "b2-r101-t", local("2026-01-01T09:05:00"), 20.0),  # in
            reading(site, "b2-r101-t2", local("2026-01-01T09:00:00"), 30.0),  # out
        ],
    )
    # Today (1 January, 08:00 local) so far, by default the last seven days.
    body = client.get("/api/v1/rooms/b2/r101/daily", headers=who(app, state, "inspector")).json()
    assert body["sensors"]["temperature"] == ["b2-r101-t", "b2-r101-t2"]
    assert [d["date"] for d in body["days"]] == [f"2025-12-{d}" for d in range(26, 32)] + [
        "2026-01-01"
    ]
    today = body["days"][-1]
    assert today["complete"] is False
    temperature = today["temperature"]
    assert (temperature["min"], temperature["mean"], temperature["max"]) == (10.0, 20.0, 30.0)
    assert (temperature["readings"], temperature["minutes_with_data"]) == (3, 15)
    assert temperature["time_in_band"] == 1 / 3
    assert all(d["temperature"]["readings"] == 0 for d in body["days"][:-1])


@pytest.mark.parametrize("backend_settings", ["embedded"], indirect=True)
def test_daily_range_selects_days_by_their_local_midnight(
    app: FastAPI, client: TestClient, state: StateDB
) -> None:
    headers = who(app, state, "inspector")

    def dates(query: str) -> list[str]:
        response = client.get(f"/api/v1/rooms/b1/r101/daily?{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [d["date"] for d in response.json()["days"]]

    assert dates("start=2026-01-01&end=2026-01-08") == [f"2026-01-0{d}" for d in range(1, 8)]
    assert dates("start=2026-01-01T00:00:01&end=2026-01-03") == ["2026-01-02"]
    assert dates("start=2026-01-01T10:00&end=2026-01-01T11:00") == []
    # A UTC range: 2026-01-01T16:00Z is midnight of 2 January in Shanghai.
    assert dates("start=2026-01-01T16:00:00Z&end=2026-01-02T16:00:01Z") == [
        "2026-01-02",
        "2026-01-03",
    ]
    assert len(dates("start=2026-01-01&end=2026-04-03T00:00")) == 92


def test_daily_summary_keeps_local_days_across_a_daylight_saving_change(
    settings: Settings, state: StateDB, clock: ManualClock, tmp_path: Path
) -> None:
    # Europe/Berlin moves to summer time on 2026-03-29: that local day lasts 23 hours. The
    # site file's zone is the API's; the ``timezone`` setting (Asia/Shanghai) is not used.
    site = write_site(tmp_path, "Europe/Berlin")
    assert settings.timezone == "Asia/Shanghai"
    at = [
        ("2026-03-28T23:30:00+01:00", 20.0),
        ("2026-03-29T00:30:00+01:00", 21.0),
        ("2026-03-29T23:30:00+02:00", 23.0),
        ("2026-03-30T00:30:00+02:00", 18.0),
    ]
    seed(
        settings,
        [reading(site, "r101-t", ns_from_datetime(datetime.fromisoformat(t)), v) for t, v in at],
    )
    app = create_app(settings, db=state, clock=clock, site=site)
    with TestClient(app) as client:
        response = client.get(
            "/api/v1/rooms/b1/r101/daily?start=2026-03-28&end=2026-03-31",
            headers=who(app, state, "inspector"),
        )
    assert response.status_code == 200, response.text
    assert response.json()["timezone"] == "Europe/Berlin"
    days = response.json()["days"]
    assert [(d["start"], d["end"]) for d in days] == [
        ("2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00"),
        ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
        ("2026-03-30T00:00:00+02:00", "2026-03-31T00:00:00+02:00"),
    ]
    temperature = [
        (d["temperature"]["readings"], d["temperature"]["min"], d["temperature"]["max"])
        for d in days
    ]
    assert temperature == [(1, 20.0, 20.0), (2, 21.0, 23.0), (1, 18.0, 18.0)]
