"""Exactly once on the write path, on the real stores.

``Store.present`` (which readings of a batch a store already holds) on both back ends, and the
forwarder through a link that lets InfluxDB apply a write but loses its answer (a timeout or
a connection reset after the request was sent): every line reaches InfluxDB in exactly one
write request, counted by a recording proxy (InfluxDB overwrites duplicates silently, so its
own count cannot show them). A negative control whose store never admits holding anything
(the old blind re-send) must show the duplicate lines, or the test could not see them.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

import gateway.store.influx as influx_module
from gateway.clock import SystemClock
from gateway.forwarder import Forwarder
from gateway.metrics import Metrics
from gateway.reading import Reading, SensorKind
from gateway.spool import Spool
from gateway.store.base import Store, StoreError
from gateway.store.influx import InfluxStore
from gateway.store.influx_wire import http_error
from tests.factories import S, make_reading
from tests.fault_proxy import Direction, FaultProxy, Mode
from tests.recording_proxy import RecordingProxy
from tests.servers import InfluxServer, free_port

BASE = make_reading(ts_ns=1_767_225_600 * S + 123_456_789)  # nanosecond digits on purpose
STORE_TIMEOUT_S = 1.0


def series(n: int, *, sensor: str = "t1", start_ns: int = BASE.ts_ns) -> list[Reading]:
    return [
        replace(BASE, sensor=sensor, value=20 + i / 100, ts_ns=start_ns + i * S) for i in range(n)
    ]


# -- Store.present on both back ends -------------------------------------------------------


async def test_present_names_exactly_the_readings_held(store: Store) -> None:
    written = series(5)
    drill = replace(written[0], sensor="smoke-1", kind=SensorKind.SMOKE, value=1.0, drill_id="d7")
    outdoor = replace(written[1], sensor="out-t", room="outdoor", storage_class="")
    await store.write_readings([*written, drill, outdoor])

    assert await store.present([*written, drill, outdoor]) == {
        r.key for r in [*written, drill, outdoor]
    }
    twins = [
        replace(written[2], ts_ns=written[2].ts_ns + 1),  # one nanosecond later
        replace(written[3], value=written[3].value + 0.5),  # same key, another value
        replace(written[4], room="r102"),  # same sensor and time, another series
        replace(written[0], drill_id="d7"),  # the drill's twin of a real reading
        replace(drill, drill_id=None),  # the real twin of a drill reading
        replace(written[0], sensor="t9"),  # never written
    ]
    # Only the reading itself counts: a twin of a held reading is not held.
    assert await store.present(twins) == set()
    assert await store.present([twins[0], written[2]]) == {written[2].key}
    assert await store.present([]) == set()


async def test_present_of_many_series_at_once(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of hundreds of sensors: asked in several bounded requests, answered whole."""
    monkeypatch.setattr(influx_module, "MAX_PRESENT_STATEMENTS", 7)
    readings = [r for k in range(60) for r in series(3, sensor=f"s{k:03}")]
    stored = readings[::2]
    await store.write_readings(stored)
    assert await store.present(readings) == {r.key for r in stored}


async def test_present_says_so_when_influxdb_cannot_answer() -> None:
    store = InfluxStore(
        f"http://127.0.0.1:{free_port()}", token=None, org="-", bucket="x", database="x"
    )
    try:
        with pytest.raises(StoreError) as caught:
            await store.present(series(3))
        assert caught.value.retryable
    finally:
        await store.close()


# -- the forwarder when InfluxDB applies a write and its answer is lost --------------------


class BlindStore(InfluxStore):
    """The negative control: a store that never admits holding anything, so every unknown
    outcome is re-sent whole (the at-least-once behaviour)."""

    async def present(self, readings: Sequence[Reading]) -> set[tuple[str, int, str]]:
        await super().present(readings)  # fails like the real question while InfluxDB is away
        return set()


@pytest.fixture
def link(recording: RecordingProxy) -> Iterator[FaultProxy]:
    """A fault proxy in front of the recording proxy: gateway -> faults -> records -> InfluxDB."""
    port = int(recording.url.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port, max_lifetime_s=300) as proxy:
        yield proxy


def _count(influx: InfluxServer) -> int:
    results = influx.query("SELECT count(value) FROM readings")["results"]
    assert isinstance(results, list)
    found = results[0].get("series")
    return int(found[0]["values"][0][1]) if found else 0


