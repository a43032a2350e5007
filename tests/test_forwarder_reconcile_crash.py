"""A forwarder process killed with SIGKILL at a chosen point of a write, then restarted:
every reading stored, and every line in exactly one write request (counted by a recording
proxy in front of the real InfluxDB 1.8, which would overwrite a duplicate silently).

Kill points: right after the batch was marked in flight and before its request was sent;
right after InfluxDB accepted it (204) and before the spool recorded that; and from outside,
the instant the proxy has seen InfluxDB accept the request (the answer may or may not have
reached the process). The negative control restarts with a store that never admits holding
anything (a blind re-send): it must show the batch sent twice, or the test could not see it.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.clock import SystemClock
from gateway.forwarder import Forwarder
from gateway.metrics import Metrics
from gateway.reading import Reading
from gateway.spool import Spool
from gateway.store.influx import InfluxStore
from tests.factories import S, make_reading
from tests.recording_proxy import RecordingProxy
from tests.servers import InfluxServer
from tests.test_forwarder_reconcile import BlindStore

BATCH = 50
BATCHES = 6
KILL_BATCH = 2  # the third batch: two were settled normally before it

CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from pathlib import Path
    from gateway.clock import SystemClock
    from gateway.forwarder import Forwarder
    from gateway.metrics import Metrics
    from gateway.spool import Spool
    from gateway.store.influx import InfluxStore

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    async def main(path: str, url: str, db: str, batch: int, point: str, at: int) -> None:
        spool = Spool(Path(path), clock=SystemClock())
        store = InfluxStore(url, token=None, org="-", bucket=db, database=db)
        calls = {"write": 0, "mark": 0}
        write, mark_sent = store.write_readings, spool.mark_sent

        async def write_then(readings):
            if point == "before-send" and calls["write"] == at:
                die()  # marked in flight, nothing sent
            calls["write"] += 1
            await write(readings)

        async def mark_then(ids):
            if point == "after-accept" and calls["mark"] == at:
                die()  # InfluxDB said 204, the spool does not know
            calls["mark"] += 1
            return await mark_sent(ids)

        store.write_readings = write_then
        spool.mark_sent = mark_then
        forwarder = Forwarder(
            spool, store, clock=SystemClock(), metrics=Metrics(), batch_size=batch
        )
        while await forwarder.drain_once():
            await asyncio.sleep(0.2)  # batches apart, so the parent can aim between them
        print("drained", flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5],
                     int(sys.argv[6])))
    """
)


def _count(influx: InfluxServer) -> int:
    results = influx.query("SELECT count(value) FROM readings")["results"]
    assert isinstance(results, list)
    found = results[0].get("series")
    return int(found[0]["values"][0][1]) if found else 0


async def _fill(path: Path) -> list[Reading]:
    base_ns = (time.time_ns() - 3_600 * S) // S * S
    readings = [
        make_reading(sensor=f"t{k % 3}", value=20 + k / 100, ts_ns=base_ns + k * S)
        for k in range(BATCH * BATCHES)
    ]
    spool = Spool(path, clock=SystemClock())
    try:
        await spool.append(readings)
    finally:
        await spool.close()
    return readings


def _spawn(
    path: Path, influx: InfluxServer, proxy: RecordingProxy, point: str
) -> subprocess.Popen[str]:
    at = KILL_BATCH if point != "outside" else -1
    args = [str(path), proxy.url, influx.database, str(BATCH), point, str(at)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, text=True)


async def _crash(
    path: Path, influx: InfluxServer, proxy: RecordingProxy, point: str
) -> subprocess.CompletedProcess[str]:
    """Run the forwarder in a child until it is killed at ``point``."""
    child = _spawn(path, influx, proxy, point)
    if point == "outside":
        # Kill it the instant InfluxDB has accepted the third batch (the proxy records a write
        # after InfluxDB answered): the answer may be on its way, read, or being recorded.
        async with asyncio.timeout(60):
            while len(proxy.writes) < KILL_BATCH + 1:
                await asyncio.sleep(0.001)
        child.send_signal(signal.SIGKILL)
    out, _ = await asyncio.to_thread(child.communicate, timeout=120)
    assert child.returncode == -signal.SIGKILL, f"the child was not killed: {out!r}"
    return subprocess.CompletedProcess(child.args, child.returncode, out, "")


async def _restart(path: Path, store: InfluxStore) -> int:
    spool = Spool(path, clock=SystemClock())
    forwarder = Forwarder(spool, store, clock=SystemClock(), metrics=Metrics(), batch_size=BATCH)
    try:
        total = 0
        while n := await forwarder.drain_once():
            total += n
        assert await spool.depth() == 0
        assert await spool.in_flight(10_000) == []
        return total
    finally:
        await spool.close()
        await store.close()


@pytest.mark.parametrize("point", ["before-send", "after-accept", "outside"])
async def test_sigkill_at_any_point_of_a_write_sends_every_line_exactly_once(
    tmp_path: Path, influx: InfluxServer, recording: RecordingProxy, point: str
) -> None:
    path = tmp_path / "spool.sqlite"
    readings = await _fill(path)
    await _crash(path, influx, recording, point)
    sent_before = len(recording.writes)
    store = InfluxStore(
        recording.url, token=None, org="-", bucket=influx.database, database=influx.database
    )
    await _restart(path, store)

    assert _count(influx) == len(readings), "readings lost"
    sent = collections.Counter(line for w in recording.writes for line in w.lines)
    assert len(sent) == len(readings)
    twice = [line for line, n in sent.items() if n > 1]
    assert twice == [], f"{len(twice)} lines sent twice ({sent_before} writes before the kill)"
    if point == "after-accept":
        # InfluxDB had the killed batch: the restart found it there and did not send it.
        assert sent_before == KILL_BATCH + 1
        assert len(recording.writes) == BATCHES


async def test_negative_control_a_blind_restart_sends_the_accepted_batch_twice(
    tmp_path: Path, influx: InfluxServer, recording: RecordingProxy
) -> None:
    path = tmp_path / "spool.sqlite"
    readings = await _fill(path)
    await _crash(path, influx, recording, "after-accept")
    store = BlindStore(
        recording.url, token=None, org="-", bucket=influx.database, database=influx.database
    )
    await _restart(path, store)

    assert _count(influx) == len(readings)  # InfluxDB hides the duplicate...
    sent = collections.Counter(line for w in recording.writes for line in w.lines)
    twice = [line for line, n in sent.items() if n > 1]
    # ...the proxy does not: the batch accepted as the process died went out again.
    assert len(twice) == BATCH, "the blind restart sent nothing twice: the test is blind"
