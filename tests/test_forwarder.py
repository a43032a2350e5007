"""The forwarder: spool → store in time order, through outages and refused readings.

The store here is an in-test fake that can be told to fail the way the real back ends report
failures (StoreError retryable / bad_request / retry_after); the real stores have their own
integration tests against a running InfluxDB.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.datadir import DataDir
from gateway.forwarder import Forwarder
from gateway.metrics import Metrics
from gateway.reading import Event, Reading
from gateway.spool import Spool
from gateway.store.base import Aggregate, ReadingFilter, SeriesPoint, StoreError
from tests.factories import S, make_reading

BASE = make_reading(ts_ns=1_767_225_600 * S)
LOGGER = "gateway.forwarder"


def series(n: int, *, start_ns: int = BASE.ts_ns, sensor: str = "t1") -> list[Reading]:
    return [
        replace(BASE, sensor=sensor, value=20 + i / 100, ts_ns=start_ns + i * S) for i in range(n)
    ]


def outage(message: str = "connection refused", retry_after: float | None = None) -> StoreError:
    return StoreError(message, retryable=True, retry_after=retry_after)


class FakeStore:
    """A Store that keeps readings in a list and fails on command.

    ``script``: errors to raise on the next write calls, in order (None = behave normally).
    ``down``: while set, every write fails as an outage. ``bad``: keys of readings the store
    refuses; a request containing one fails whole with a bad request, like InfluxDB's 400.
    """

    def __init__(self) -> None:
        self.stored: list[Reading] = []
        self.requests: list[list[Reading]] = []
        self.script: list[StoreError | None] = []
        self.down = False
        self.bad: set[tuple[str, int, str]] = set()

    async def write_readings(self, readings: Sequence[Reading]) -> None:
        self.requests.append(list(readings))
        if self.script:
            error = self.script.pop(0)
            if error is not None:
                raise error
        if self.down:
            raise outage()
        if any(r.key in self.bad for r in readings):
            raise StoreError(
                "HTTP 400: partial write: field type conflict", retryable=False, bad_request=True
            )
        self.stored.extend(readings)

    async def write_events(self, events: Sequence[Event]) -> None:
        raise NotImplementedError

    async def latest(self, flt: ReadingFilter) -> list[Reading]:
        raise NotImplementedError

    async def series(
        self,
        sensor: str,
        start_ns: int,
        end_ns: int,
        step_s: int,
        agg: Aggregate = Aggregate.MEAN,
        drill_id: str | None = None,
    ) -> list[SeriesPoint]:
        raise NotImplementedError

    async def raw(
        self, flt: ReadingFilter, start_ns: int, end_ns: int, limit: int = 10_000
    ) -> list[Reading]:
        raise NotImplementedError

    async def count(self, flt: ReadingFilter, start_ns: int, end_ns: int) -> int:
        raise NotImplementedError

    async def events(
        self, start_ns: int, end_ns: int, kind: str | None = None, limit: int = 10_000
    ) -> list[Event]:
        raise NotImplementedError

    async def ping(self) -> None:
        if self.down:
            raise outage()

    async def close(self) -> None:
        pass


class FakeSleep:
    """Records each requested delay and moves the manual clock by it instead of waiting."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls: list[float] = []
        self.hook: Callable[[int], Awaitable[None]] | None = None

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)
        if self.hook is not None:
            await self.hook(len(self.calls))
        await asyncio.sleep(0.001)  # let other tasks run, as a real sleep would


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def spool(data_dir: Path, clock: ManualClock) -> AsyncIterator[Spool]:
    s = Spool(DataDir(data_dir).spool, clock=clock)
    yield s
    await s.close()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def sleep(clock: ManualClock) -> FakeSleep:
    return FakeSleep(clock)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def make_forwarder(
    spool: Spool,
    store: FakeStore,
    clock: ManualClock,
    metrics: Metrics,
    sleep: FakeSleep,
    **kw: Any,
) -> Forwarder:
    return Forwarder(spool, store, clock=clock, metrics=metrics, sleep=sleep, **kw)


async def drain(forwarder: Forwarder) -> int:
    total = 0
    while n := await forwarder.drain_once():
        total += n
    return total


