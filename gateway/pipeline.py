"""The pipeline: what collectors hand readings to (the ``ReadingSink``).

``submit`` validates, appends the valid readings to the spool and returns only once they are
durable, so a collector may acknowledge its source afterwards. Writes are group-committed: a
single writer task gathers every ``submit`` arriving within ``flush_interval`` (or until
``max_batch`` readings) into one spool transaction, because one fsync per MQTT message would
cap ingest at the disk's sync rate while one per group keeps up with hundreds a second.

Newly accepted readings (not duplicates) are then fed to subscribers such as the alert
engine; a slow subscriber loses readings (counted) rather than stalling ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from collectors.base import SubmitResult
from gateway.clock import Clock
from gateway.metrics import Metrics
from gateway.reading import Reading
from gateway.spool import Spool
from gateway.validation import DEFAULT_MAX_AGE_S, DEFAULT_MAX_FUTURE_S, RejectReason, validate

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    """One ``submit`` waiting for the writer: its valid readings and who waits for them."""

    readings: list[Reading]
    done: asyncio.Future[list[bool]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class _Subscriber:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[Reading] = asyncio.Queue(maxsize)
        self.dropping = False


class Pipeline:
    """Validation, group-committed spooling and fan-out of accepted readings."""

    def __init__(
        self,
        spool: Spool,
        *,
        clock: Clock,
        metrics: Metrics,
        known_sensors: set[str] | None = None,
        max_future_s: float = DEFAULT_MAX_FUTURE_S,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        flush_interval: float = 0.02,
        max_batch: int = 2000,
    ) -> None:
        self._spool = spool
        self._clock = clock
        self._metrics = metrics
        self._known = known_sensors
        self._max_future_s = max_future_s
        self._max_age_s = max_age_s
        self._flush_interval = flush_interval
        self._max_batch = max_batch
        self._queue: deque[_Pending] = deque()
        self._queued_readings = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._spool_failing = False
        # Current reject reason per sensor: logs follow changes, not every reading.
        self._reject_state: dict[str, RejectReason] = {}
        self._subscribers: list[_Subscriber] = []
        for name, kind, text in (
            ("readings_received", "counter", "Readings handed in by collectors"),
            ("readings_accepted", "counter", "Readings newly stored in the spool"),
            ("readings_duplicate", "counter", "Readings ignored as already spooled"),
            ("readings_rejected", "counter", "Readings refused by validation, by reason"),
            ("subscriber_dropped", "counter", "Accepted readings a full subscriber missed"),
        ):
            metrics.describe(name, kind, text)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="pipeline-writer")

    async def close(self) -> None:
        """Commit what was already submitted, then stop the writer. Does not close the spool."""
        self._closed = True
        if self._writer is None:
            return
        self._wake.set()
        self._full.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None

    # -- the sink ----------------------------------------------------------------------------

    async def submit(self, readings: Sequence[Reading]) -> SubmitResult:
        """Validate ``readings`` and spool the valid ones; returns once they are durable.

        Raises if the spool cannot write (the caller must then not acknowledge its source).
        """
        if self._closed:
            raise RuntimeError("pipeline is closed")
        self._metrics.inc("readings_received", len(readings))
        now = self._clock.now_ns()
        valid: list[Reading] = []
        for reading in readings:
            reason = validate(
                reading,
                now,
                max_future_s=self._max_future_s,
                max_age_s=self._max_age_s,
                known_sensors=self._known,
            )
            if reason is None:
                self._note_valid(reading)
                valid.append(reading)
            else:
                self._count_reject(reading, reason)
        result = SubmitResult(rejected=len(readings) - len(valid))
        if not valid:
            return result
        await self.start()
        pending = _Pending(valid)
        self._queue.append(pending)
        self._queued_readings += len(valid)
        self._wake.set()
        if self._queued_readings >= self._max_batch:
            self._full.set()
        # Shielded: a cancelled caller must not cancel the group's future under the writer.
        new = await asyncio.shield(pending.done)
        result.accepted = sum(new)
        result.duplicates = len(new) - result.accepted
        return result

    def reject(self, reading: Reading, reason: RejectReason) -> None:
        """Count a reading a collector refused itself (typically ``RejectReason.FAULT_CODE``)."""
        self._metrics.inc("readings_received")
        self._count_reject(reading, reason)

    def subscribe(self, maxsize: int = 10_000) -> asyncio.Queue[Reading]:
        """A queue of readings newly accepted from now on, each put after its spool commit.

        When the queue is full, readings for this subscriber are dropped and counted in
        ``subscriber_dropped``; ingest never waits for a subscriber.
        """
        sub = _Subscriber(maxsize)
        self._subscribers.append(sub)
        return sub.queue

    # -- validation bookkeeping --------------------------------------------------------------

    def _count_reject(self, reading: Reading, reason: RejectReason) -> None:
        self._metrics.inc("readings_rejected", reason=reason.value)
        if self._reject_state.get(reading.sensor) != reason:
            self._reject_state[reading.sensor] = reason
            log.warning(
                "sensor %s (device %s): readings rejected as %s, e.g. value %r%s at ts_ns %d",
                reading.sensor,
                reading.device,
                reason.value,
                reading.value,
                f" (raw {reading.raw})" if reading.raw is not None else "",
                reading.ts_ns,
            )

    def _note_valid(self, reading: Reading) -> None:
        reason = self._reject_state.pop(reading.sensor, None)
        if reason is not None:
            log.info(
                "sensor %s: valid readings again (were rejected as %s)", reading.sensor, reason
            )

    # -- the writer --------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            if not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                continue
            # Gather more submits for up to flush_interval, unless a full batch is already here.
            if not self._closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._flush_interval)
            group = self._take_group()
            await self._commit(group)

    def _take_group(self) -> list[_Pending]:
        """Whole submits, oldest first, up to ``max_batch`` readings (at least one submit)."""
        group: list[_Pending] = []
        count = 0
        while self._queue and (
            not group or count + len(self._queue[0].readings) <= self._max_batch
        ):
            item = self._queue.popleft()
            group.append(item)
            count += len(item.readings)
        self._queued_readings -= count
        if self._queued_readings < self._max_batch:
            self._full.clear()
        if not self._queue and not self._closed:
            self._wake.clear()
        return group

    async def _commit(self, group: list[_Pending]) -> None:
        readings = [r for item in group for r in item.readings]
        try:
            new = await self._spool.append_each(readings)
        except Exception as exc:
            if not self._spool_failing:
                log.exception("spool write failed; submitted readings are not acknowledged")
            self._spool_failing = True
            for item in group:
                if not item.done.done():
                    item.done.set_exception(exc)
                    # Retrieved here so an abandoned (cancelled) submit leaves no warning.
                    item.done.exception()
            return
        if self._spool_failing:
            log.info("spool writes succeed again")
            self._spool_failing = False
        accepted = sum(new)
        self._metrics.inc("readings_accepted", accepted)
        self._metrics.inc("readings_duplicate", len(new) - accepted)
        self._publish([r for r, is_new in zip(readings, new, strict=True) if is_new])
        start = 0
        for item in group:
            end = start + len(item.readings)
            if not item.done.done():
                item.done.set_result(new[start:end])
            start = end

    def _publish(self, readings: list[Reading]) -> None:
        for sub in self._subscribers:
            dropped = 0
            for reading in readings:
                try:
                    sub.queue.put_nowait(reading)
                except asyncio.QueueFull:
                    dropped += 1
            if dropped:
                self._metrics.inc("subscriber_dropped", dropped)
                if not sub.dropping:
                    log.warning("a reading subscriber is not keeping up; dropping its readings")
                sub.dropping = True
            elif readings and sub.dropping:
                log.info("a reading subscriber keeps up again")
                sub.dropping = False
