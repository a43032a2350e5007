"""Helpers shared by the end-to-end tests: a site on loopback simulators, waiting, reading back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from gateway.site import Site, load_site

TH_PROFILE = "rs485_th_int16"


def write_site(
    path: Path,
    *,
    modbus_ports: list[int],
    mqtt_devices: int,
    topic_prefix: str,
    poll_interval: float = 0.1,
) -> Site:
    """A one-building site: ``modbus_ports`` TH transmitters in a paper room, and
    ``mqtt_devices`` JSON TH nodes (with source timestamps) in a film-master room."""
    modbus = [
        {
            "id": f"mb-{i}",
            "protocol": "modbus_tcp",
            "host": "127.0.0.1",
            "port": port,
            "unit_id": 1,
            "profile": TH_PROFILE,
            "poll_interval": poll_interval,
            "timeout": 0.5,
            "retries": 0,
            "sensors": [
                {"id": f"mb-{i}-t", "point": "temperature"},
                {"id": f"mb-{i}-h", "point": "humidity"},
            ],
        }
        for i, port in enumerate(modbus_ports)
    ]
    mqtt = [
        {
            "id": f"mq-{i}",
            "protocol": "mqtt",
            "topic": f"{topic_prefix}/mq-{i}",
            "timestamp_path": "ts",
            "expected_interval": 86_400,  # device silence is not what these tests check
            "sensors": [
                {"id": f"mq-{i}-t", "kind": "temperature", "json_path": "temperature"},
                {"id": f"mq-{i}-h", "kind": "humidity", "json_path": "humidity"},
            ],
        }
        for i in range(mqtt_devices)
    ]
    rooms = []
    if modbus:
        rooms.append({"id": "r1", "storage_class": "paper", "devices": modbus})
    if mqtt:
        rooms.append({"id": "r2", "storage_class": "film_master", "devices": mqtt})
    doc = {"site": {"id": "e2e"}, "buildings": [{"id": "b1", "rooms": rooms}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_site(path)


def mqtt_values(k: int) -> tuple[float, float]:
    """The k-th simulated (°C, %RH) of an MQTT node: distinct, in band, one decimal."""
    return round(14.0 + (k % 10) / 10, 1), round(40.0 + (k % 50) / 10, 1)


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = 120.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until true; fail with ``what`` after ``timeout`` (never a speed test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
