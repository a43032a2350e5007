"""The store interface: every back end (InfluxDB, embedded SQLite) offers these calls.

Schema (README, "Storage schema"): measurement ``readings`` with field ``value`` and tags
site, building, room, device, sensor, kind, storage_class (+ drill_id on simulated
readings); measurement ``events`` with fields title, text and tags kind, severity and the
place (site, building, room, device, sensor, alert_id, drill_id) where known.

Exactly once on the write path: a write whose outcome is unknown (a timeout, a connection
reset after the request went out, a 5xx, a partial write) is never simply sent again. The
forwarder first asks ``present`` which of the batch's readings the store already holds and
sends only the others; ``StoreError.maybe_applied`` tells it when that question is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from gateway.reading import Event, Reading


class Aggregate(StrEnum):
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    COUNT = "count"
    LAST = "last"


class StoreError(Exception):
    """A write or query failed.

    ``retryable``: try the same batch again later (outage, 429, 5xx), after ``retry_after``
    seconds when the server said so. ``bad_request``: the server refused the data itself
    (HTTP 400); retrying cannot help, so the spool dead-letters it.

    ``maybe_applied`` (writes only): the store may have applied the write, in whole or in
    part, although it did not say so: a timeout or a connection lost after the request was
    sent, a 5xx, InfluxDB's "partial write" 400. True unless the request certainly never
    took effect (refused before sending, connection refused, 401/403/404/429), so an error
    raised by code that does not know is treated as the cautious case.

    ``status``: the HTTP status of the server's answer, when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        bad_request: bool = False,
        retry_after: float | None = None,
        maybe_applied: bool = True,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.bad_request = bad_request
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied
        self.status = status


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One step of an aggregated series; ``value`` is None where the step had no data."""

    ts_ns: int
    value: float | None


@dataclass(frozen=True, slots=True)
class ReadingFilter:
    """Which readings a query covers. Drill readings are excluded unless ``drill_id`` is set."""

    site: str | None = None
    building: str | None = None
    room: str | None = None
    device: str | None = None
    sensor: str | None = None
    kind: str | None = None
    drill_id: str | None = None


class Store(Protocol):
    """Where validated readings and events end up."""

    async def write_readings(self, readings: Sequence[Reading]) -> None:
        """Write one batch in one request; raise StoreError if it was not accepted whole."""
        ...

    async def write_events(self, events: Sequence[Event]) -> None: ...

    async def present(self, readings: Sequence[Reading]) -> set[tuple[str, int, str]]:
        """The keys (``Reading.key``) of those ``readings`` the store already holds exactly:
        same measurement, same tag set (drill_id included), same timestamp to the
        nanosecond and same value. Used after a write whose outcome is unknown, to send
        only what is missing; raise StoreError when the store cannot answer (never guess).
        """
        ...

    async def latest(self, flt: ReadingFilter) -> list[Reading]:
        """The newest reading of each sensor matching ``flt``."""
        ...

    async def series(
        self,
        sensor: str,
        start_ns: int,
        end_ns: int,
        step_s: int,
        agg: Aggregate = Aggregate.MEAN,
        drill_id: str | None = None,
        offset_s: int = 0,
    ) -> list[SeriesPoint]:
        """``agg`` of one sensor per ``step_s`` bucket in [start, end), buckets aligned to
        the epoch shifted by ``offset_s`` (InfluxQL's ``GROUP BY time(step, offset)``: a
        bucket starts at epoch + offset + k × step; 57600 with a step of one day starts the
        buckets at midnight in UTC+8); empty buckets carry None."""
        ...

    async def raw(
        self, flt: ReadingFilter, start_ns: int, end_ns: int, limit: int = 10_000
    ) -> list[Reading]:
        """Readings in [start, end) in time order, at most ``limit``."""
        ...

    async def count(self, flt: ReadingFilter, start_ns: int, end_ns: int) -> int: ...

    async def events(
        self, start_ns: int, end_ns: int, kind: str | None = None, limit: int = 10_000
    ) -> list[Event]: ...

    async def ping(self) -> None:
        """Raise StoreError unless the store answers (readiness)."""
        ...

    async def close(self) -> None: ...