async def _wait_for_writes(proxy: RecordingProxy, n: int) -> None:
    async with asyncio.timeout(60):
        while len(proxy.writes) < n:
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("fault", "blind"),
    [
        pytest.param("timeout", False, id="answer-lost-timeout"),
        pytest.param("reset", False, id="answer-lost-connection-reset"),
        pytest.param("timeout", True, id="negative-control-blind-resend"),
    ],
)
async def test_a_write_whose_answer_is_lost_is_not_sent_twice(
    tmp_path: Path,
    influx: InfluxServer,
    recording: RecordingProxy,
    link: FaultProxy,
    fault: str,
    blind: bool,
) -> None:
    clock = SystemClock()
    metrics = Metrics()
    spool = Spool(tmp_path / "spool.sqlite", clock=clock)
    kind = BlindStore if blind else InfluxStore
    store = kind(
        link.url("http"),
        token=None,
        org="-",
        bucket=influx.database,
        database=influx.database,
        timeout_s=STORE_TIMEOUT_S,
    )
    forwarder = Forwarder(
        spool,
        store,
        clock=clock,
        metrics=metrics,
        batch_size=100,
        backoff_initial=0.2,
        backoff_max=0.5,
    )
    base_ns = (time.time_ns() - 3_600 * S) // S * S
    readings = [r for k in range(3) for r in series(100, sensor=f"t{k}", start_ns=base_ns)]
    await spool.append(readings)
    try:
        assert await forwarder.drain_once() == 100  # the link works
        # InfluxDB gets the next write and answers, but the answer never reaches the gateway.
        await link.aset_mode(Mode.HALF_OPEN, direction=Direction.TO_CLIENT)
        drain = asyncio.create_task(forwarder.drain_once())
        await _wait_for_writes(recording, 2)  # applied at InfluxDB (recorded after its 204)
        assert recording.writes[1].status == 204
        if fault == "reset":
            await link.aset_mode(Mode.RESET)  # RST on the connection waiting for its answer
        # The gateway gives up on the answer; its questions fail too while the fault lasts.
        await asyncio.sleep(2.5 * STORE_TIMEOUT_S)
        assert not drain.done()
        await link.aset_mode(Mode.PASS)
        assert await drain == 100
        while await forwarder.drain_once():
            pass
        assert await spool.depth() == 0
        assert await spool.in_flight(1000) == []
    finally:
        await store.close()
        await spool.close()

    assert metrics.total("store_write_errors") >= 1  # the gateway did see the fault
    sent = collections.Counter(line for w in recording.writes for line in w.lines)
    assert len(sent) == len(readings)
    assert _count(influx) == len(readings)  # every reading stored
    twice = [line for line, n in sent.items() if n > 1]
    if blind:
        # The control: re-sending blindly shows as the whole batch sent twice.
        assert len(twice) == 100, "the blind re-send sent nothing twice: the test is blind"
        return
    assert twice == [], f"{len(twice)} lines sent twice"
    assert metrics.total("readings_reconciled") == 100


# -- which failures may have been applied --------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "maybe_applied"),
    [
        (400, '{"error":"partial write: field type conflict dropped=1"}', True),
        (400, '{"error":"unable to parse"}', True),
        (401, '{"error":"authorization failed"}', False),
        (403, "", False),
        (404, '{"error":"database not found: \\"archwatch\\""}', False),
        (413, "", False),
        (429, "", False),
        (500, '{"error":"timeout"}', True),
        (502, "", True),
        (503, "", True),
    ],
)
def test_which_http_answers_may_have_applied_the_write(
    status: int, body: str, maybe_applied: bool
) -> None:
    error = http_error(
        status, httpx.Headers(), body, action="writing", database="archwatch", token=None, now_ns=0
    )
    assert error.maybe_applied is maybe_applied


async def test_a_refused_connection_wrote_nothing_and_a_silent_server_may_have() -> None:
    refused = InfluxStore(
        f"http://127.0.0.1:{free_port()}", token=None, org="-", bucket="x", database="x"
    )
    with FaultProxy("127.0.0.1", free_port(), max_lifetime_s=60) as silent_link:
        silent_link.set_mode(Mode.STALL)  # accepts the request, never answers
        silent = InfluxStore(
            silent_link.url("http"), token=None, org="-", bucket="x", database="x", timeout_s=0.5
        )
        try:
            with pytest.raises(StoreError) as never_sent:
                await refused.write_readings(series(2))
            with pytest.raises(StoreError) as unanswered:
                await silent.write_readings(series(2))
        finally:
            await refused.close()
            await silent.close()
    assert never_sent.value.maybe_applied is False
    assert unanswered.value.maybe_applied is True
    assert unanswered.value.retryable
