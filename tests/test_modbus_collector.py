"""The Modbus TCP collector against real pymodbus servers on loopback.

Servers are started in-test on port 0; a "dead" device is either a port nothing listens on
or a raw asyncio server that accepts and never answers (a hung gateway). Waits poll for a
condition with a generous limit; assertions are on counts and states, never on durations.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext
from pymodbus.server import ModbusTcpServer

from collectors.base import COLLECTORS
from collectors.modbus import (
    ModbusTcpCollector,
    ProbeError,
    next_poll_at,
    probe,
    with_badge_points,
)
from collectors.modbus_decode import encode_point
from collectors.modbus_profile import ProfileLibrary, RegisterType
from gateway.clock import ManualClock
from gateway.reading import SensorKind
from gateway.site import Building, DevicePlacement, ModbusTcpDevice, Room
from gateway.validation import RejectReason
from tests.modbus_helpers import FC, PROFILES, WAIT_S, CollectorHarness, unit_context, wait_until
from tests.servers import free_port
from tests.test_modbus_decode import VALID_CASES, check_decoded, load_case

# -- real servers -------------------------------------------------------------------------------


class ModbusSim:
    """A real pymodbus TCP server with several units; unknown units get no answer at all."""

    def __init__(self, units: dict[int, ModbusDeviceContext], port: int = 0) -> None:
        self.units = units
        self.port = port
        self.connections = 0
        self.server: ModbusTcpServer | None = None

    def _traced(self, connected: bool) -> None:
        if connected:
            self.connections += 1

    async def start(self) -> ModbusSim:
        self.server = ModbusTcpServer(
            ModbusServerContext(devices=self.units, single=False),
            address=("127.0.0.1", self.port),
            ignore_missing_devices=True,  # like a dead RS-485 unit behind a gateway: silence
            trace_connect=self._traced,
        )
        await self.server.serve_forever(background=True)
        self.port = int(self.server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None

    def set(self, unit: int, profile: str, point: str, value: float) -> None:
        p = PROFILES.get(profile).points[point]
        words = encode_point(p, value)
        if p.bit is not None:
            ctx = self.units[unit]
            current = ctx.getValues(FC[p.register_type], p.address, 1)
            assert isinstance(current, list)
            mask = 1 << p.bit
            words = [(int(current[0]) & ~mask) | words[0]]
        self.set_words(unit, p.register_type, p.address, words)

    def set_words(
        self, unit: int, register_type: RegisterType, address: int, words: list[int]
    ) -> None:
        self.units[unit].setValues(FC[register_type], address, words)


class SilentServer:
    """Accepts TCP connections and never answers: a hung Modbus gateway."""

    def __init__(self) -> None:
        self.requests = 0
        self.got_request = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(256):
                self.requests += 1
                self.got_request.set()
        writer.close()

    async def start(self) -> SilentServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in self._writers:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            await self.server.wait_closed()


# -- sinks and the site ---------------------------------------------------------------------


SENSORS = {
    "rs485_th_int16": ["temperature", "humidity"],
    "modbus_smoke_detector": ["smoke"],
    "modbus_io_door_leak": ["door", "water_leak"],
}


def device(dev_id: str, port: int, profile: str = "rs485_th_int16", **kw: Any) -> dict[str, Any]:
    """A site-file device entry; sensors are named <device>-<point>."""
    return {
        "id": dev_id,
        "protocol": "modbus_tcp",
        "host": "127.0.0.1",
        "port": port,
        "profile": profile,
        "poll_interval": 0.05,
        "timeout": 1.0,
        "retries": 0,
        "offline_after": 2,
        "sensors": [{"id": f"{dev_id}-{p}", "point": p} for p in SENSORS[profile]],
        **kw,
    }


class Harness(CollectorHarness):
    """A collector with recording sinks, a manual clock and a client factory that counts."""

    def __init__(self, tmp_path: Path, devices: list[dict[str, Any]]) -> None:
        super().__init__(tmp_path, devices)
        self.clock = ManualClock()
        self.clients: list[tuple[str, int]] = []
        self.ctx = self.context(tmp_path, self.clock, {"modbus_tcp": self._factory})
        self.collector = ModbusTcpCollector(list(self.site.placements()), self.ctx)

    def _factory(
        self, host: str, *, port: int, timeout: float, retries: int
    ) -> AsyncModbusTcpClient:
        self.clients.append((host, port))
        return AsyncModbusTcpClient(host, port=port, timeout=timeout, retries=retries)


@contextlib.asynccontextmanager
async def servers(*items: ModbusSim | SilentServer) -> AsyncIterator[None]:
    try:
        for item in items:
            await item.start()
        yield
    finally:
        for item in items:
            await item.stop()


# -- tests ------------------------------------------------------------------------------------


def test_the_collector_is_registered() -> None:
    assert COLLECTORS["modbus_tcp"] is ModbusTcpCollector
    assert ModbusTcpCollector.protocol == "modbus_tcp"


async def test_th_transmitter_readings_carry_values_and_tags(tmp_path: Path) -> None:
    sim = ModbusSim({1: unit_context()})
    async with servers(sim):
        sim.set_words(1, RegisterType.HOLDING, 0, [556, 0xFF85])  # 55.6 %RH, -12.3 °C
        h = Harness(tmp_path, [device("th-101", sim.port)])
        async with h.running():
            await wait_until(lambda: len(h.sink.submitted) >= 2, "two readings arrive")
            sim.set(1, "rs485_th_int16", "temperature", 21.4)
            await wait_until(
                lambda: any(r.value == 21.4 for r in h.sink.of("th-101-temperature")),
                "a changed register shows up in the next polls",
            )
    first_t, first_h = h.sink.of("th-101-temperature")[0], h.sink.of("th-101-humidity")[0]
    assert (first_t.value, first_t.raw, first_t.kind) == (-12.3, "0xFF85", SensorKind.TEMPERATURE)
    assert (first_h.value, first_h.raw, first_h.kind) == (55.6, "0x022C", SensorKind.HUMIDITY)
    assert first_t.tags() == {
        "site": "test-site",
        "building": "main",
        "room": "r101",
        "device": "th-101",
        "sensor": "th-101-temperature",
        "kind": "temperature",
        "storage_class": "paper",
    }
    assert first_t.ts_ns == h.clock.now_ns()
    st = h.status("th-101")
    assert st.online and st.polls >= 2 and st.misses == 0 and st.errors == 0
    assert st.last_seen_ns == h.clock.now_ns()
    assert h.events.events == [] and h.sink.rejected == []


async def test_three_shipped_profiles_on_one_line_share_one_connection(tmp_path: Path) -> None:
    sim = ModbusSim({1: unit_context(), 2: unit_context(), 3: unit_context()})
    async with servers(sim):
        sim.set(1, "rs485_th_int16", "temperature", 19.8)
        sim.set(1, "rs485_th_int16", "humidity", 45.0)
        sim.set(2, "modbus_smoke_detector", "smoke", 1)
        sim.set(3, "modbus_io_door_leak", "door", 1)  # open: contact bit 0 reads 0
        sim.set(3, "modbus_io_door_leak", "water_leak", 0)
        h = Harness(
            tmp_path,
            [
                device("th-1", sim.port, unit_id=1),
                device("smoke-1", sim.port, "modbus_smoke_detector", unit_id=2),
                device("io-1", sim.port, "modbus_io_door_leak", unit_id=3),
            ],
        )
        async with h.running():
            await wait_until(
                lambda: all(h.status(d).polls >= 3 for d in ("th-1", "smoke-1", "io-1")),
                "every unit on the line is polled",
            )
    latest = {r.sensor: r.value for r in h.sink.submitted}
    assert latest == {
        "th-1-temperature": 19.8,
        "th-1-humidity": 45.0,
        "smoke-1-smoke": 1.0,
        "io-1-door": 1.0,
        "io-1-water_leak": 0.0,
    }
    assert h.clients == [("127.0.0.1", sim.port)], "one client for the shared endpoint"
    assert sim.connections == 1, "one TCP connection for the shared endpoint"


async def test_a_dead_endpoint_never_delays_devices_on_other_endpoints(tmp_path: Path) -> None:
    a, b, silent = ModbusSim({1: unit_context()}), ModbusSim({1: unit_context()}), SilentServer()
    refused_port = free_port()  # nothing listens here
    async with servers(a, b, silent):
        h = Harness(
            tmp_path,
            [
                device("a", a.port),
                device("b", b.port),
                device(
                    "hung", silent.port, timeout=0.4, retries=1, offline_after=2, poll_interval=0.1
                ),
                device("refused", refused_port, offline_after=3),
            ],
        )
        async with h.running():
            await wait_until(lambda: h.status("hung").misses >= 1, "the hung device misses a poll")
            polls_before = {d: h.status(d).polls for d in ("a", "b")}
            await wait_until(
                lambda: "device_offline" in h.events.kinds("hung"), "hung goes offline"
            )
            polls_after = {d: h.status(d).polls for d in ("a", "b")}
            await wait_until(
                lambda: "device_offline" in h.events.kinds("refused"), "refused goes offline"
            )
        assert silent.requests >= 2, "the hung device was asked, and asked again (retries=1)"
    # While the hung device spent 2 × 0.4 s per poll timing out, the others kept polling.
    for d in ("a", "b"):
        assert polls_after[d] >= polls_before[d] + 5, (d, polls_before, polls_after)
        st = h.status(d)
        assert st.online and st.errors == 0
    hung = h.status("hung")
    assert not hung.online and hung.misses >= 2
    assert hung.last_error is not None and "no response within 0.4 s × 2" in hung.last_error
    refused = h.status("refused")
    assert not refused.online and refused.polls == 0
    assert refused.last_error is not None
    assert f"cannot connect to 127.0.0.1:{refused_port}" in refused.last_error
    offline = next(e for e in h.events.events if e.tags["device"] == "hung")
    assert offline.kind == "device_offline" and offline.severity == "warning"
    assert offline.tags == {
        "site": "test-site",
        "building": "main",
        "room": "r101",
        "device": "hung",
    }
    assert "no response" in offline.text
    # one event per state change, not one per missed poll
    assert h.events.kinds("hung") == ["device_offline"]
    assert h.events.kinds("refused") == ["device_offline"]


async def test_a_dead_unit_on_a_shared_line_holds_it_only_for_its_own_timeouts(
    tmp_path: Path,
) -> None:
    sim = ModbusSim({1: unit_context(), 2: unit_context()})  # unit 3 never answers
    async with servers(sim):
        h = Harness(
            tmp_path,
            [
                device("u1", sim.port, unit_id=1, timeout=5.0),
                device("u2", sim.port, unit_id=2, timeout=5.0),
                device("u3", sim.port, unit_id=3, timeout=0.2, retries=1, poll_interval=0.1),
            ],
        )
        async with h.running():
            await wait_until(lambda: h.status("u3").misses >= 1, "unit 3 misses a poll")
            before = {d: h.status(d).polls for d in ("u1", "u2")}
            await wait_until(lambda: "device_offline" in h.events.kinds("u3"), "unit 3 offline")
            await wait_until(lambda: h.status("u3").misses >= 6, "unit 3 keeps missing")
            after = {d: h.status(d).polls for d in ("u1", "u2")}
    # Each time unit 3 gives the line back (after 2 × 0.2 s), the lock's FIFO lets u1 and u2
    # poll before it can take the line again: at least one poll each per unit-3 cycle.
    for d in ("u1", "u2"):
        assert after[d] >= before[d] + 3, (d, before, after)
        st = h.status(d)
        assert st.online and st.errors == 0, st
    u3 = h.status("u3")
    assert not u3.online
    assert u3.last_error is not None and "of unit 3 at 127.0.0.1" in u3.last_error
    assert h.events.kinds("u1") == [] and h.events.kinds("u2") == []
    # a dead unit behind a live gateway must not cost the others their connection
    assert sim.connections == 1 and len(h.clients) == 1


async def test_a_device_that_comes_back_emits_online(tmp_path: Path) -> None:
    sim = ModbusSim({1: unit_context()}, port=free_port())
    async with servers(sim):
        sim.set(1, "rs485_th_int16", "temperature", 20.0)
        h = Harness(tmp_path, [device("th", sim.port, timeout=0.3)])
        async with h.running():
            await wait_until(lambda: h.status("th").online, "first poll")
            await sim.stop()
            await wait_until(lambda: "device_offline" in h.events.kinds("th"), "offline")
            polls_while_down = h.status("th").polls
            await sim.start()
            sim.set(1, "rs485_th_int16", "temperature", 20.0)
            await wait_until(lambda: "device_online" in h.events.kinds("th"), "back online")
            await wait_until(lambda: h.status("th").polls >= polls_while_down + 3, "polls resume")
    assert h.events.kinds("th") == ["device_offline", "device_online"]
    online = h.events.events[-1]
    assert online.severity == "info" and online.tags["device"] == "th"
    st = h.status("th")
    assert st.online and st.misses == 0 and st.errors >= 2
    assert len(h.clients) >= 2, "the client was closed and a new one connected"


async def test_an_exception_response_is_a_miss_with_a_clear_error(tmp_path: Path) -> None:
    # The device only implements registers 100.., so reading 0..1 is an illegal address.
    sim = ModbusSim({1: unit_context(first=100)})
    async with servers(sim):
        h = Harness(tmp_path, [device("th", sim.port, offline_after=3)])
        async with h.running():
            await wait_until(lambda: "device_offline" in h.events.kinds("th"), "offline")
    st = h.status("th")
    assert not st.online and st.polls == 0 and st.errors >= 3
    assert st.last_error == (
        f"reading holding 0..1 of unit 1 at 127.0.0.1:{sim.port}: "
        "exception response 2 (illegal data address)"
    )
    assert h.sink.submitted == []
    assert len(h.clients) == 1, "an exception response does not drop the connection"


async def test_a_fault_code_is_rejected_not_submitted(tmp_path: Path) -> None:
    sim = ModbusSim({1: unit_context()})
    async with servers(sim):
        sim.set_words(1, RegisterType.HOLDING, 0, [556, 0x7FFF])  # probe unplugged
        h = Harness(tmp_path, [device("th", sim.port)])
        async with h.running():
            await wait_until(lambda: len(h.sink.rejected) >= 2, "faults are rejected")
            sim.set_words(1, RegisterType.HOLDING, 1, [0])  # a genuine 0.0 °C
            await wait_until(lambda: bool(h.sink.of("th-temperature")), "a real 0 °C is stored")
    reading, reason = h.sink.rejected[0]
    assert reason is RejectReason.FAULT_CODE
    assert (reading.sensor, reading.raw) == ("th-temperature", "0x7FFF")
    assert {r.sensor for r, _ in h.sink.rejected} == {"th-temperature"}
    assert h.sink.of("th-temperature")[0].value == 0.0
    assert all(r.value == 55.6 for r in h.sink.of("th-humidity"))
    st = h.status("th")
    assert st.online and st.errors == 0, "a fault code is the probe's fault, not a missed poll"


async def test_cancelling_run_stops_it_even_mid_request(tmp_path: Path) -> None:
    silent = SilentServer()
    async with servers(silent):
        h = Harness(tmp_path, [device("hung", silent.port, timeout=30.0)])
        task = asyncio.create_task(h.collector.run())
        await asyncio.wait_for(silent.got_request.wait(), WAIT_S)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=WAIT_S)
    assert task in done and task.cancelled()


@pytest.mark.parametrize("case", VALID_CASES, ids=[c.name for c in VALID_CASES])
async def test_probe_reads_each_case_from_a_real_server(case: Path) -> None:
    profile, registers, expected = load_case(case)
    ctx = unit_context(size=32)
    for register_type, by_address in registers.items():
        for address, value in by_address.items():
            ctx.setValues(FC[register_type], address, [value])
    sim = ModbusSim({7: ctx})
    async with servers(sim):
        placement = _placement(profile.id, sim.port, unit_id=7)
        rows = await probe(placement, ProfileLibrary({profile.id: profile}))
    points = with_badge_points(profile).points  # badge registers are probed too
    assert [r.point for r in rows] == list(points)
    for row in rows:
        assert row.error is None
        assert row.register_type == points[row.point].register_type
        assert row.address == points[row.point].address
        if row.point in expected:
            assert row.value is not None and row.raw is not None
            check_decoded(expected, row.point, row.value, row.raw, row.fault)


async def test_probe_names_the_sensor_and_reports_failed_requests() -> None:
    sim = ModbusSim({1: unit_context(first=1)})  # register 0 is missing: humidity fails
    async with servers(sim):
        sim.set_words(1, RegisterType.HOLDING, 1, [0xFF85])
        rows = await probe(
            _placement("rs485_th_int16", sim.port, sensors={"humidity": "r-h"}), PROFILES
        )
    by_point = {r.point: r for r in rows}
    assert by_point["humidity"].sensor == "r-h"
    assert by_point["humidity"].error is not None
    assert "illegal data address" in by_point["humidity"].error
    # the whole request 0..1 failed, so temperature shares the error
    assert by_point["temperature"].value is None and by_point["temperature"].sensor is None


async def test_probe_of_an_unreachable_device_raises() -> None:
    port = free_port()
    with pytest.raises(ProbeError, match=f"cannot connect to 127.0.0.1:{port}"):
        await probe(_placement("rs485_th_int16", port), PROFILES)


def _placement(
    profile: str, port: int, unit_id: int = 1, sensors: dict[str, str] | None = None
) -> DevicePlacement:
    sensors = sensors or {"humidity": "s-h"}
    dev = ModbusTcpDevice(
        id="probe-me",
        protocol="modbus_tcp",
        host="127.0.0.1",
        port=port,
        unit_id=unit_id,
        profile=profile,
        timeout=2.0,
        sensors=[{"id": s, "point": p} for p, s in sensors.items()],  # type: ignore[misc]
    )
    room = Room(id="r1", storage_class="paper", devices=[dev])
    return DevicePlacement(Building(id="b", rooms=[room]), room, dev)


@pytest.mark.parametrize(
    ("previous", "interval", "now", "expected"),
    [
        (10.0, 2.0, 10.5, 12.0),  # the poll took 0.5 s: the next one is still on the grid
        (10.0, 2.0, 12.0, 12.0),  # exactly on time
        (10.0, 2.0, 12.1, 14.0),  # overran one slot: skip it, no burst
        (10.0, 2.0, 17.9, 18.0),  # overran several (long timeouts)
        (0.0, 0.05, 0.01, 0.05),
    ],
)
def test_polls_stay_on_a_fixed_cadence(
    previous: float, interval: float, now: float, expected: float
) -> None:
    assert next_poll_at(previous, interval, now) == pytest.approx(expected)
