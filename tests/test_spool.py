"""The spool: durable on return, survives SIGKILL, de-duplicates, keeps time order."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.datadir import DataDir
from gateway.reading import Reading, SensorKind
from gateway.spool import Spool
from tests.factories import S, make_reading

BASE = make_reading(ts_ns=1_767_225_600 * S)


def series(
    n: int, *, sensor: str = "t1", start_ns: int = BASE.ts_ns, step_ns: int = S
) -> list[Reading]:
    return [
        replace(BASE, sensor=sensor, value=20.0 + i / 100, ts_ns=start_ns + i * step_ns)
        for i in range(n)
    ]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def spool(data_dir: Path, clock: ManualClock) -> AsyncIterator[Spool]:
    s = Spool(DataDir(data_dir).spool, clock=clock)
    yield s
    await s.close()


async def test_appended_readings_survive_reopen_unchanged(
    data_dir: Path, clock: ManualClock
) -> None:
    path = DataDir(data_dir).spool
    drill = replace(BASE, sensor="smoke-1", kind=SensorKind.SMOKE, value=1.0, drill_id="drill-7")
    readings = [*series(3), drill]
    first = Spool(path, clock=clock)
    assert await first.append(readings) == (4, 0)
    await first.close()

    again = Spool(path, clock=clock)
    try:
        assert await again.depth() == 4
        batch = await again.next_batch(10)
        assert [b.reading for b in batch] == sorted(readings, key=lambda r: r.ts_ns)
        assert next(b.reading for b in batch if b.reading.sensor == "smoke-1").drill_id == "drill-7"
    finally:
        await again.close()


async def test_duplicates_are_ignored_within_a_batch_and_across_batches(spool: Spool) -> None:
    readings = series(5)
    assert await spool.append([*readings, readings[0]]) == (5, 1)
    # A redelivered message: same sensor and source timestamp, even with another value.
    assert await spool.append(
        [replace(readings[2], value=99.0), *series(2, start_ns=BASE.ts_ns + 100 * S)]
    ) == (2, 1)
    assert await spool.depth() == 7
    stored = {b.reading.ts_ns: b.reading.value for b in await spool.next_batch(100)}
    assert stored[readings[2].ts_ns] == readings[2].value


async def test_same_instant_of_another_sensor_or_a_drill_is_not_a_duplicate(spool: Spool) -> None:
    r = BASE
    others = [replace(r, sensor="h1", kind=SensorKind.HUMIDITY), replace(r, drill_id="drill-1")]
    assert await spool.append([r, *others]) == (3, 0)


async def test_append_each_tells_which_readings_were_new(spool: Spool) -> None:
    a, b = series(2)
    await spool.append([a])
    assert await spool.append_each([a, b, b]) == [False, True, False]


async def test_forwarded_readings_are_still_deduplicated_then_purged(
    spool: Spool, clock: ManualClock
) -> None:
    readings = series(10)
    await spool.append(readings)
    batch = await spool.next_batch(100)
    assert await spool.mark_sent(b.id for b in batch) == 10
    assert await spool.depth() == 0
    assert await spool.next_batch(100) == []

    # A broker redelivers the whole lot a day later: nothing is queued again.
    clock.advance(24 * 3600)
    assert await spool.append(readings) == (0, 10)
    assert await spool.purge() == 0

    # The window (48 h by default) counts from when the rows were forwarded.
    clock.advance(24 * 3600 - 1)
    assert await spool.purge() == 0
    assert await spool.append(readings[:1]) == (0, 1)
    clock.advance(2)
    assert await spool.purge() == 10
    assert await spool.append(readings[:1]) == (1, 0)
    assert await spool.depth() == 1


async def test_purge_keeps_unsent_readings_however_old(spool: Spool, clock: ManualClock) -> None:
    await spool.append(series(3))
    clock.advance(30 * 86_400)
    assert await spool.purge() == 0
    assert await spool.depth() == 3


async def test_dedup_window_is_configurable(data_dir: Path, clock: ManualClock) -> None:
    spool = Spool(DataDir(data_dir).spool, clock=clock, dedup_window_s=60)
    try:
        await spool.append(series(1))
        await spool.mark_sent(b.id for b in await spool.next_batch(10))
        clock.advance(61)
        assert await spool.purge() == 1
        assert await spool.append(series(1)) == (1, 0)
    finally:
        await spool.close()


async def test_next_batch_is_in_source_time_order_ties_by_arrival(spool: Spool) -> None:
    late_device = series(3, sensor="t2", start_ns=BASE.ts_ns - 10 * S)  # buffered, older
    await spool.append(series(3, sensor="t1"))
    await spool.append(late_device)
    tie_a = replace(BASE, sensor="zz", ts_ns=BASE.ts_ns + 5 * S)
    tie_b = replace(BASE, sensor="aa", ts_ns=BASE.ts_ns + 5 * S)
    await spool.append([tie_a])
    await spool.append([tie_b])

    batch = await spool.next_batch(100)
    got = [(b.reading.sensor, b.reading.ts_ns) for b in batch]
    assert got == sorted(got, key=lambda k: k[1])  # time order across sensors
    assert got[:3] == [("t2", r.ts_ns) for r in late_device]
    assert got[-2:] == [("zz", tie_a.ts_ns), ("aa", tie_b.ts_ns)]  # arrival breaks the tie

    first_two = await spool.next_batch(2)
    assert [b.reading for b in first_two] == late_device[:2]
    await spool.mark_sent([first_two[0].id])
    assert [b.reading for b in await spool.next_batch(2)] == late_device[1:3]


async def test_dead_letter_moves_readings_out_of_the_queue_and_keeps_them(
    data_dir: Path, spool: Spool
) -> None:
    await spool.append(series(4))
    batch = await spool.next_batch(10)
    assert await spool.dead_letter([batch[1].id], "HTTP 400: field type conflict") == 1
    assert await spool.depth() == 3
    assert await spool.dead_letter_count() == 1
    assert batch[1].id not in {b.id for b in await spool.next_batch(10)}

    with sqlite3.connect(DataDir(data_dir).spool) as db:
        reason, body = db.execute("SELECT reason, body FROM dead_letter").fetchone()
    assert reason == "HTTP 400: field type conflict"
    assert Reading.from_json(json.loads(body)) == batch[1].reading


async def test_mark_sent_twice_does_not_corrupt_the_depth(spool: Spool) -> None:
    await spool.append(series(3))
    ids = [b.id for b in await spool.next_batch(10)]
    assert await spool.mark_sent(ids[:2]) == 2
    assert await spool.mark_sent(ids[:2]) == 0
    assert await spool.dead_letter(ids[:1], "late") == 0  # already forwarded: stays
    assert await spool.depth() == 1


async def test_in_flight_marks_survive_reopen_and_clear_when_settled(
    data_dir: Path, clock: ManualClock
) -> None:
    """What a process was writing when it died is still known to the next one."""
    path = DataDir(data_dir).spool
    readings = series(6)
    first = Spool(path, clock=clock)
    await first.append(readings)
    batch = await first.next_batch(4)
    assert await first.mark_in_flight(b.id for b in batch) == 4
    assert await first.mark_in_flight(b.id for b in batch) == 0  # already marked
    await first.close()

    again = Spool(path, clock=clock)
    try:
        in_flight = await again.in_flight(100)
        assert [b.reading for b in in_flight] == readings[:4]
        assert [b.reading for b in await again.in_flight(2)] == readings[:2]  # oldest first
        assert await again.depth() == 6  # still unsent: in flight is not stored
        await again.mark_sent([in_flight[0].id, in_flight[1].id])
        await again.dead_letter([in_flight[2].id], "HTTP 400")
        assert [b.reading for b in await again.in_flight(100)] == readings[3:4]
        # A sent or dead-lettered reading cannot be marked in flight.
        assert await again.mark_in_flight([in_flight[0].id, in_flight[2].id]) == 0
    finally:
        await again.close()


async def test_spool_uses_wal(data_dir: Path, spool: Spool) -> None:
    await spool.append(series(1))
    with sqlite3.connect(DataDir(data_dir).spool) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_concurrent_callers_are_serialised(spool: Spool) -> None:
    batches = [series(20, start_ns=BASE.ts_ns + k * 1000 * S) for k in range(10)]
    results = await asyncio.gather(*(spool.append(b) for b in batches), spool.depth())
    assert results[:10] == [(20, 0)] * 10
    assert await spool.depth() == 200


# -- crash safety --------------------------------------------------------------------------

BATCH = 50
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from gateway.clock import SystemClock
    from gateway.reading import Reading, SensorKind
    from gateway.spool import Spool

    async def main(path: str, first: int) -> None:
        spool = Spool(Path(path), clock=SystemClock())
        n = first
        while True:
            batch = [
                Reading("hq", "b1", "r1", "d1", f"s{j}", SensorKind.HUMIDITY, "paper",
                        50.0, n, None)
                for j in range(BATCH)
            ]
            await spool.append(batch)
            print(n, flush=True)  # only after append returned: the batch is durable
            n += 1

    BATCH = int(sys.argv[3])
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


def test_sigkill_at_any_point_loses_no_committed_batch_and_leaves_no_partial_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.sqlite"
    rng = random.Random(20240601)
    acknowledged: set[int] = set()
    for round_no in range(6):
        first = round_no * 1_000_000
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(first), str(BATCH)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        # Let it commit a few batches, then kill it at a random instant, usually mid-append.
        for _ in range(rng.randint(1, 15)):
            line = child.stdout.readline()
            assert line, "the child process died on its own"
            acknowledged.add(int(line))
        time.sleep(rng.uniform(0, 0.03))
        child.send_signal(signal.SIGKILL)
        acknowledged.update(int(x) for x in child.stdout.read().split())
        child.stdout.close()
        assert child.wait() == -signal.SIGKILL

        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            per_batch = dict(
                db.execute("SELECT ts_ns, count(*) FROM spool GROUP BY ts_ns").fetchall()
            )
        assert acknowledged <= set(per_batch), "an acknowledged batch was lost"
        assert set(per_batch.values()) == {BATCH}, "a batch was stored in part"

        async def reopen() -> int:
            spool = Spool(path, clock=ManualClock())
            try:
                return await spool.depth()
            finally:
                await spool.close()

        assert asyncio.run(reopen()) == sum(per_batch.values())
