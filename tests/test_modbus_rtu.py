"""Modbus RTU on a serial line (a socat pseudo-terminal pair) and RTU over TCP.

One end of the pty pair is a real pymodbus RTU serial server; the collector (or the
``archwatch probe`` command) opens the other end. Units the server does not know stay silent
(``ignore_missing_devices``), like a dead slave on RS-485; a garbling unit's answers get a bad
CRC and a busy unit answers exception 6, both through the server's own trace hooks. Waits poll
for a condition with a generous limit; assertions are on counts and states, never durations.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from collectors.base import COLLECTORS
from collectors.modbus import ModbusRtuCollector, ModbusRtuTcpCollector
from collectors.modbus_decode import encode_point
from collectors.modbus_line import rtu_silence
from collectors.modbus_profile import RegisterType
from gateway.clock import ManualClock
from gateway.configfile import ConfigError
from tests.modbus_helpers import (
    FC,
    PROFILES,
    WAIT_S,
    CollectorHarness,
    make_site,
    unit_context,
    wait_until,
)
from tests.servers import free_port

BAUD = 19200


# -- the serial line --------------------------------------------------------------------------


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals: (gateway end, device end). Fails if socat is missing."""
    socat = shutil.which("socat")
    if socat is None:
        pytest.fail("socat is required for the RTU tests (apt-get install socat)")
    gw, dev = tmp_path / "ttyGW", tmp_path / "ttyDEV"
    log = (tmp_path / "socat.log").open("wb")
    proc = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={gw}", f"pty,raw,echo=0,link={dev}"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        for _ in range(int(WAIT_S / 0.01)):
            if gw.exists() and dev.exists():
                break
            if proc.poll() is not None:
                pytest.fail(f"socat exited: {(tmp_path / 'socat.log').read_text()}")
            time.sleep(0.01)
        else:
            pytest.fail("socat did not create the pty pair")
        yield str(gw), str(dev)
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT_S)
        log.close()


