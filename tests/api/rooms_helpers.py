"""A two-building site, readings and alerts for the site, room-status and summary tests.

Building b1 has a paper room r101 (14–24 °C, 45–60 %RH; a Modbus transmitter polled every
10 s, so its sensors are stale after 30 s) and a film-master vault r102; building b2 has a
room with the same id r101 (every building has a room 101), so scoping by building is
tested, not assumed; that room has two temperature sensors. Readings are written to the
real store the app uses; alerts to the real state database with
``alerting.state_models.save_alerts``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from pathlib import Path

from alerting.lifecycle import Alert
from alerting.model import AlertState, Severity
from alerting.state_models import save_alerts
from gateway.datadir import DataDir
from gateway.reading import Reading
from gateway.settings import Settings
from gateway.site import Site, load_site
from gateway.statedb import StateDB
from gateway.store.factory import make_store

S = 1_000_000_000

SITE_YAML = """\
site: {id: hq, name: 测试档案馆, timezone: Asia/Shanghai}
buildings:
  - id: b1
    name: 一号库房楼
    outdoor:
      - id: wx-1
        name: 室外气象站
        protocol: mqtt
        topic: t/wx
        expected_interval: 60
        sensors:
          - {id: out-t, name: 室外温度, kind: temperature, json_path: temperature}
    rooms:
      - id: r101
        name: 101 纸质档案库
        storage_class: paper
        devices:
          - id: th-101
            name: 101 温湿度变送器
            protocol: modbus_tcp
            host: 127.0.0.1
            profile: rs485_th_int16
            poll_interval: 10
            sensors:
              - id: r101-t
                name: 101 温度
                point: temperature
                calibration: {calibrated_on: 2025-01-01, interval_days: 365}
              - {id: r101-h, name: 101 湿度, point: humidity}
      - id: r102
        name: 102 母片库
        storage_class: film_master
        devices:
          - id: th-102
            protocol: mqtt
            topic: t/r102
            expected_interval: 60
            offline_after: 5
            sensors:
              - {id: r102-t, kind: temperature, json_path: temperature}
              - {id: r102-h, kind: humidity, json_path: humidity}
  - id: b2
    name: 二号库房楼
    rooms:
      - id: r101
        name: 二号楼 101 库
        storage_class: paper
        devices:
          - id: th-b2-101
            protocol: mqtt
            topic: t/b2/r101
            expected_interval: 60
            sensors:
              - {id: b2-r101-t, kind: temperature, json_path: temperature}
              - {id: b2-r101-h, kind: humidity, json_path: humidity}
              - {id: b2-r101-t2, name: 第二温度, kind: temperature, json_path: temperature2}
"""

_ids = itertools.count(1)


def write_site(folder: Path, timezone: str = "Asia/Shanghai") -> Site:
    """The site above, in ``timezone`` (the API's time zone when it serves this site)."""
    path = folder / "site.yaml"
    text = SITE_YAML.replace("timezone: Asia/Shanghai", f"timezone: {timezone}")
    path.write_text(text, encoding="utf-8")
    return load_site(path)


def reading(
    site: Site, sensor: str, ts_ns: int, value: float, drill_id: str | None = None
) -> Reading:
    return site.sensor(sensor).reading(value, ts_ns, drill_id=drill_id)


def seed(settings: Settings, readings: Sequence[Reading]) -> None:
    """Write ``readings`` to the store the app built from ``settings`` will read."""

    async def write() -> None:
        store = make_store(settings, DataDir(settings.data_dir).ensure())
        try:
            await store.write_readings(list(readings))
        finally:
            await store.close()

    asyncio.run(write())


def alert(
    db: StateDB,
    *,
    severity: Severity,
    state: AlertState = AlertState.FIRING,
    rule_kind: str = "smoke",
    building: str = "b1",
    room: str = "r101",
    drill_id: str | None = None,
    at_ns: int = 0,
) -> Alert:
    """Save one alert with the labels the evaluators give (site, building, room)."""
    labels = {"site": "hq", "building": building, "room": room}
    if drill_id is not None:
        labels["drill_id"] = drill_id
    n = next(_ids)
    fired = None if state is AlertState.PENDING else at_ns
    made = Alert(
        id=f"a{n:031d}",
        fingerprint=f"f{n:031d}",
        rule_id=f"{rule_kind}-rule",
        rule_kind=rule_kind,
        severity=severity,
        labels=labels,
        state=state,
        started_at_ns=at_ns,
        last_active_ns=at_ns,
        fired_at_ns=fired,
        resolved_at_ns=at_ns if state is AlertState.RESOLVED else None,
    )
    save_alerts(db, [made])
    return made
