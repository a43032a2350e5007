"""What the MQTT collector tests share: recording sinks, the site file, the collector with a
manual clock, a run block, publishing at QoS 1 and the polling wait.

``uid`` (registered in conftest.py) is a fresh client id and topic prefix per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import textwrap
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from paho.mqtt import publish
from paho.mqtt.enums import MQTTProtocolVersion

from collectors.base import CollectorContext, SubmitResult
from collectors.mqtt import MqttCollector
from gateway.clock import ManualClock
from gateway.reading import Event, Reading
from gateway.settings import Settings
from gateway.site import Site, load_site

JAN1_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
WAIT_S = 60.0


class RecordingSink:
    """The pipeline's stand-in: records what it was handed and what it made durable.

    ``block`` never returns (a gateway that dies mid-write); ``fail`` raises (a broken spool).
    """

    def __init__(self, *, block: bool = False, fail: bool = False) -> None:
        self.block = block
        self.fail = fail
        self.seen: list[Reading] = []
        self.stored: list[Reading] = []

    async def submit(self, readings: Sequence[Reading]) -> SubmitResult:
        self.seen.extend(readings)
        if self.block:
            await asyncio.Event().wait()
        if self.fail:
            raise OSError("disk full")
        self.stored.extend(readings)
        return SubmitResult(accepted=len(readings))

    def values(self, sensor: str) -> list[float]:
        return [r.value for r in self.stored if r.sensor == sensor]


class RecordingEvents:
    """Records the collector's events (device offline/online, sequence gaps)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def write_site(path: Path, devices: str) -> Site:
    path.write_text(
        "site: {id: s1}\n"
        "buildings:\n"
        "  - id: b1\n"
        "    rooms:\n"
        "      - id: r1\n"
        "        storage_class: paper\n"
        "        devices:\n" + textwrap.indent(textwrap.dedent(devices), " " * 10),
        encoding="utf-8",
    )
    return load_site(path)


def plain_device(dev_id: str, topic: str, sensor: str = "r1-co2", kind: str = "co2") -> str:
    """A site-file entry for a device with one sensor whose payload is the bare value."""
    return (
        f"- id: {dev_id}\n  protocol: mqtt\n  topic: {topic}\n"
        f"  sensors:\n    - {{id: {sensor}, kind: {kind}}}\n"
    )


def make_collector(
    site: Site,
    url: str,
    client_id: str,
    sink: RecordingSink,
    events: RecordingEvents | None = None,
    clock: ManualClock | None = None,
    *,
    ack_on_receipt: bool = False,
    check_interval: float | None = None,
) -> MqttCollector:
    ctx = CollectorContext(
        settings=Settings(broker_url=url, mqtt_client_id=client_id),
        site=site,
        sink=sink,
        events=events or RecordingEvents(),
        clock=clock or ManualClock(),
    )
    placements = [p for p in site.placements() if p.device.protocol == "mqtt"]
    return MqttCollector(
        placements, ctx, ack_on_receipt=ack_on_receipt, check_interval=check_interval
    )


async def wait_for(cond: Callable[[], bool], what: str) -> None:
    """Poll for a condition; the generous limit only turns a hang into a clear failure."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(collector: MqttCollector) -> AsyncIterator[asyncio.Task[None]]:
    """Run the collector until the block ends (then cancel it, as a shutdown or a crash)."""
    task = asyncio.create_task(collector.run())
    try:
        await wait_for(lambda: collector.connected or task.done(), "the collector to subscribe")
        if task.done():
            task.result()
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def pub(port: int, *msgs: tuple[str, str | bytes] | tuple[str, str | bytes, bool]) -> None:
    """Publish at QoS 1 from a separate client; returns when the broker acknowledged all."""
    batch = [
        {"topic": m[0], "payload": m[1], "qos": 1, "retain": bool(m[2]) if len(m) > 2 else False}
        for m in msgs
    ]
    await asyncio.to_thread(
        publish.multiple,
        batch,  # type: ignore[arg-type]
        hostname="127.0.0.1",
        port=port,
        protocol=MQTTProtocolVersion.MQTTv311,
    )


def by_sensor(sink: RecordingSink) -> dict[str, list[tuple[float, int]]]:
    """The stored readings as (value, time) per sensor, in arrival order."""
    out: dict[str, list[tuple[float, int]]] = {}
    for r in sink.stored:
        out.setdefault(r.sensor, []).append((r.value, r.ts_ns))
    return out


@pytest.fixture
def uid() -> str:
    """Fresh client id and topic prefix: the shared broker keeps sessions between tests."""
    return uuid.uuid4().hex[:10]