class RtuSim:
    """A real pymodbus RTU server (serial, or TCP with the RTU framer) with several units.

    Units not in ``units`` never answer. Answers of a unit in ``garble`` carry a bad CRC;
    units in ``busy`` answer exception 6 ("server device busy"): always, or (``busy_every``)
    only to every n-th request.
    """

    def __init__(
        self,
        units: dict[int, ModbusDeviceContext],
        *,
        serial_port: str | None = None,
        garble: frozenset[int] = frozenset(),
        busy: dict[int, int] | None = None,
    ) -> None:
        self.units = units
        self.serial_port = serial_port
        self.garble = garble
        self.busy = busy or {}  # unit -> answer busy to every n-th request (1: always)
        self.requests: Counter[int] = Counter()
        self.frames: list[tuple[str, float]] = []  # ("request" | "response", loop time)
        self.port = 0
        self.server: ModbusSerialServer | ModbusTcpServer | None = None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if sending and data and data[0] in self.garble:
            return data[:-1] + bytes([data[-1] ^ 0xFF])  # flip the CRC's high byte
        return data

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        now = asyncio.get_running_loop().time()
        self.frames.append(("response" if sending else "request", now))
        if not sending:
            self.requests[pdu.dev_id] += 1
            return pdu
        every = self.busy.get(pdu.dev_id)
        if every and self.requests[pdu.dev_id] % every == 0:
            return ExceptionResponse(pdu.function_code & 0x7F, 6, device_id=pdu.dev_id)
        return pdu

    async def start(self) -> RtuSim:
        context = ModbusServerContext(devices=self.units, single=False)
        hooks: dict[str, Any] = {
            "trace_packet": self._trace_packet,
            "trace_pdu": self._trace_pdu,
            "ignore_missing_devices": True,
        }
        if self.serial_port is not None:
            self.server = ModbusSerialServer(
                context, framer=FramerType.RTU, port=self.serial_port, baudrate=BAUD, **hooks
            )
            await self.server.serve_forever(background=True)
        else:
            self.server = ModbusTcpServer(
                context, framer=FramerType.RTU, address=("127.0.0.1", 0), **hooks
            )
            await self.server.serve_forever(background=True)
            sockets = self.server.transport.sockets  # type: ignore[attr-defined]
            self.port = int(sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()  # type: ignore[no-untyped-call]
            self.server = None

    async def __aenter__(self) -> RtuSim:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def set(self, unit: int, profile: str, point: str, value: float) -> None:
        p = PROFILES.get(profile).points[point]
        self.units[unit].setValues(FC[p.register_type], p.address, encode_point(p, value))

    def set_words(
        self, unit: int, register_type: RegisterType, address: int, words: list[int]
    ) -> None:
        self.units[unit].setValues(FC[register_type], address, words)


# -- the collector ----------------------------------------------------------------------------


def rtu(dev_id: str, port: str, unit_id: int, **kw: Any) -> dict[str, Any]:
    """A ``modbus_rtu`` site entry for the RS485 T/RH transmitter; sensors <id>-<point>."""
    return {
        "id": dev_id,
        "protocol": "modbus_rtu",
        "port": port,
        "baudrate": BAUD,
        "unit_id": unit_id,
        "profile": "rs485_th_int16",
        "poll_interval": 0.05,
        "timeout": 1.0,
        "retries": 0,
        "offline_after": 2,
        "sensors": [{"id": f"{dev_id}-{p}", "point": p} for p in ("temperature", "humidity")],
        **kw,
    }


def rtu_tcp(dev_id: str, port: int, unit_id: int, **kw: Any) -> dict[str, Any]:
    entry = rtu(dev_id, "", unit_id, **kw)
    del entry["baudrate"]
    return {**entry, "protocol": "modbus_rtu_tcp", "host": "127.0.0.1", "port": port}


class Harness(CollectorHarness):
    """The collector for one protocol, with recording sinks and client factories that count."""

    def __init__(self, tmp_path: Path, devices: list[dict[str, Any]]) -> None:
        super().__init__(tmp_path, devices)
        self.clients: list[str] = []
        protocols = {d["protocol"] for d in devices}
        assert len(protocols) == 1
        protocol = protocols.pop()
        factories = {"modbus_rtu": self._serial, "modbus_rtu_tcp": self._rtu_tcp}
        ctx = self.context(tmp_path, ManualClock(), factories)
        self.collector = COLLECTORS[protocol](list(self.site.placements()), ctx)

    def _serial(self, port: str, **kw: Any) -> AsyncModbusSerialClient:
        self.clients.append(port)
        return AsyncModbusSerialClient(port, **kw)

    def _rtu_tcp(self, host: str, *, port: int, **kw: Any) -> AsyncModbusTcpClient:
        self.clients.append(f"{host}:{port}")
        return AsyncModbusTcpClient(host, port=port, framer=FramerType.RTU, **kw)


def test_the_rtu_collectors_are_registered() -> None:
    assert COLLECTORS["modbus_rtu"] is ModbusRtuCollector
    assert COLLECTORS["modbus_rtu_tcp"] is ModbusRtuTcpCollector


async def test_a_dead_slave_goes_offline_while_the_live_one_on_the_line_keeps_polling(
    tmp_path: Path, pty_pair: tuple[str, str]
) -> None:
    gw, dev = pty_pair
    async with RtuSim({1: unit_context()}, serial_port=dev) as sim:  # unit 2: not there
        sim.set_words(1, RegisterType.HOLDING, 0, [556, 0xFF85])  # 55.6 %RH, -12.3 °C
        h = Harness(
            tmp_path,
            [
                rtu("live", gw, 1, timeout=2.0, frame_gap=0.002),
                rtu("dead", gw, 2, timeout=0.2, retries=1, poll_interval=0.1),
            ],
        )
        async with h.running():
            await wait_until(lambda: h.status("dead").misses >= 1, "the dead slave misses")
            before = h.status("live").polls
            await wait_until(lambda: "device_offline" in h.events.kinds("dead"), "dead offline")
            await wait_until(lambda: h.status("dead").misses >= 6, "dead keeps missing")
            after = h.status("live").polls
    assert after >= before + 3, (before, after)
    live = h.status("live")
    assert live.online and live.errors == 0
    assert {(r.sensor, r.value, r.raw) for r in h.sink.submitted} == {
        ("live-humidity", 55.6, "0x022C"),
        ("live-temperature", -12.3, "0xFF85"),
    }
    dead = h.status("dead")
    assert not dead.online and dead.polls == 0
    assert dead.last_error is not None
    assert f"of unit 2 at {gw}: no response within 0.2 s × 2" in dead.last_error
    assert h.events.kinds("dead") == ["device_offline"] and h.events.kinds("live") == []
    assert h.clients == [gw], "one serial client for the whole line"
    assert sim.requests[2] >= 2 * dead.errors - 2, "every retry went out on the wire"


async def test_garbling_and_busy_slaves_never_stall_the_line(
    tmp_path: Path, pty_pair: tuple[str, str]
) -> None:
    gw, dev = pty_pair
    units = {u: unit_context() for u in (1, 2, 3, 4)}
    sim = RtuSim(units, serial_port=dev, garble=frozenset({2}), busy={3: 1, 4: 2})
    async with sim:
        for u in units:
            sim.set(u, "rs485_th_int16", "temperature", 18.5)
            sim.set(u, "rs485_th_int16", "humidity", 50.0)
        h = Harness(
            tmp_path,
            [
                rtu("live", gw, 1, timeout=2.0),
                rtu("garbled", gw, 2, timeout=0.2, retries=1, poll_interval=0.1),
                rtu("busy", gw, 3, busy_retries=2, poll_interval=0.1),
                rtu("flaky", gw, 4, busy_retries=2),  # busy to every second request
            ],
        )
        async with h.running():
            await wait_until(
                lambda: all(h.status(d).misses >= 1 for d in ("garbled", "busy")), "misses"
            )
            before = {d: h.status(d).polls for d in ("live", "flaky")}
            await wait_until(
                lambda: all(h.status(d).misses >= 5 for d in ("garbled", "busy")),
                "the bad slaves keep missing",
            )
            after = {d: h.status(d).polls for d in ("live", "flaky")}
        busy_requests, busy_errors = sim.requests[3], h.status("busy").errors
    for d in ("live", "flaky"):
        assert after[d] >= before[d] + 3, (d, before, after)
        st = h.status(d)
        assert st.online and st.errors == 0, st
    assert {r.value for r in h.sink.of("flaky-temperature")} == {18.5}
    garbled = h.status("garbled")
    assert not garbled.online and garbled.polls == 0
    assert garbled.last_error is not None and "no response within 0.2 s × 2" in garbled.last_error
    busy = h.status("busy")
    assert not busy.online and busy.polls == 0
    assert busy.last_error is not None
    assert busy.last_error.endswith("exception response 6 (server device busy) (3 tries)")
    # busy_retries=2: each poll asks three times, then gives the line back
    assert 3 * busy_errors <= busy_requests <= 3 * busy_errors + 3
    assert h.events.kinds("garbled") == ["device_offline"]
    assert h.events.kinds("busy") == ["device_offline"]
    assert h.clients == [gw]


async def test_rtu_over_tcp_through_a_serial_server(tmp_path: Path) -> None:
    async with RtuSim({1: unit_context(), 3: unit_context()}) as sim:  # unit 2: dead
        sim.set(1, "rs485_th_int16", "temperature", 21.4)
        sim.set(1, "rs485_th_int16", "humidity", 48.2)
        sim.set(3, "rs485_th_int16", "temperature", -3.5)
        sim.set(3, "rs485_th_int16", "humidity", 80.0)
        h = Harness(
            tmp_path,
            [
                rtu_tcp("a", sim.port, 1),
                rtu_tcp("dead", sim.port, 2, timeout=0.2, retries=1),
                rtu_tcp("c", sim.port, 3),
            ],
        )
        async with h.running():
            await wait_until(lambda: "device_offline" in h.events.kinds("dead"), "dead offline")
            before = {d: h.status(d).polls for d in ("a", "c")}
            await wait_until(lambda: h.status("dead").misses >= 4, "dead keeps missing")
            after = {d: h.status(d).polls for d in ("a", "c")}
    for d in ("a", "c"):
        assert after[d] >= before[d] + 2, (d, before, after)
        assert h.status(d).online and h.status(d).errors == 0
    latest = {r.sensor: r.value for r in h.sink.submitted}
    assert latest == {
        "a-temperature": 21.4,
        "a-humidity": 48.2,
        "c-temperature": -3.5,
        "c-humidity": 80.0,
    }
    dead = h.status("dead")
    assert dead.last_error is not None
    assert f"of unit 2 at 127.0.0.1:{sim.port}: no response" in dead.last_error
    assert h.clients == [f"127.0.0.1:{sim.port}"], "one socket for the serial server"


def _badge(sim: RtuSim, unit: int, number: int, counter: int) -> None:
    sim.set_words(unit, RegisterType.INPUT, 0, [number >> 16, number & 0xFFFF, counter])


async def test_an_access_controller_reports_doors_and_badge_events(tmp_path: Path) -> None:
    ctx = unit_context()
    ctx.setValues(FC[RegisterType.DISCRETE], 0, [1, 0])  # door 1 contact closed, door 2 open
    async with RtuSim({1: ctx}) as sim:
        _badge(sim, 1, 12345678, 17)  # swiped before archwatch started: no event
        doors = [{"id": f"ac-{p}", "point": p} for p in ("door_1", "door_2")]
        entry = {**rtu_tcp("ac", sim.port, 1, profile="modbus_access_controller"), "sensors": doors}
        h = Harness(tmp_path, [entry])
        async with h.running():
            await wait_until(lambda: h.status("ac").polls >= 2, "the controller is polled")
            assert h.events.kinds("ac") == []
            _badge(sim, 1, 87654321, 18)
            await wait_until(lambda: len(h.events.kinds("ac")) == 1, "one swipe, one event")
            _badge(sim, 1, 1000, 21)  # three swipes between two polls
            await wait_until(lambda: len(h.events.kinds("ac")) == 2, "a second event")
            _badge(sim, 1, 1001, 65535)
            await wait_until(lambda: len(h.events.kinds("ac")) == 3, "a third event")
            _badge(sim, 1, 1002, 1)  # the counter wrapped
            await wait_until(lambda: len(h.events.kinds("ac")) == 4, "a fourth event")
    texts = [e.text for e in h.events.events]
    assert texts == [
        "badge 87654321 (counter 18)",
        "badge 1000 (counter 21); 3 swipes since the last poll, only the last badge is known",
        "badge 1001 (counter 65535); 65514 swipes since the last poll, only the last badge is "
        "known",
        "badge 1002 (counter 1); 2 swipes since the last poll, only the last badge is known",
    ]
    first = h.events.events[0]
    assert (first.kind, first.severity, first.title) == (
        "badge",
        "info",
        "Device ac badge 87654321",
    )
    assert first.tags == {"site": "test-site", "building": "main", "room": "r101", "device": "ac"}
    assert {(r.sensor, r.value) for r in h.sink.submitted} == {
        ("ac-door_1", 0.0),
        ("ac-door_2", 1.0),
    }


@pytest.mark.parametrize(
    ("baudrate", "bytesize", "parity", "stopbits", "seconds"),
    [
        (9600, 8, "N", 1, 3.5 * 10 / 9600),  # 3.65 ms
        (9600, 8, "E", 1, 3.5 * 11 / 9600),  # a parity bit makes 11-bit characters
        (9600, 8, "N", 2, 3.5 * 11 / 9600),
        (1200, 7, "O", 2, 3.5 * 11 / 1200),
        (19200, 8, "N", 1, 3.5 * 10 / 19200),  # the last rate still computed: 1.82 ms
        (38400, 8, "N", 1, 0.00175),  # above 19200 the spec fixes 1.75 ms
        (115200, 8, "E", 1, 0.00175),
    ],
)
def test_rtu_silence_is_three_and_a_half_characters(
    baudrate: int, bytesize: int, parity: str, stopbits: int, seconds: float
) -> None:
    assert rtu_silence(baudrate, bytesize, parity, stopbits) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("line", "silence"),
    [
        # RTU's own silence, 3.5 characters of 10 bits at 2400 baud (8N1): 14.6 ms.
        ({"baudrate": 2400}, 3.5 * 10 / 2400),
        # 8N1 at 4800 baud, 10 bits a character: 7.3 ms.
        ({"baudrate": 4800}, 3.5 * 10 / 4800),
        # A configured gap comes on top of the 1.75 ms kept above 19200 baud.
        ({"baudrate": 38400, "frame_gap": 0.05}, 0.05 + 0.00175),
    ],
)
async def test_the_line_keeps_rtu_silence_and_the_frame_gap_between_transactions(
    tmp_path: Path, pty_pair: tuple[str, str], line: dict[str, Any], silence: float
) -> None:
    gw, dev = pty_pair
    async with RtuSim({1: unit_context(), 2: unit_context()}, serial_port=dev) as sim:
        h = Harness(
            tmp_path,
            [
                rtu("a", gw, 1, poll_interval=0.05, **line),
                # The line's gap applies to every unit on it.
                rtu(
                    "b",
                    gw,
                    2,
                    poll_interval=0.05,
                    **{k: v for k, v in line.items() if k != "frame_gap"},
                ),
            ],
        )
        async with h.running():
            await wait_until(lambda: sim.requests[1] + sim.requests[2] >= 12, "a dozen frames")
    # Every request reaches the device at least the silence after the previous answer left it.
    gaps = [
        t - prev_t
        for (prev_kind, prev_t), (kind, t) in itertools.pairwise(sim.frames)
        if prev_kind == "response" and kind == "request"
    ]
    assert len(gaps) >= 10
    assert min(gaps) >= silence, gaps


