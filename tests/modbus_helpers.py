"""What the Modbus TCP and RTU collector tests share: register data for the real pymodbus
servers, recording sinks, the site file, the harness's run block and the polling wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock

from collectors.base import Collector, CollectorContext, DeviceStatus, SubmitResult
from collectors.modbus_profile import ProfileLibrary, RegisterType
from gateway.clock import ManualClock
from gateway.reading import Event, Reading
from gateway.settings import Settings
from gateway.site import Site, load_site
from gateway.validation import RejectReason

WAIT_S = 30.0
FC = {
    RegisterType.COIL: 1,
    RegisterType.DISCRETE: 2,
    RegisterType.HOLDING: 3,
    RegisterType.INPUT: 4,
}
PROFILES = ProfileLibrary.load()


def unit_context(first: int = 0, size: int = 64) -> ModbusDeviceContext:
    # ModbusDeviceContext adds 1 to every address, so block address first+1 serves `first`.
    def block() -> ModbusSequentialDataBlock:
        return ModbusSequentialDataBlock(first + 1, [0] * size)

    return ModbusDeviceContext(di=block(), co=block(), hr=block(), ir=block())


class RecordingSink:
    """Records what the collector submits and rejects (the pipeline's two entry points)."""

    def __init__(self) -> None:
        self.submitted: list[Reading] = []
        self.rejected: list[tuple[Reading, str]] = []

    async def submit(self, readings: Sequence[Reading]) -> SubmitResult:
        self.submitted.extend(readings)
        return SubmitResult(accepted=len(readings))

    def reject(self, reading: Reading, reason: RejectReason) -> None:
        self.rejected.append((reading, reason))

    def of(self, sensor: str) -> list[Reading]:
        return [r for r in self.submitted if r.sensor == sensor]


class RecordingEvents:
    """Records the collector's events (device offline/online and the like)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self, device: str) -> list[str]:
        return [e.kind for e in self.events if e.tags.get("device") == device]


def make_site(tmp_path: Path, devices: list[dict[str, Any]]) -> Site:
    doc = {
        "site": {"id": "test-site", "name": "测试档案馆"},
        "buildings": [
            {
                "id": "main",
                "rooms": [{"id": "r101", "storage_class": "paper", "devices": devices}],
            }
        ],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_site(path)


class CollectorHarness:
    """The part of a test harness that does not depend on the protocol: the site, recording
    sinks, the collector under test (a subclass makes it), its device statuses and a block
    that runs it (then cancels it, as a shutdown)."""

    collector: Collector

    def __init__(self, tmp_path: Path, devices: list[dict[str, Any]]) -> None:
        self.site = make_site(tmp_path, devices)
        self.sink = RecordingSink()
        self.events = RecordingEvents()

    def context(
        self, tmp_path: Path, clock: ManualClock, factories: dict[str, Callable[..., Any]]
    ) -> CollectorContext:
        """The collector's context: these sinks, ``clock`` and the test's client factories."""
        return CollectorContext(
            settings=Settings(data_dir=tmp_path / "data"),
            site=self.site,
            sink=self.sink,
            events=self.events,
            clock=clock,
            client_factories=factories,
        )

    def status(self, dev_id: str) -> DeviceStatus:
        return next(s for s in self.collector.statuses() if s.device == dev_id)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = asyncio.create_task(self.collector.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def wait_until(cond: Callable[[], bool], what: str, limit: float = WAIT_S) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)
