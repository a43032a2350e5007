"""Time buckets of ``Store.series``, shared so every back end returns the same shape.

InfluxQL's ``GROUP BY time(step)`` aligns buckets to the epoch and, for ``time >= start AND
time < end``, returns every bucket from the one holding ``start`` to the one holding
``end - 1ns``. The embedded store reproduces that here instead of relying on SQL.

``offset_s`` shifts the grid as InfluxQL's ``GROUP BY time(step, offset)`` does: buckets
start at ``epoch + offset_s + k * step``. Daily summaries use it to start buckets at local
midnight (for Asia/Shanghai, 16:00 UTC: ``offset_s = 57600``).
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.store.base import SeriesPoint

# A week of one-second buckets; beyond that the caller asked for something it cannot draw.
MAX_BUCKETS = 604_800


def bucket_starts(start_ns: int, end_ns: int, step_s: int, offset_s: int = 0) -> list[int]:
    """Bucket starts (epoch + ``offset_s`` + k × step) covering [start_ns, end_ns); empty
    when end <= start."""
    count = bucket_count(start_ns, end_ns, step_s, offset_s)
    if count > MAX_BUCKETS:
        raise ValueError(f"{count} buckets requested; at most {MAX_BUCKETS} (use a larger step)")
    if count == 0:
        return []
    step_ns = step_s * 1_000_000_000
    first = _first_start(start_ns, step_s, offset_s)
    return list(range(first, first + count * step_ns, step_ns))


def bucket_count(start_ns: int, end_ns: int, step_s: int, offset_s: int = 0) -> int:
    """How many buckets :func:`bucket_starts` returns, without building them (the API checks
    a request's size with it)."""
    if step_s < 1:
        raise ValueError(f"step must be at least 1 s, got {step_s}")
    if end_ns <= start_ns:
        return 0
    step_ns = step_s * 1_000_000_000
    first = _first_start(start_ns, step_s, offset_s)
    last = _first_start(end_ns - 1, step_s, offset_s)
    return (last - first) // step_ns + 1


def _first_start(ts_ns: int, step_s: int, offset_s: int) -> int:
    """The start of the bucket holding ``ts_ns``."""
    step_ns = step_s * 1_000_000_000
    offset_ns = (offset_s % step_s) * 1_000_000_000
    # Python's % floors, so pre-1970 timestamps land in the right bucket too.
    return ts_ns - (ts_ns - offset_ns) % step_ns


def fill_buckets(
    start_ns: int,
    end_ns: int,
    step_s: int,
    values: Mapping[int, float | None],
    offset_s: int = 0,
) -> list[SeriesPoint]:
    """One point per bucket, ``None`` where ``values`` has nothing for the bucket."""
    starts = bucket_starts(start_ns, end_ns, step_s, offset_s)
    return [SeriesPoint(ts, values.get(ts)) for ts in starts]
