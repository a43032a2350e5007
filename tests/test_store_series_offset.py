"""``Store.series`` with ``offset_s``: buckets that start at local midnight, on both back ends.

Daily summaries of a site in Asia/Shanghai need days from 00:00 to 24:00 local time, i.e.
16:00 UTC to 16:00 UTC. Epoch-aligned one-day buckets would start at 08:00 local time and
mix two local days; the offset moves the grid, the same way in SQL and in InfluxQL.
"""

from __future__ import annotations

import pytest

from gateway.reading import Reading, SensorKind
from gateway.store.base import Aggregate, SeriesPoint, Store

S = 1_000_000_000
DAY = 86_400 * S
# 2026-01-01T00:00 in Asia/Shanghai (UTC+8) is 2025-12-31T16:00Z.
MIDNIGHT_CST = 1_767_196_800 * S
SHANGHAI_OFFSET_S = 57_600  # 16:00 UTC, local midnight in UTC+8, from the epoch


def rd(ts_ns: int, value: float, drill_id: str | None = None) -> Reading:
    return Reading(
        site="hq",
        building="b1",
        room="r101",
        device="th-1",
        sensor="t1",
        kind=SensorKind.TEMPERATURE,
        storage_class="paper",
        value=value,
        ts_ns=ts_ns,
        drill_id=drill_id,
    )


# Local day 1 (Jan 1): 00:00, 07:59 and 23:59:59.999999999 local; local day 2 (Jan 2):
# 00:00 and 12:00 local. An epoch-aligned day would cut at 08:00 local instead.
DAYS_DATA = [
    rd(MIDNIGHT_CST, 10.0),
    rd(MIDNIGHT_CST + 8 * 3600 * S - S, 20.0),
    rd(MIDNIGHT_CST + DAY - 1, 30.0),
    rd(MIDNIGHT_CST + DAY, 40.0),
    rd(MIDNIGHT_CST + DAY + 12 * 3600 * S, 50.0),
    rd(MIDNIGHT_CST + DAY - 2, 999.0, drill_id="d1"),  # a drill never counts
]


@pytest.mark.parametrize(
    ("agg", "day1", "day2"),
    [
        (Aggregate.MIN, 10.0, 40.0),
        (Aggregate.MAX, 30.0, 50.0),
        (Aggregate.MEAN, 20.0, 45.0),
        (Aggregate.COUNT, 3.0, 2.0),
    ],
)
async def test_daily_buckets_start_at_local_midnight(
    store: Store, agg: Aggregate, day1: float, day2: float
) -> None:
    await store.write_readings(DAYS_DATA)
    got = await store.series(
        "t1", MIDNIGHT_CST, MIDNIGHT_CST + 2 * DAY, 86_400, agg, offset_s=SHANGHAI_OFFSET_S
    )
    assert got == [SeriesPoint(MIDNIGHT_CST, day1), SeriesPoint(MIDNIGHT_CST + DAY, day2)]


async def test_without_an_offset_days_are_utc_days(store: Store) -> None:
    await store.write_readings(DAYS_DATA)
    utc_midnight = MIDNIGHT_CST + 8 * 3600 * S  # 2026-01-01T00:00Z
    got = await store.series("t1", MIDNIGHT_CST, MIDNIGHT_CST + 2 * DAY, 86_400, Aggregate.COUNT)
    # Three UTC days, each mixing parts of two local days.
    assert got == [
        SeriesPoint(utc_midnight - DAY, 2.0),  # local Jan 1 00:00 and 07:59:59
        SeriesPoint(utc_midnight, 2.0),  # local Jan 1 23:59:59 and Jan 2 00:00
        SeriesPoint(utc_midnight + DAY, 1.0),  # local Jan 2 12:00
    ]


@pytest.mark.parametrize("offset_s", [SHANGHAI_OFFSET_S, -28_800, SHANGHAI_OFFSET_S + 86_400])
async def test_offsets_equal_modulo_the_step_give_the_same_buckets(
    store: Store, offset_s: int
) -> None:
    await store.write_readings(DAYS_DATA)
    got = await store.series(
        "t1",
        MIDNIGHT_CST + 3600 * S,
        MIDNIGHT_CST + DAY + S,
        86_400,
        Aggregate.MAX,
        offset_s=offset_s,
    )
    # The range starts inside day 1 and ends just after day 2 began: both buckets, each
    # holding only the readings within [start, end).
    assert got == [SeriesPoint(MIDNIGHT_CST, 30.0), SeriesPoint(MIDNIGHT_CST + DAY, 40.0)]


async def test_an_offset_shifts_short_steps_too(store: Store) -> None:
    t = MIDNIGHT_CST
    await store.write_readings([rd(t + 10 * S, 1.0), rd(t + 40 * S, 2.0), rd(t + 70 * S, 3.0)])
    # Minute buckets starting at :30 seconds: [-30, 30), [30, 90).
    got = await store.series("t1", t, t + 90 * S, 60, Aggregate.MEAN, offset_s=30)
    assert got == [SeriesPoint(t - 30 * S, 1.0), SeriesPoint(t + 30 * S, 2.5)]
