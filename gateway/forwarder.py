"""The forwarder: moves spooled readings to the store, in time order, losing none and
sending none twice.

A batch is marked sent only after the store accepted it whole. While the store is down the
same batch is retried with exponential backoff (or after the server's ``Retry-After``), never
skipping ahead, and readings keep piling up safely in the spool. A batch the store refuses as
bad (HTTP 400) is bisected until the offending reading(s) are isolated; those go to the dead
letter table, everything else is stored.

Exactly once on the write path. Before a batch is sent its rows are marked in flight in the
spool (durably). Whenever the outcome of a write is unknown -- rows found in flight when the
forwarder starts (the last process died mid-write, or after the store accepted the batch and
before the spool recorded it), a timeout, a connection lost after the request went out, a
5xx, a partial write (400) -- the batch is never sent again blindly: the forwarder asks the
store which of its readings it already holds (``Store.present``), marks those sent and sends
only the rest. If the store cannot answer that question it waits with the same backoff and
asks again; it neither drops nor re-sends. A write that certainly had no effect (connection
refused, 401/403/404/429, refused before sending) is retried as it is. The one assumption:
a write the store has not answered is settled at the store by the time the store answers the
later question (InfluxDB applies a write before it replies and the question comes after the
backoff wait); a store still applying a request it received before the client gave up on it
could apply it after that answer.

Logging follows state changes: an outage is logged once at WARNING when it starts, at DEBUG
while it lasts, and its end at INFO with how long it lasted and how many rows were queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gateway.clock import Clock
from gateway.metrics import Metrics
from gateway.spool import Spool, SpooledReading
from gateway.store.base import Store, StoreError

log = logging.getLogger(__name__)
# HTTP answers refusing the question "which of these readings do you hold?" for good (no
# read permission, no such database): asking again cannot help.
QUESTION_REFUSED = frozenset({401, 403, 404})

Sleep = Callable[[float], Awaitable[None]]


def _reason(exc: Exception) -> str:
    """The ``reason`` label of ``store_write_errors``."""
    if isinstance(exc, StoreError):
        if exc.bad_request:
            return "bad_request"
        return "retryable" if exc.retryable else "error"
    return "unexpected"


def _maybe_applied(exc: Exception) -> bool:
    """Whether a failed write may have taken effect at the store (unknown errors: yes)."""
    return exc.maybe_applied if isinstance(exc, StoreError) else True


class _CheckFailed(Exception):
    """Asking the store which readings it holds failed; ``cause`` is why."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass
class _Progress:
    """What part of one batch is done: ids marked sent or dead-lettered, readings stored."""

    settled: set[int] = field(default_factory=set)
    stored: int = 0


