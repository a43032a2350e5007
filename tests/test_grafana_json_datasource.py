"""The JSON data source against the real API: every Infinity panel query of the generated
dashboards, sent the way the provisioned data source sends it.

The API runs for real (``create_app`` under uvicorn on a loopback port, in a thread) with
a real state database holding alerts, the demo site and an embedded store seeded with
readings. The key is an ``inspector`` API key, as the README tells an installer to create
for Grafana, sent in the header the provisioning names. Infinity prefixes each panel's
``url`` with the data source URL and takes the rows from ``root_selector``; so does this test.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn

from alerting.lifecycle import Alert
from alerting.model import AlertState, Severity
from alerting.state_models import save_alerts
from api import accounts
from api.main import create_app
from api.models import Role
from gateway.clock import ManualClock
from gateway.reading import SensorKind
from gateway.resources import demo_site_path
from gateway.settings import Settings
from gateway.site import Site, load_site
from gateway.statedb import StateDB
from gateway.store.embedded import EmbeddedStore
from grafana.dashboards import build_dashboards
from grafana.provisioning import datasources

T0 = 1_767_225_600_000_000_000  # 2026-01-01 00:00 UTC: every demo sensor is in calibration
S = 1_000_000_000

# Newest reading per room and kind: r101 (paper, 14–24 °C, 45–60 %RH) in its band,
# r201 (film master, 13–15 °C, 35–45 %RH) 1.5 °C too warm.
CLIMATE = {
    ("r101", SensorKind.TEMPERATURE): 20.0,
    ("r101", SensorKind.HUMIDITY): 55.0,
    ("r201", SensorKind.TEMPERATURE): 16.5,
    ("r201", SensorKind.HUMIDITY): 40.0,
    ("outdoor", SensorKind.TEMPERATURE): 28.0,
    ("outdoor", SensorKind.HUMIDITY): 80.0,
}


def _alert(state: AlertState, severity: Severity, room: str, rule_kind: str, **kw: Any) -> Alert:
    labels = {"site": "hn-archives", "building": "main", "room": room, **kw.pop("labels", {})}
    return Alert(
        id=uuid.uuid4().hex,
        fingerprint=uuid.uuid4().hex,
        rule_id=rule_kind,
        rule_kind=rule_kind,
        severity=severity,
        labels=labels,
        state=state,
        started_at_ns=T0 - 600 * S,
        last_active_ns=T0 - 10 * S,
        **kw,
    )


SMOKE = _alert(
    AlertState.FIRING,
    Severity.CRITICAL,
    "r101",
    "smoke",
    labels={"sensor": "r101-smoke"},
    fired_at_ns=T0 - 500 * S,
    value=1.0,
    summary="101 纸质档案库 烟感报警",
)
HUMID_ACKED = _alert(
    AlertState.ACKNOWLEDGED,
    Severity.WARNING,
    "r101",
    "band",
    labels={"sensor": "r101-h"},
    fired_at_ns=T0 - 400 * S,
    acked_by="user:wang",
    acked_at_ns=T0 - 300 * S,
    summary="101 纸质档案库 湿度高于上限",
)
OLD = _alert(
    AlertState.RESOLVED,
    Severity.WARNING,
    "r201",
    "band",
    fired_at_ns=T0 - 500 * S,
    resolved_at_ns=T0 - 200 * S,
    summary="201 母片库 温度高于上限",
)
DRILL = _alert(
    AlertState.FIRING,
    Severity.CRITICAL,
    "r201",
    "smoke",
    labels={"drill_id": "d1"},
    fired_at_ns=T0 - 100 * S,
    summary="演练",
)

# What each room's status must be: r101 has an open critical alert (alarm) and an open
# band alert (excursion); r201 a reading outside its band. The drill alert counts nowhere.
ROOM_STATUS = {
    "r101": {"status": "alarm", "flags": ["alarm", "excursion"], "temperature": 20.0},
    "r201": {"status": "excursion", "flags": ["excursion"], "temperature": 16.5},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningApi:
    url: str
    key: str
    site: Site


def _seed_store(path: Path, site: Site) -> None:
    async def write() -> None:
        store = EmbeddedStore(path)
        try:
            readings = []
            for ref in site.sensors():
                value = CLIMATE.get((ref.room, ref.kind), 0.0)  # binary sensors: all clear
                readings.append(ref.reading(value, T0 - 2 * S))
                readings.append(ref.reading(99.0, T0 - 3_600 * S))  # older, superseded
            await store.write_readings(readings)
        finally:
            await store.close()

    asyncio.run(write())


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RunningApi]:
    site = load_site(demo_site_path())
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    db.migrate()
    save_alerts(db, [SMOKE, HUMID_ACKED, OLD, DRILL])
    _key, secret = accounts.create_api_key(
        db, name="grafana", roles=[Role.INSPECTOR], created_by="test", now=datetime.now(UTC)
    )
    _seed_store(tmp_path / "store.sqlite", site)
    app = create_app(
        Settings(data_dir=tmp_path / "data"),
        db=db,
        clock=ManualClock(T0),
        site=site,
        store=EmbeddedStore(tmp_path / "store.sqlite"),
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    try:
        yield RunningApi(f"http://127.0.0.1:{port}", secret, site)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        db.close()


VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)|\[\[(\w+)\]\]")
# The dashboards' template variables as a keeper of the demo building would set them.
DEMO_VARIABLES = {"building": "main", "room": "r101"}


def _infinity_targets(site: Site) -> list[tuple[str, str, dict[str, Any]]]:
    """(dashboard uid, panel title, target) of every query to the API data source."""
    return [
        (dash["uid"], panel["title"], target)
        for dash in build_dashboards(site)
        for panel in dash["panels"]
        for target in panel.get("targets", [])
        if target["datasource"]["uid"] == "archwatch-api"
    ]


def _interpolate(url: str, variables: dict[str, str]) -> str:
    """Grafana replaces template variables ($name, ${name}, [[name]]) before the plugin
    sends the URL; one it does not know would reach the API literally."""

    def value(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g)
        assert name in variables, f"{url}: unknown template variable {name}"
        return quote(variables[name], safe="")

    return VARIABLE.sub(value, url)


def _run(
    api: RunningApi,
    target: dict[str, Any],
    *,
    key: str | None,
    variables: dict[str, str] = DEMO_VARIABLES,
) -> httpx.Response:
    """The request Infinity makes for ``target`` through the provisioned data source."""
    [ds] = [d for d in datasources(api.site)["datasources"] if d["uid"] == "archwatch-api"]
    assert ds["url"] == "${ARCHWATCH_API_URL}"  # the base URL every panel URL is appended to
    assert target["source"] == "url" and target["type"] == "json"
    assert target["url_options"]["method"] == "GET"
    headers = {ds["jsonData"]["apiKeyKey"]: key} if key is not None else {}
    url = api.url + _interpolate(target["url"], variables)
    return httpx.get(url, headers=headers, timeout=10)


def _rows(
    api: RunningApi, target: dict[str, Any], variables: dict[str, str] = DEMO_VARIABLES
) -> list[dict[str, Any]]:
    response = _run(api, target, key=api.key, variables=variables)
    assert response.status_code == 200, response.text
    rows = response.json()[target["root_selector"]]
    assert isinstance(rows, list)
    return rows


def _target(site: Site, path: str) -> dict[str, Any]:
    [target] = [t for _uid, _title, t in _infinity_targets(site) if t["url"].startswith(path)]
    return target


def test_every_api_panel_answers_to_the_provisioned_read_only_key(api: RunningApi) -> None:
    targets = _infinity_targets(api.site)
    assert {t["url"].split("?")[0] for _u, _p, t in targets} == {
        "/api/v1/rooms",
        "/api/v1/alerts",
    }
    for _uid, _title, target in targets:
        assert _run(api, target, key=api.key).status_code == 200, target["url"]
        # Without the data source's key the API says no: the panel depends on it.
        assert _run(api, target, key=None).status_code == 401


def test_room_status_panel_has_one_row_per_room_with_its_status(api: RunningApi) -> None:
    rows = _rows(api, _target(api.site, "/api/v1/rooms"))
    assert [(r["building"], r["room"]) for r in rows] == [("main", "r101"), ("main", "r201")]
    for row in rows:
        expected = ROOM_STATUS[row["room"]]
        assert {k: row[k] for k in expected} == expected, row["room"]
    r101, r201 = rows
    assert r101["alarm_alerts"] == [SMOKE.id]
    assert r101["excursion_alerts"] == [HUMID_ACKED.id]
    assert r201["excursion_sensors"] == ["r201-t"]
    assert r201["room_name"] == "201 母片库"


def test_alerts_panel_lists_the_open_real_alerts(api: RunningApi) -> None:
    """The alerts board's "正在告警" table: every open alert, acknowledged ones included (as
    its description says: an acknowledged alert is still a problem in the room); drills
    and resolved ones left out."""
    rows = _rows(api, _target(api.site, "/api/v1/alerts"))
    assert {r["id"] for r in rows} == {SMOKE.id, HUMID_ACKED.id}
    [smoke] = [r for r in rows if r["id"] == SMOKE.id]
    assert (smoke["severity"], smoke["state"], smoke["room"]) == ("critical", "firing", "r101")
    assert smoke["summary"] == "101 纸质档案库 烟感报警"


def test_the_inspector_key_cannot_act_on_alerts(api: RunningApi) -> None:
    """The key Grafana holds is read-only: it cannot acknowledge (or resolve) an alert."""
    for action in ("ack", "resolve"):
        response = httpx.post(
            f"{api.url}/api/v1/alerts/{SMOKE.id}/{action}",
            headers={"X-API-Key": api.key},
            json={},
            timeout=10,
        )
        assert response.status_code == 403, response.text
