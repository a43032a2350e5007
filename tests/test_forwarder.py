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
    """A failure that certainly wrote nothing (connection refused, 429): retried as it is."""
    return StoreError(message, retryable=True, retry_after=retry_after, maybe_applied=False)


def lost_answer(message: str = "no answer within 10 s") -> StoreError:
    """A failure after the request went out: the store may have applied it."""
    return StoreError(message, retryable=True)


class FakeStore:
    """A Store that keeps readings in a list and fails on command.

    ``script``: errors to raise on the next write calls, in order (None = behave normally).
    ``down``: while set, every write fails as an outage. ``bad``: keys of readings the store
    refuses; a request containing one fails whole with a bad request, like InfluxDB's 400
    (with ``partial_writes``, like InfluxDB 1.8 it keeps the good readings of that request).
    ``lose_answers``: the next that many writes are applied, then fail as if the answer was
    lost (timeout, reset). ``checks_down``: while set, ``present`` cannot answer.
    ``checks_refused``: an HTTP status with which ``present`` is refused for good (403: a
    write-only token).
    """

    def __init__(self) -> None:
        self.stored: list[Reading] = []
        self.requests: list[list[Reading]] = []
        self.checks: list[list[Reading]] = []
        self.script: list[StoreError | None] = []
        self.down = False
        self.checks_down = False
        self.checks_refused: int | None = None
        self.bad: set[tuple[str, int, str]] = set()
        self.partial_writes = False
        self.lose_answers = 0

    async def write_readings(self, readings: Sequence[Reading]) -> None:
        self.requests.append(list(readings))
        if self.script:
            error = self.script.pop(0)
            if error is not None:
                raise error
        if self.down:
            raise outage()
        if any(r.key in self.bad for r in readings):
            if self.partial_writes:
                self.stored.extend(r for r in readings if r.key not in self.bad)
            raise StoreError(
                "HTTP 400: partial write: field type conflict", retryable=False, bad_request=True
            )
        self.stored.extend(readings)
        if self.lose_answers:
            self.lose_answers -= 1
            raise lost_answer()

    async def present(self, readings: Sequence[Reading]) -> set[tuple[str, int, str]]:
        self.checks.append(list(readings))
        if self.checks_down or self.down:
            raise lost_answer("query: connection refused")
        if self.checks_refused is not None:
            raise StoreError(
                f"query failed: HTTP {self.checks_refused}: forbidden",
                retryable=True,
                maybe_applied=False,
                status=self.checks_refused,
            )
        held = set(self.stored)
        return {r.key for r in readings if r in held}

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


# -- exactly once: writes whose outcome is unknown ----------------------------------------