class Forwarder:
    """Drains the spool into the store until cancelled (``run``)."""

    def __init__(
        self,
        spool: Spool,
        store: Store,
        *,
        clock: Clock,
        metrics: Metrics,
        batch_size: int = 5000,
        warn_rows: int = 1_000_000,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        poll_interval: float = 0.5,
        purge_interval: float = 3600.0,
    ) -> None:
        self._spool = spool
        self._store = store
        self._clock = clock
        self._metrics = metrics
        self._batch_size = batch_size
        self._warn_rows = warn_rows
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._purge_interval = purge_interval
        self._outage_since: float | None = None
        self._check_refused_logged = False
        self._spool_warned = False
        self._last_purge: float | None = None
        metrics.describe("readings_stored", "counter", "Readings the store accepted")
        metrics.describe("store_write_errors", "counter", "Failed store write requests")
        metrics.describe("spool_depth", "gauge", "Readings waiting in the spool")
        metrics.describe("dead_lettered", "counter", "Readings the store refused as bad")
        metrics.describe(
            "store_check_errors",
            "counter",
            "Failed queries asking the store which readings of an unconfirmed write it holds",
        )
        metrics.describe(
            "store_check_refused",
            "counter",
            "Unconfirmed writes sent again because the store refuses to say what it holds",
        )
        metrics.describe(
            "readings_reconciled",
            "counter",
            "Readings of an unconfirmed write found already stored, so not sent again",
        )

    @property
    def in_outage(self) -> bool:
        return self._outage_since is not None

    async def run(self) -> None:
        """Forward until cancelled; sleeps ``poll_interval`` whenever the spool is empty."""
        broken = False
        while True:
            try:
                await self._maybe_purge()
                sent = await self._drain()
            except Exception:  # the spool itself failed (disk): keep trying, say so once
                if not broken:
                    log.exception("forwarder cannot read the spool; retrying")
                broken = True
                sent = None
            else:
                if broken:
                    log.info("forwarder reads the spool again")
                broken = False
            if sent is None:
                await self._sleep(self._poll_interval)

    async def drain_once(self) -> int:
        """Forward one batch, retrying through store outages; returns readings stored (those
        found already stored after an unconfirmed write included)."""
        return await self._drain() or 0

    async def _drain(self) -> int | None:
        """``drain_once``, but None when the spool was empty (time to wait for more)."""
        await self._update_depth()
        # Rows left in flight (by a process killed mid-write, or a cancelled drain) come
        # first, and the store is asked about them before anything is sent.
        batch = await self._spool.in_flight(self._batch_size)
        unknown = bool(batch)
        if not batch:
            batch = await self._spool.next_batch(self._batch_size)
            if not batch:
                return None
            await self._spool.mark_in_flight(p.id for p in batch)
        progress = _Progress()
        attempt = 0
        while True:
            # Only what is still unsent: a bisection may have settled some halves already.
            pending = [p for p in batch if p.id not in progress.settled]
            try:
                if unknown:
                    pending = await self._reconcile(pending, progress)
                    unknown = False
                if pending:
                    await self._write(pending, progress)
            except _CheckFailed as failed:  # the store cannot say: ask again, send nothing
                exc = failed.cause
                attempt += 1
                unknown = True
                self._metrics.inc("store_check_errors", reason=_reason(exc))
                self._note_outage(exc, attempt, "store check")
                await self._sleep(self._delay(exc, attempt))
                await self._update_depth()
            except Exception as exc:  # anything but a refused reading: retry the same batch
                attempt += 1
                # Sent, maybe applied: ask the store before anything is sent again.
                unknown = _maybe_applied(exc)
                self._metrics.inc("store_write_errors", reason=_reason(exc))
                self._note_outage(exc, attempt, "store write")
                await self._sleep(self._delay(exc, attempt))
                await self._update_depth()
            else:
                if self._outage_since is not None:
                    await self._note_recovery(progress.stored)
                await self._update_depth()
                return progress.stored

    # -- writing -----------------------------------------------------------------------------

    async def _reconcile(
        self, batch: list[SpooledReading], progress: _Progress
    ) -> list[SpooledReading]:
        """Mark sent what the store already holds of ``batch``; return the rest, to send.

        Raises _CheckFailed when the store cannot answer: then nothing may be sent.
        """
        try:
            held = await self._store.present([p.reading for p in batch])
        except StoreError as exc:
            if exc.status not in QUESTION_REFUSED:
                raise _CheckFailed(exc) from exc
            # The store refuses the question itself (a write-only token, say): waiting
            # would stop delivery for good, so send again; InfluxDB overwrites the same
            # points, so the data stays right, only the line goes over the wire twice.
            self._metrics.inc("store_check_refused")
            if not self._check_refused_logged:
                self._check_refused_logged = True
                log.error(
                    "the store refuses to say which readings it holds (%s); unconfirmed "
                    "writes are sent again, which it stores as the same points. Give the "
                    "token read access to the database to keep delivery exactly once",
                    exc,
                )
            return batch
        except Exception as exc:
            raise _CheckFailed(exc) from exc
        stored = [p for p in batch if p.reading.key in held]
        if stored:
            await self._spool.mark_sent(p.id for p in stored)
            progress.settled.update(p.id for p in stored)
            progress.stored += len(stored)
            self._metrics.inc("readings_stored", len(stored))
            self._metrics.inc("readings_reconciled", len(stored))
        # A write found applied is rare (a crash or a lost answer) and worth seeing; finding
        # nothing is the usual answer during an outage and would repeat on every retry.
        log.log(
            logging.INFO if stored else logging.DEBUG,
            "unconfirmed write of %d readings: the store already holds %d; sending %d",
            len(batch),
            len(stored),
            len(batch) - len(stored),
        )
        return [p for p in batch if p.reading.key not in held]

    async def _write(self, batch: list[SpooledReading], progress: _Progress) -> None:
        """Write ``batch`` in one request; on a bad request bisect it to find the bad ones."""
        try:
            await self._store.write_readings([p.reading for p in batch])
        except StoreError as exc:
            if not exc.bad_request:
                raise
            self._metrics.inc("store_write_errors", reason="bad_request")
            if exc.maybe_applied and len(batch) > 1:
                # A partial write (InfluxDB keeps the good points of a refused batch): settle
                # what was stored so that the halves below never carry it again.
                batch = await self._reconcile(batch, progress)
                if not batch:
                    return
            if len(batch) == 1:
                await self._dead_letter(batch[0], str(exc))
                progress.settled.add(batch[0].id)
                return
            half = len(batch) // 2
            await self._write(batch[:half], progress)
            await self._write(batch[half:], progress)
            return
        await self._spool.mark_sent(p.id for p in batch)
        progress.settled.update(p.id for p in batch)
        progress.stored += len(batch)
        self._metrics.inc("readings_stored", len(batch))

    async def _dead_letter(self, item: SpooledReading, reason: str) -> None:
        await self._spool.dead_letter([item.id], reason)
        self._metrics.inc("dead_lettered")
        r = item.reading
        # One line per refused reading is right here: each is a distinct, rare data problem.
        log.warning(
            "store refused reading of sensor %s at %s (value %r); moved to dead letter: %s",
            r.sensor,
            r.ts.isoformat(),
            r.value,
            reason,
        )

    # -- outage bookkeeping ------------------------------------------------------------------

    def _delay(self, exc: Exception, attempt: int) -> float:
        if isinstance(exc, StoreError) and exc.retry_after is not None:
            return max(0.0, exc.retry_after)
        # Capped exponent: after a day-long outage 2 ** attempt would overflow a float.
        delay: float = self._backoff_initial * 2 ** min(attempt - 1, 32)
        return min(self._backoff_max, delay)

    def _note_outage(self, exc: Exception, attempt: int, what: str) -> None:
        if self._outage_since is None:
            self._outage_since = self._clock.monotonic()
            log.warning(
                "%s failed (%s): %s; readings stay in the spool and are retried",
                what,
                _reason(exc),
                exc,
                exc_info=not isinstance(exc, StoreError),
            )
        else:
            log.debug("store still failing (attempt %d, %s): %s", attempt, what, exc)

    async def _note_recovery(self, stored: int) -> None:
        assert self._outage_since is not None
        lasted = self._clock.monotonic() - self._outage_since
        self._outage_since = None
        queued = stored + await self._spool.depth()
        log.info("store writes succeed again after %.1f s; %d readings were queued", lasted, queued)

    async def _update_depth(self) -> None:
        depth = await self._spool.depth()
        self._metrics.set("spool_depth", depth)
        if depth > self._warn_rows and not self._spool_warned:
            self._spool_warned = True
            log.warning(
                "spool holds %d unsent readings (more than %d): the store is not keeping up",
                depth,
                self._warn_rows,
            )
        elif depth <= self._warn_rows and self._spool_warned:
            self._spool_warned = False
            log.info("spool back to %d unsent readings", depth)

    async def _maybe_purge(self) -> None:
        now = self._clock.monotonic()
        if self._last_purge is None or now - self._last_purge >= self._purge_interval:
            self._last_purge = now
            purged = await self._spool.purge()
            if purged:
                log.debug("purged %d forwarded readings past the de-duplication window", purged)
