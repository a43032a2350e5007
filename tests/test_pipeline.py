"""The pipeline: validate, group-commit to the spool, feed subscribers."""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from collectors.base import ReadingSink, SubmitResult
from gateway.clock import ManualClock
from gateway.datadir import DataDir
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.reading import Reading, SensorKind
from gateway.spool import Spool
from gateway.validation import RejectReason
from tests.factories import S, make_reading

LOGGER = "gateway.pipeline"
BASE = make_reading(ts_ns=ManualClock().now_ns() - 60 * S)


def series(n: int, *, sensor: str = "t1", start_ns: int = BASE.ts_ns) -> list[Reading]:
    return [
        replace(BASE, sensor=sensor, value=20 + i / 100, ts_ns=start_ns + i * 1000)
        for i in range(n)
    ]


class CountingSpool(Spool):
    """The real spool, counting its write transactions and their sizes."""

    def __init__(self, path: Path, *, clock: ManualClock) -> None:
        super().__init__(path, clock=clock)
        self.transactions: list[int] = []

    async def append_each(self, readings: Sequence[Reading]) -> list[bool]:
        self.transactions.append(len(readings))
        return await super().append_each(readings)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def spool(data_dir: Path, clock: ManualClock) -> AsyncIterator[CountingSpool]:
    s = CountingSpool(DataDir(data_dir).spool, clock=clock)
    yield s
    await s.close()


@pytest.fixture
async def pipeline(
    spool: CountingSpool, clock: ManualClock, metrics: Metrics
) -> AsyncIterator[Pipeline]:
    p = Pipeline(spool, clock=clock, metrics=metrics)
    await p.start()
    yield p
    await p.close()


def spooled_rows(data_dir: Path) -> int:
    """Rows committed to the spool file, seen by an independent connection."""
    with sqlite3.connect(DataDir(data_dir).spool) as db:
        count: int = db.execute("SELECT count(*) FROM spool").fetchone()[0]
    return count


def test_pipeline_is_a_reading_sink(pipeline: Pipeline) -> None:
    sink: ReadingSink = pipeline
    assert sink is pipeline


async def test_submit_returns_after_readings_are_committed(
    pipeline: Pipeline, data_dir: Path
) -> None:
    result = await pipeline.submit(series(5))
    assert result == SubmitResult(accepted=5, duplicates=0, rejected=0)
    assert spooled_rows(data_dir) == 5


async def test_concurrent_submits_share_few_transactions(
    pipeline: Pipeline, spool: CountingSpool, data_dir: Path, metrics: Metrics
) -> None:
    """Hundreds of MQTT messages, each acknowledged only when durable, in a few fsyncs."""
    messages = [[r] for r in series(300)]
    results = await asyncio.gather(*(pipeline.submit(m) for m in messages))
    assert all(r.accepted == 1 for r in results)
    assert spooled_rows(data_dir) == 300
    assert sum(spool.transactions) == 300
    assert len(spool.transactions) <= 5
    assert metrics.get("readings_accepted") == 300


async def test_a_group_never_exceeds_max_batch(
    spool: CountingSpool, clock: ManualClock, metrics: Metrics, data_dir: Path
) -> None:
    pipeline = Pipeline(spool, clock=clock, metrics=metrics, max_batch=250)
    await pipeline.start()
    try:
        messages = [series(100, start_ns=BASE.ts_ns + k * S) for k in range(20)]
        await asyncio.gather(*(pipeline.submit(m) for m in messages))
    finally:
        await pipeline.close()
    assert spooled_rows(data_dir) == 2000
    assert max(spool.transactions) <= 250
    assert len(spool.transactions) >= 8


async def test_submits_arriving_apart_are_committed_apart(
    pipeline: Pipeline, spool: CountingSpool
) -> None:
    """Group commit must not hold a lone message back waiting for company."""
    await pipeline.submit(series(1))
    await pipeline.submit(series(1, start_ns=BASE.ts_ns + S))
    assert spool.transactions == [1, 1]


async def test_duplicates_are_counted_not_stored_twice(
    pipeline: Pipeline, metrics: Metrics, data_dir: Path
) -> None:
    readings = series(4)
    await pipeline.submit(readings)
    result = await pipeline.submit([*readings[:3], *series(2, start_ns=BASE.ts_ns + S)])
    assert result == SubmitResult(accepted=2, duplicates=3, rejected=0)
    assert spooled_rows(data_dir) == 6
    assert metrics.get("readings_duplicate") == 3


async def test_invalid_readings_are_rejected_by_reason(
    pipeline: Pipeline, metrics: Metrics, clock: ManualClock, data_dir: Path
) -> None:
    now = clock.now_ns()
    readings = [
        replace(BASE, value=math.nan),
        replace(BASE, sensor="t2", value=math.inf, ts_ns=BASE.ts_ns + 1),
        replace(BASE, sensor="h1", kind=SensorKind.HUMIDITY, value=120.0),
        replace(BASE, sensor="d1", kind=SensorKind.DOOR, value=2.0),
        replace(BASE, ts_ns=now + 3600 * S),
        replace(BASE, ts_ns=now - 31 * 86_400 * S),
        *series(3, sensor="ok"),
    ]
    result = await pipeline.submit(readings)
    assert result == SubmitResult(accepted=3, duplicates=0, rejected=6)
    assert spooled_rows(data_dir) == 3
    assert metrics.by_label("readings_rejected", "reason") == {
        "not_a_number": 2,
        "out_of_range": 2,
        "future_timestamp": 1,
        "too_old": 1,
    }
    assert metrics.get("readings_received") == 9