def test_devices_on_one_serial_port_must_agree_on_its_settings(tmp_path: Path) -> None:
    site_devices = [rtu("a", "/dev/ttyUSB0", 1), rtu("b", "/dev/ttyUSB0", 2, baudrate=9600)]
    with pytest.raises(ConfigError) as exc_info:
        make_site(tmp_path, site_devices)
    (problem,) = exc_info.value.problems
    assert "site.yaml:24: buildings[0].rooms[0].devices[1].port: " in problem
    assert (
        "serial line /dev/ttyUSB0 9600 8N1 contradicts /dev/ttyUSB0 19200 8N1 of device 'a'"
        in problem
    )


# -- archwatch probe --------------------------------------------------------------------------


def _float_words_abcd(value: float) -> list[int]:
    a, b = struct.unpack(">HH", struct.pack(">f", value))
    return [a, b]


async def _archwatch(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gateway.cli import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _probe_site(tmp_path: Path, devices: list[dict[str, Any]]) -> Path:
    make_site(tmp_path, devices)
    return tmp_path / "site.yaml"


async def test_probe_shows_a_wrong_word_order_beside_the_right_one(
    tmp_path: Path, pty_pair: tuple[str, str]
) -> None:
    gw, dev = pty_pair
    # The transmitter sends big-endian words (ABCD): 23.45 °C and 61.8 %RH.
    t_words, h_words = _float_words_abcd(23.45), _float_words_abcd(61.8)
    sensors = [{"id": "t", "point": "temperature"}]
    site = _probe_site(
        tmp_path,
        [
            {**rtu("right", gw, 5, profile="float32_th_abcd"), "sensors": sensors},
            {
                **rtu("wrong", gw, 5, profile="float32_th_cdab"),
                "sensors": [{"id": "t2", "point": "temperature"}],
            },
        ],
    )
    async with RtuSim({5: unit_context()}, serial_port=dev) as sim:
        sim.set_words(5, RegisterType.HOLDING, 0, t_words + h_words)
        right = await _archwatch("probe", str(site), "right")
        wrong = await _archwatch("probe", str(site), "wrong")
    assert right[0] == 0 and wrong[0] == 0, (right, wrong)
    t_hex = f"0x{t_words[0]:04X} 0x{t_words[1]:04X}"
    h_hex = f"0x{h_words[0]:04X} 0x{h_words[1]:04X}"
    # swapping the words gives a nonsense value: the same raw hex prints beside it
    (t_swapped,) = struct.unpack(">f", struct.pack(">HH", t_words[1], t_words[0]))
    (h_swapped,) = struct.unpack(">f", struct.pack(">HH", h_words[1], h_words[0]))
    rows = {"right": _rows(right[1]), "wrong": _rows(wrong[1])}
    assert rows["right"]["temperature"] == [
        "temperature",
        "t",
        "holding",
        "0",
        "float32",
        "ABCD",
        *t_hex.split(),
        "23.45",
    ]
    assert rows["right"]["humidity"][-3:] == [*h_hex.split(), "61.8"]
    assert rows["wrong"]["temperature"] == [
        "temperature",
        "t2",
        "holding",
        "0",
        "float32",
        "CDAB",
        *t_hex.split(),
        f"{t_swapped:.6g}",
    ]
    assert rows["wrong"]["humidity"][-3:] == [*h_hex.split(), f"{h_swapped:.6g}"]
    assert f"{t_swapped:.6g}" != "23.45"
    assert "device right [modbus_rtu] unit 5, profile float32_th_abcd" in right[1]


def _rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("point"))
    return {line.split()[0]: line.split() for line in lines[header + 1 :] if line.strip()}