async def test_outage_then_recovery_keeps_order_and_loses_nothing(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    readings = series(250)
    shuffled = readings[:]
    random.Random(7).shuffle(shuffled)
    for i in range(0, 250, 25):  # arrivals out of time order, as from several devices
        await spool.append(shuffled[i : i + 25])
    late = series(30, start_ns=BASE.ts_ns + 1000 * S, sensor="h1")

    async def during_outage(n: int) -> None:
        if n == 2:  # readings keep arriving while the store is down
            await spool.append(late)
        if n == 5:
            store.down = False

    sleep.hook = during_outage
    store.down = True
    forwarder = make_forwarder(spool, store, clock, metrics, sleep, batch_size=100)

    assert await drain(forwarder) == 280
    assert store.stored == [*readings, *late]  # each once, in source time order
    assert await spool.depth() == 0
    # Every retry re-sent exactly the batch that had failed: the forwarder never skipped ahead.
    assert store.requests[:6] == [readings[:100]] * 6
    assert sleep.calls == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert metrics.get("store_write_errors", reason="retryable") == 5
    assert metrics.get("readings_stored") == 280
    assert metrics.get("spool_depth") == 0


async def test_retry_after_is_honoured_and_backoff_is_capped(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    await spool.append(series(3))
    store.script = [
        outage("HTTP 429 too many requests", retry_after=7.0),
        outage("HTTP 503", retry_after=None),
        *[outage() for _ in range(8)],
        outage("HTTP 503", retry_after=120.0),
    ]
    forwarder = make_forwarder(
        spool, store, clock, metrics, sleep, backoff_initial=0.5, backoff_max=30
    )
    assert await forwarder.drain_once() == 3
    assert sleep.calls == [7.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0, 120.0]


async def test_bad_request_is_bisected_to_dead_letter_only_the_bad_reading(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    readings = series(100)
    store.bad = {readings[37].key}
    await spool.append(readings)
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)

    assert await forwarder.drain_once() == 99
    assert store.stored == readings[:37] + readings[38:]
    assert await spool.dead_letter_count() == 1
    assert await spool.depth() == 0
    assert metrics.get("dead_lettered") == 1
    assert metrics.get("readings_stored") == 99
    assert sleep.calls == []  # a refused reading is not an outage: no waiting
    # Bisection, not one request per reading: about 2·log2(100) requests.
    assert len(store.requests) <= 2 * 7 + 1


async def test_two_bad_readings_in_one_batch_are_both_isolated(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    readings = series(64)
    store.bad = {readings[0].key, readings[50].key}
    await spool.append(readings)
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)
    assert await forwarder.drain_once() == 62
    assert sorted(store.stored, key=lambda r: r.ts_ns) == [
        r for i, r in enumerate(readings) if i not in (0, 50)
    ]
    assert await spool.dead_letter_count() == 2


async def test_outage_during_bisection_resends_only_what_is_still_unsent(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    readings = series(10)
    store.bad = {readings[7].key}
    # whole batch: 400; first half: ok; second half: the store goes down once.
    store.script = [None, None, outage()]
    await spool.append(readings)
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)

    assert await forwarder.drain_once() == 9
    assert store.stored == readings[:7] + readings[8:]  # nothing stored twice
    assert store.requests[3] == readings[5:]  # the retry left out the half already stored
    assert await spool.dead_letter_count() == 1


async def test_a_non_retryable_error_keeps_the_readings(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    """A 401 (wrong token) is not the data's fault: wait for an operator, never dead-letter."""
    await spool.append(series(5))
    store.script = [StoreError("HTTP 401 unauthorized", retryable=False)] * 3
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)
    assert await forwarder.drain_once() == 5
    assert await spool.dead_letter_count() == 0
    assert len(sleep.calls) == 3
    assert metrics.get("store_write_errors", reason="error") == 3


async def test_each_outage_is_logged_once_with_its_recovery(
    spool: Spool,
    store: FakeStore,
    clock: ManualClock,
    metrics: Metrics,
    sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    forwarder = make_forwarder(spool, store, clock, metrics, sleep, batch_size=100)
    await spool.append(series(250))
    store.script = [outage() for _ in range(5)]
    assert await forwarder.drain_once() == 100

    def records(level: int) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]

    assert len(records(logging.WARNING)) == 1
    assert len(records(logging.DEBUG)) == 4
    [recovered] = records(logging.INFO)
    assert "after 15.5 s" in recovered  # 0.5 + 1 + 2 + 4 + 8 seconds of backoff
    assert "250 readings were queued" in recovered

    await drain(forwarder)  # no outage: nothing more is logged
    assert len(records(logging.WARNING)) == 1
    assert len(records(logging.INFO)) == 1

    await spool.append(series(10, start_ns=BASE.ts_ns + 10_000 * S))
    store.script = [outage() for _ in range(20)]
    await drain(forwarder)
    assert len(records(logging.WARNING)) == 2  # a second outage is a new state change
    assert len(records(logging.INFO)) == 2
    assert len(records(logging.DEBUG)) == 4 + 19


async def test_large_spool_is_warned_about_once(
    spool: Spool,
    store: FakeStore,
    clock: ManualClock,
    metrics: Metrics,
    sleep: FakeSleep,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    forwarder = make_forwarder(spool, store, clock, metrics, sleep, batch_size=5, warn_rows=10)
    await spool.append(series(30))
    store.down = True

    async def recover(n: int) -> None:
        if n == 3:
            store.down = False

    sleep.hook = recover
    assert await drain(forwarder) == 30

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    spool_warnings = [m for m in warnings if "spool holds" in m]
    assert len(spool_warnings) == 1
    assert "30 unsent readings" in spool_warnings[0]
    assert any(
        "spool back to" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO
    )


async def test_run_forwards_until_cancelled_and_purges_old_rows(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    forwarder = make_forwarder(spool, store, clock, metrics, sleep, batch_size=50)
    task = asyncio.create_task(forwarder.run())
    try:
        await spool.append(series(120))
        await wait_for(lambda: len(store.stored) == 120)
        store.down = True
        await spool.append(series(5, start_ns=BASE.ts_ns + 500 * S))
        await wait_for(lambda: forwarder.in_outage)
        store.down = False
        await wait_for(lambda: len(store.stored) == 125)
        assert store.stored == sorted(store.stored, key=lambda r: r.ts_ns)
        assert await spool.depth() == 0
        # The idle loop's sleeps move the manual clock on; past the window the rows go.
        clock.advance(49 * 3600)
        await wait_for_async(lambda: _purged(spool))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def _purged(spool: Spool) -> bool:
    # Once purged, the same readings are new again.
    return await spool.append_each(series(1)) == [True]


async def wait_for(condition: Callable[[], bool]) -> None:
    async def check() -> bool:
        return condition()

    await wait_for_async(check)


async def wait_for_async(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``condition`` until it holds; a generous limit only guards against hanging."""
    async with asyncio.timeout(60):
        while True:
            if await condition():
                return
            await asyncio.sleep(0.01)
