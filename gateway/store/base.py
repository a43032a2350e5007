"""The store interface: every back end (InfluxDB, embedded SQLite) offers these calls.

Schema (README, "Storage schema"): measurement ``readings`` with field ``value`` and tags
site, building, room, device, sensor, kind, storage_class (+ drill_id on simulated
readings); measurement ``events`` with fields title, text and tags kind, severity and the
place (site, building, room, device, sensor, alert_id, drill_id) where known.
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
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        bad_request: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.bad_request = bad_request
        self.retry_after = retry_after


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