async def test_probe_flags_a_fault_code(tmp_path: Path, pty_pair: tuple[str, str]) -> None:
    gw, dev = pty_pair
    site = _probe_site(tmp_path, [rtu("th", gw, 1)])
    async with RtuSim({1: unit_context()}, serial_port=dev) as sim:
        sim.set_words(1, RegisterType.HOLDING, 0, [556, 0x7FFF])  # probe unplugged
        code, out, _ = await _archwatch("probe", str(site), "th")
    assert code == 0
    rows = _rows(out)
    assert rows["temperature"][-3:] == ["0x7FFF", "3276.7", "FAULT"]
    assert rows["humidity"][-2:] == ["0x022C", "55.6"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("silent unit", "device th cannot be reached: unit 9 does not answer"),
        ("missing port", "device th cannot be reached: cannot connect to"),
        ("refused serial server", "device th cannot be reached: cannot connect to 127.0.0.1:"),
        ("unknown device", "no device 'nope'"),
    ],
)
async def test_probe_exits_1_when_the_device_cannot_be_reached(
    tmp_path: Path, pty_pair: tuple[str, str], where: str, expected: str
) -> None:
    gw, dev = pty_pair
    port = str(tmp_path / "no-such-tty") if where == "missing port" else gw
    entry = rtu("th", port, 9, timeout=0.2)
    if where == "refused serial server":
        entry = rtu_tcp("th", free_port(), 9, timeout=0.2)  # nothing listens there
    site = _probe_site(tmp_path, [entry])
    async with RtuSim({1: unit_context()}, serial_port=dev):
        code, out, err = await _archwatch(
            "probe", str(site), "nope" if where == "unknown device" else "th"
        )
    assert code == 1, (out, err)
    assert expected in err
    assert "point" not in out, "no table for a device that was not read"
    # Only archwatch's own error line: not pymodbus's raw "Failed to connect [Errno ...]".
    assert [line for line in err.splitlines() if not line.startswith("error: ")] == []


def test_site_file_parses_rtu_entries(tmp_path: Path) -> None:
    doc = rtu("th", "/dev/ttyUSB0", 3, parity="E", stopbits=2, bytesize=7, frame_gap=0.01)
    site = make_site(tmp_path, [doc, rtu_tcp("s", 4001, 4)])
    devices = {p.device.id: p.device for p in site.placements()}
    assert devices["th"].line == "/dev/ttyUSB0 19200 7E2"  # type: ignore[union-attr]
    assert devices["s"].line == "127.0.0.1:4001 (RTU)"  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="parity"):
        make_site(tmp_path, [rtu("x", "/dev/ttyUSB0", 1, parity="X")])