async def test_unknown_sensors_are_rejected_when_the_site_is_known(
    spool: CountingSpool, clock: ManualClock, metrics: Metrics
) -> None:
    pipeline = Pipeline(spool, clock=clock, metrics=metrics, known_sensors={"t1"})
    try:
        result = await pipeline.submit([*series(2), *series(2, sensor="rogue")])
    finally:
        await pipeline.close()
    assert result == SubmitResult(accepted=2, duplicates=0, rejected=2)
    assert metrics.get("readings_rejected", reason="unknown_sensor") == 2


async def test_a_collectors_fault_code_is_counted(pipeline: Pipeline, metrics: Metrics) -> None:
    pipeline.reject(replace(BASE, value=-3276.8, raw="0x8000"), RejectReason.FAULT_CODE)
    assert metrics.get("readings_rejected", reason="fault_code") == 1
    assert metrics.get("readings_received") == 1


async def test_rejects_are_logged_once_per_state_change(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    def logged(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]

    ts = iter(range(BASE.ts_ns, BASE.ts_ns + 10_000))
    for _ in range(20):  # a sensor stuck on NaN for 20 polls
        await pipeline.submit([replace(BASE, value=math.nan, ts_ns=next(ts))])
    assert len(logged(logging.WARNING)) == 1
    assert "t1" in logged(logging.WARNING)[0]
    assert "not_a_number" in logged(logging.WARNING)[0]

    for _ in range(5):  # then stuck at a fault code
        pipeline.reject(
            replace(BASE, value=-3276.8, raw="0x8000", ts_ns=next(ts)), RejectReason.FAULT_CODE
        )
    assert len(logged(logging.WARNING)) == 2
    assert "0x8000" in logged(logging.WARNING)[1]

    await pipeline.submit([replace(BASE, ts_ns=next(ts))])  # healthy again
    await pipeline.submit([replace(BASE, ts_ns=next(ts))])
    assert len(logged(logging.INFO)) == 1

    await pipeline.submit([replace(BASE, value=math.nan, ts_ns=next(ts))])
    assert len(logged(logging.WARNING)) == 3

    # Another sensor's problem is its own state.
    await pipeline.submit([replace(BASE, sensor="t9", value=math.nan, ts_ns=next(ts))])
    assert len(logged(logging.WARNING)) == 4


async def test_subscribers_get_only_newly_accepted_readings(pipeline: Pipeline) -> None:
    alerts = pipeline.subscribe()
    ledger = pipeline.subscribe()
    a, b, c = series(3)
    await pipeline.submit([a, replace(b, value=math.nan)])
    await pipeline.submit([a, b, c])  # a is a duplicate now
    for queue in (alerts, ledger):
        got = [queue.get_nowait() for _ in range(queue.qsize())]
        assert got == [a, b, c]


async def test_subscriber_sees_readings_only_after_they_are_durable(
    pipeline: Pipeline, data_dir: Path
) -> None:
    queue = pipeline.subscribe()
    task = asyncio.create_task(pipeline.submit(series(3)))
    first = await asyncio.wait_for(queue.get(), 60)
    assert first == series(1)[0]
    assert spooled_rows(data_dir) == 3
    assert (await task).accepted == 3


async def test_a_full_subscriber_drops_and_counts_without_blocking_ingest(
    pipeline: Pipeline, metrics: Metrics
) -> None:
    slow = pipeline.subscribe(maxsize=2)
    fast = pipeline.subscribe()
    readings = series(10)
    result = await pipeline.submit(readings)
    assert result.accepted == 10
    assert [slow.get_nowait() for _ in range(slow.qsize())] == readings[:2]
    assert fast.qsize() == 10
    assert metrics.get("subscriber_dropped") == 8


async def test_submit_fails_when_the_spool_cannot_write(
    pipeline: Pipeline, spool: CountingSpool
) -> None:
    """The collector must not acknowledge: submit raises instead of pretending."""
    await spool.close()
    with pytest.raises(RuntimeError):
        await pipeline.submit(series(1))


async def test_close_commits_what_was_already_submitted(
    spool: CountingSpool, clock: ManualClock, metrics: Metrics, data_dir: Path
) -> None:
    pipeline = Pipeline(spool, clock=clock, metrics=metrics, flush_interval=5.0)
    await pipeline.start()
    tasks = [
        asyncio.create_task(pipeline.submit(series(1, start_ns=BASE.ts_ns + k))) for k in range(10)
    ]
    await asyncio.sleep(0)  # let them queue
    await pipeline.close()
    assert [r.accepted for r in await asyncio.gather(*tasks)] == [1] * 10
    assert spooled_rows(data_dir) == 10
    with pytest.raises(RuntimeError):
        await pipeline.submit(series(1))


async def test_counts_add_up(pipeline: Pipeline, metrics: Metrics) -> None:
    readings = series(10)
    await pipeline.submit([*readings[:6], replace(BASE, value=math.nan, ts_ns=BASE.ts_ns + 1)])
    await pipeline.submit(readings)
    pipeline.reject(replace(BASE, ts_ns=BASE.ts_ns + 2), RejectReason.FAULT_CODE)
    received = metrics.get("readings_received")
    assert received == 18
    assert received == (
        metrics.get("readings_accepted")
        + metrics.get("readings_duplicate")
        + metrics.total("readings_rejected")
    )
