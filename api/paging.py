"""Paged listings and bounded time ranges, shared by every listing route.

Every listing is paged (``limit`` at most :data:`MAX_LIMIT`, ``offset``) and answers a
:class:`Page` with the total, so a client knows when it has seen everything. Every time
range is bounded: ``start`` and ``end`` (ISO 8601; a time without offset is in the API's
time zone, :func:`api.status.api_zone`: the site file's), ``end`` after ``start``, the
span at most what the route allows, so no request can ask the store for years of raw data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Generic, TypeVar
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Query, status
from pydantic import BaseModel

from api.deps import Context
from api.status import api_zone, local_time
from gateway.reading import ns_from_datetime

MAX_LIMIT = 500
# Stores keep signed 64-bit nanoseconds since the epoch: about 1678 to 2262. Readings are
# never before 1970 (payload timestamps are refused there too).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)
MAX_OFFSET = 1_000_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Paging:
    """``limit`` items from ``offset``."""

    limit: int
    offset: int


def paging(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")] = 0,
) -> Paging:
    return Paging(limit, offset)


PagingDep = Annotated[Paging, Depends(paging)]


class Page(BaseModel, Generic[T]):
    """One page of a listing: ``total`` items match, ``items`` holds at most ``limit``."""

    items: list[T]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class TimeRange:
    """[start, end) in nanoseconds since the epoch, and as aware datetimes."""

    start: datetime
    end: datetime

    @property
    def start_ns(self) -> int:
        return ns_from_datetime(self.start)

    @property
    def end_ns(self) -> int:
        return ns_from_datetime(self.end)

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def unprocessable(detail: str) -> HTTPException:
    """The 422 every route answers for a request it understood but cannot serve; ``detail``
    says where and why."""
    return HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)


def time_range(*, default: timedelta, longest: timedelta) -> Callable[..., TimeRange]:
    """A dependency reading ``start``/``end``: by default the ``default`` span up to now;
    422 when end is not after start or the span exceeds ``longest``."""

    def dependency(
        ctx: Context,
        start: Annotated[
            datetime | None, Query(description="ISO 8601; default: end minus the default span")
        ] = None,
        end: Annotated[datetime | None, Query(description="ISO 8601; default: now")] = None,
    ) -> TimeRange:
        zone = api_zone(ctx)
        try:
            now = local_time(ctx.clock.now_ns(), zone)
            end_at = _aware(end, zone) if end is not None else now
            start_at = _aware(start, zone) if start is not None else end_at - default
            if end_at <= start_at:
                raise unprocessable("end must be after start")
            if end_at - start_at > longest:
                raise unprocessable(f"the time range is longer than {_span(longest)}; ask for less")
            if not (start_at > EARLIEST and end_at < LATEST):
                raise unprocessable("start and end must lie between 1970 and 2262")
        except OverflowError:
            raise unprocessable("start or end is out of range") from None
        return TimeRange(start_at, end_at)

    return dependency


def _aware(when: datetime, zone: ZoneInfo) -> datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=zone)


def _span(span: timedelta) -> str:
    if span % timedelta(days=1) == timedelta(0):
        return f"{span.days} days"
    return f"{span.total_seconds() / 3600:g} hours"