async def test_a_write_applied_whose_answer_was_lost_is_not_sent_again(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    readings = series(50)
    await spool.append(readings)
    store.lose_answers = 1  # applied, then a timeout: the forwarder cannot know which
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)

    assert await forwarder.drain_once() == 50
    assert store.requests == [readings]  # sent once, never again
    assert store.stored == readings
    assert store.checks == [readings]  # asked before anything could be re-sent
    assert await spool.depth() == 0
    assert await spool.in_flight(100) == []
    assert metrics.get("readings_stored") == 50
    assert metrics.get("readings_reconciled") == 50
    assert sleep.calls == [0.5]


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_store_that_refuses_the_question_gets_the_batch_again_rather_than_never(
    spool: Spool,
    store: FakeStore,
    clock: ManualClock,
    metrics: Metrics,
    sleep: FakeSleep,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A write-only token may not ask what InfluxDB holds: waiting for an answer would stop
    delivery for good, so the unconfirmed batch is sent again (stored as the same points)."""
    readings = series(30)
    await spool.append(readings)
    store.lose_answers = 1
    store.checks_refused = status
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)

    assert await forwarder.drain_once() == 30
    assert store.requests == [readings, readings]
    assert await spool.depth() == 0
    assert metrics.get("store_check_refused") == 1
    assert metrics.get("readings_stored") == 30
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "Give the token read access" in errors[0].getMessage()


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(lost_answer(), id="timeout"),
        pytest.param(StoreError("HTTP 500: internal error", retryable=True), id="http-500"),
        pytest.param(RuntimeError("unexpected"), id="unknown-exception"),
    ],
)
async def test_an_unknown_outcome_is_checked_and_only_the_missing_readings_are_sent(
    spool: Spool,
    store: FakeStore,
    clock: ManualClock,
    metrics: Metrics,
    sleep: FakeSleep,
    error: Exception,
) -> None:
    readings = series(20)
    await spool.append(readings)
    store.stored = readings[:5]  # say a proxy passed on part of the request before failing

    async def fail_first(rs: Sequence[Reading]) -> None:
        store.write_readings = original  # type: ignore[method-assign]
        store.requests.append(list(rs))
        raise error

    original = store.write_readings
    store.write_readings = fail_first  # type: ignore[method-assign]
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)

    assert await forwarder.drain_once() == 20
    assert store.requests == [readings, readings[5:]]
    assert store.stored == readings  # each reading once
    assert metrics.get("readings_reconciled") == 5


async def test_while_the_store_cannot_say_what_it_holds_nothing_is_sent(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    readings = series(10)
    await spool.append(readings)
    store.lose_answers = 1
    store.checks_down = True

    async def recover(n: int) -> None:
        if n == 4:
            store.checks_down = False

    sleep.hook = recover
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)

    assert await forwarder.drain_once() == 10
    assert store.requests == [readings]  # no blind re-send while the answer was unknown
    assert store.stored == readings
    assert len(store.checks) == 4  # three failed questions, then the answer
    assert sleep.calls == [0.5, 1.0, 2.0, 4.0]  # the same backoff as an outage
    assert metrics.get("store_check_errors", reason="retryable") == 3
    assert await spool.dead_letter_count() == 0


async def test_a_write_that_certainly_failed_is_sent_again_without_asking(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    readings = series(10)
    await spool.append(readings)
    store.script = [outage("HTTP 429", retry_after=1.0), outage()]
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)

    assert await forwarder.drain_once() == 10
    assert store.requests == [readings] * 3
    assert store.checks == []
    assert store.stored == readings


async def test_readings_left_in_flight_by_a_dead_process_are_checked_before_sending(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    """The previous process marked a batch in flight and died: this one sends only what the
    store does not hold, then carries on with the rest of the spool."""
    readings = series(30)
    await spool.append(readings)
    dead_batch = await spool.next_batch(10)
    assert await spool.mark_in_flight(p.id for p in dead_batch) == 10
    store.stored = readings[:6]  # the store applied part of it (or all, or none)
    forwarder = make_forwarder(spool, store, clock, metrics, sleep, batch_size=10)

    assert await drain(forwarder) == 30
    assert store.checks == [readings[:10]]  # only the batch in flight is asked about
    assert store.requests == [readings[6:10], readings[10:20], readings[20:30]]
    assert store.stored == readings
    assert sleep.calls == []


async def test_a_spool_failure_after_the_store_accepted_does_not_send_again(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    """The store accepted the batch, then recording it in the spool failed (disk full)."""
    readings = series(10)
    await spool.append(readings)
    mark_sent = spool.mark_sent

    async def fail_once(ids: Any) -> int:
        spool.mark_sent = mark_sent  # type: ignore[method-assign]
        raise OSError("disk full")

    spool.mark_sent = fail_once  # type: ignore[method-assign]
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)

    assert await forwarder.drain_once() == 10
    assert store.requests == [readings]
    assert store.stored == readings
    assert await spool.depth() == 0


async def test_a_partial_write_keeps_the_good_readings_and_sends_none_twice(
    spool: Spool, store: FakeStore, clock: ManualClock, metrics: Metrics, sleep: FakeSleep
) -> None:
    """InfluxDB 1.8 answers a field type conflict with 400 "partial write" after storing the
    other points of the request: bisecting blindly would send those again."""
    readings = series(100)
    store.bad = {readings[37].key, readings[80].key}
    store.partial_writes = True
    await spool.append(readings)
    forwarder = make_forwarder(spool, store, clock, metrics, sleep)

    assert await forwarder.drain_once() == 98
    sent = [r.key for request in store.requests for r in request]
    good = [r for i, r in enumerate(readings) if i not in (37, 80)]
    assert sorted(store.stored, key=lambda r: r.ts_ns) == good
    assert len(store.stored) == 98  # none stored (sent) twice
    assert all(sent.count(r.key) == 1 for r in good)
    assert await spool.dead_letter_count() == 2
    assert await spool.depth() == 0
    assert metrics.get("dead_lettered") == 2
