"""Writes system and alert events to the store's ``events`` measurement.

Events must not block ingest nor vanish in a store outage: they queue in memory (bounded,
oldest dropped first with a count, since the audit log in the state database is the record
of truth) and a background task writes them in batches with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from gateway.metrics import Metrics
from gateway.reading import Event
from gateway.store.base import Store, StoreError

log = logging.getLogger(__name__)


class EventWriter:
    """An ``EventSink`` that batches events into the store."""

    def __init__(self, store: Store, metrics: Metrics, *, max_queued: int = 10_000) -> None:
        self._store = store
        self._metrics = metrics
        self._queue: deque[Event] = deque(maxlen=max_queued)
        self._wake = asyncio.Event()
        self._failing = False

    async def emit(self, event: Event) -> None:
        if len(self._queue) == self._queue.maxlen:
            self._metrics.inc("events_dropped")
        self._queue.append(event)
        self._metrics.inc("events_emitted", kind=event.kind)
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def flush(self) -> bool:
        """Write what is queued; True when the queue is empty afterwards."""
        while self._queue:
            batch = list(self._queue)[:500]
            try:
                await self._store.write_events(batch)
            except StoreError as exc:
                if not self._failing:
                    log.warning("events not written yet (%s); kept in memory", exc)
                    self._failing = True
                if not exc.retryable:
                    self._metrics.inc("events_dropped", len(batch))
                    for _ in batch:
                        self._queue.popleft()
                    continue
                return False
            for _ in batch:
                self._queue.popleft()
            if self._failing:
                log.info("events are being written again")
                self._failing = False
        return True

    async def run(self) -> None:
        backoff = 0.5
        while True:
            self._wake.clear()
            if await self.flush():
                backoff = 0.5
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=backoff)
                backoff = min(backoff * 2, 30.0)
