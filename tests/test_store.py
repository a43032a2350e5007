"""One table of Store behaviour, run against both back ends: embedded SQLite and real InfluxDB.

What a user sees through the API and Grafana must not depend on which back end a site runs,
so every test here runs twice with the same data and the same expectations.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from gateway.reading import Event, Reading, SensorKind
from gateway.store.base import Aggregate, ReadingFilter, SeriesPoint, Store, StoreError

S = 1_000_000_000
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z, on a minute boundary
HOUR = 3600 * S

# sensor -> (site, building, room, device, kind, storage_class)
PLACES: dict[str, tuple[str, str, str, str, SensorKind, str]] = {
    "t1": ("hq", "b1", "r101", "th-1", SensorKind.TEMPERATURE, "paper"),
    "h1": ("hq", "b1", "r101", "th-1", SensorKind.HUMIDITY, "paper"),
    "t2": ("hq", "b2", "r201", "th-2", SensorKind.TEMPERATURE, "film_master"),
    "door1": ("hq", "b2", "r201", "io-2", SensorKind.DOOR, "film_master"),
}


def rd(sensor: str, ts_ns: int, value: float, drill_id: str | None = None) -> Reading:
    site, building, room, device, kind, storage_class = PLACES.get(
        sensor, ("hq", "b1", "r101", "dev", SensorKind.TEMPERATURE, "paper")
    )
    return Reading(
        site=site,
        building=building,
        room=room,
        device=device,
        sensor=sensor,
        kind=kind,
        storage_class=storage_class,
        value=value,
        ts_ns=ts_ns,
        drill_id=drill_id,
    )


EVERYTHING = ReadingFilter()
BASIC = [
    rd("t1", T0 + 1 * S, 21.37),
    rd("h1", T0 + 2 * S, 55.0),
    rd("t2", T0 + 3 * S, -3.5),
    rd("door1", T0 + 4 * S, 1.0),
    rd("t1", T0 + 5 * S + 123, 21.5),  # nanoseconds survive
    rd("t2", T0 + 6 * S, 1e-3),
    rd("h1", T0 + 7 * S, 1e20),
]


async def test_round_trip_keeps_every_tag_value_and_timestamp(store: Store) -> None:
    await store.write_readings(BASIC)
    assert await store.raw(EVERYTHING, T0, T0 + HOUR) == BASIC


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (ReadingFilter(), 7),
        (ReadingFilter(site="hq"), 7),
        (ReadingFilter(building="b2"), 3),
        (ReadingFilter(room="r101"), 4),
        (ReadingFilter(device="th-1"), 4),
        (ReadingFilter(sensor="t1"), 2),
        (ReadingFilter(kind="temperature"), 4),
        (ReadingFilter(building="b1", kind="humidity"), 2),
        (ReadingFilter(building="b1", room="r201"), 0),
        (ReadingFilter(site="elsewhere"), 0),
    ],
)
async def test_count_and_raw_honour_every_filter(
    store: Store, flt: ReadingFilter, expected: int
) -> None:
    await store.write_readings(BASIC)
    assert await store.count(flt, T0, T0 + HOUR) == expected
    rows = await store.raw(flt, T0, T0 + HOUR)
    assert rows == [r for r in BASIC if _matches(r, flt)]


def _matches(r: Reading, flt: ReadingFilter) -> bool:
    wanted = {k: getattr(flt, k) for k in ("site", "building", "room", "device", "sensor")}
    if flt.kind is not None and r.kind.value != flt.kind:
        return False
    return all(v is None or getattr(r, k) == v for k, v in wanted.items())


async def test_latest_gives_the_newest_reading_of_each_sensor(store: Store) -> None:
    await store.write_readings(BASIC)
    newest = {"t1": BASIC[4], "h1": BASIC[6], "t2": BASIC[5], "door1": BASIC[3]}
    assert await store.latest(EVERYTHING) == [newest[s] for s in sorted(newest)]
    assert await store.latest(ReadingFilter(room="r201")) == [newest["door1"], newest["t2"]]
    assert await store.latest(ReadingFilter(sensor="nope")) == []


async def test_latest_of_a_sensor_that_moved_room_is_its_newest_reading(store: Store) -> None:
    before = rd("t1", T0, 20.0)
    moved = replace(before, room="r102", ts_ns=T0 + S, value=22.0)
    await store.write_readings([before, moved])
    assert await store.latest(ReadingFilter(sensor="t1")) == [moved]


# Sensor t1 over five one-minute buckets: two values, nothing, one, three, nothing.
SERIES_DATA = [
    rd("t1", T0 + 10 * S, 10.0),
    rd("t1", T0 + 50 * S, 20.0),
    rd("t1", T0 + 130 * S, 5.0),
    rd("t1", T0 + 190 * S, 1.0),
    rd("t1", T0 + 200 * S, 4.0),
    rd("t1", T0 + 230 * S, 7.0),
    rd("t2", T0 + 70 * S, 99.0),  # another sensor: never in t1's series
    rd("t1", T0 + 75 * S, 500.0, drill_id="d1"),  # a drill: not in the real series
]
MINUTES = [T0 + i * 60 * S for i in range(5)]


@pytest.mark.parametrize(
    ("agg", "values"),
    [
        (Aggregate.MEAN, [15.0, None, 5.0, 4.0, None]),
        (Aggregate.MIN, [10.0, None, 5.0, 1.0, None]),
        (Aggregate.MAX, [20.0, None, 5.0, 7.0, None]),
        (Aggregate.COUNT, [2.0, None, 1.0, 3.0, None]),
        (Aggregate.LAST, [20.0, None, 5.0, 7.0, None]),
    ],
)
async def test_series_aggregates_per_bucket_with_empty_buckets_as_none(
    store: Store, agg: Aggregate, values: list[float | None]
) -> None:
    await store.write_readings(SERIES_DATA)
    got = await store.series("t1", T0, T0 + 300 * S, 60, agg)
    assert got == [SeriesPoint(ts, v) for ts, v in zip(MINUTES, values, strict=True)]


async def test_series_buckets_align_to_the_epoch_and_honour_start_and_end(store: Store) -> None:
    await store.write_readings(SERIES_DATA)
    # From 00:30 to 03:20: the first bucket still starts at 00:00 but holds only the 00:50
    # value; the reading at exactly 03:20 is outside [start, end).
    got = await store.series("t1", T0 + 30 * S, T0 + 200 * S, 60, Aggregate.MEAN)
    assert got == [
        SeriesPoint(MINUTES[0], 20.0),
        SeriesPoint(MINUTES[1], None),
        SeriesPoint(MINUTES[2], 5.0),
        SeriesPoint(MINUTES[3], 1.0),
    ]


async def test_series_of_a_sensor_without_data_is_all_none(store: Store) -> None:
    await store.write_readings(SERIES_DATA)
    got = await store.series("quiet", T0, T0 + 300 * S, 60, Aggregate.COUNT)
    assert got == [SeriesPoint(ts, None) for ts in MINUTES]
    assert await store.series("t1", T0, T0, 60) == []


async def test_series_of_a_drill_shows_only_the_drill(store: Store) -> None:
    await store.write_readings(SERIES_DATA)
    got = await store.series("t1", T0, T0 + 180 * S, 60, Aggregate.MAX, drill_id="d1")
    assert got == [
        SeriesPoint(MINUTES[0], None),
        SeriesPoint(MINUTES[1], 500.0),
        SeriesPoint(MINUTES[2], None),
    ]


@pytest.mark.parametrize(
    ("start", "end", "limit", "expected"),
    [
        (T0, T0 + 3, 10, [0, 1, 2]),
        (T0, T0 + 2, 10, [0, 1]),  # end is exclusive, to the nanosecond
        (T0 + 1, T0 + 3, 10, [1, 2]),  # start is inclusive
        (T0 + 3, T0 + 10, 10, []),
        (T0, T0 + 3, 2, [0, 1]),  # the limit keeps the oldest
        (T0, T0 + 3, 0, []),
    ],
)
async def test_raw_range_is_start_inclusive_end_exclusive(
    store: Store, start: int, end: int, limit: int, expected: list[int]
) -> None:
    data = [rd("t1", T0 + i, float(i)) for i in range(3)]
    await store.write_readings(list(reversed(data)))
    assert await store.raw(EVERYTHING, start, end, limit) == [data[i] for i in expected]
    assert await store.count(EVERYTHING, start, end) == len(
        [i for i in range(3) if start <= T0 + i < end]
    )


async def test_drill_readings_are_excluded_unless_asked_for(store: Store) -> None:
    real = [rd("t1", T0 + S, 21.0), rd("door1", T0 + 2 * S, 0.0)]
    drill = [
        rd("t1", T0 + S, 45.0, drill_id="fire-2026"),
        rd("door1", T0 + 3 * S, 1.0, "fire-2026"),
    ]
    other_drill = [rd("t1", T0 + 4 * S, 50.0, drill_id="flood")]
    await store.write_readings(real + drill + other_drill)

    assert await store.count(EVERYTHING, T0, T0 + HOUR) == 2
    assert await store.raw(EVERYTHING, T0, T0 + HOUR) == real
    assert await store.latest(EVERYTHING) == [real[1], real[0]]

    in_drill = ReadingFilter(drill_id="fire-2026")
    assert await store.count(in_drill, T0, T0 + HOUR) == 2
    assert await store.raw(in_drill, T0, T0 + HOUR) == drill
    assert await store.latest(ReadingFilter(sensor="t1", drill_id="flood")) == other_drill


async def test_writing_the_same_key_again_overwrites(store: Store) -> None:
    await store.write_readings([rd("t1", T0, 20.0), rd("h1", T0, 50.0)])
    await store.write_readings([rd("t1", T0, 20.5)])  # redelivered with a corrected value
    await store.write_readings([rd("t1", T0, 99.0, drill_id="d1")])  # a drill is its own key
    assert await store.count(EVERYTHING, T0, T0 + HOUR) == 2
    assert await store.raw(ReadingFilter(sensor="t1"), T0, T0 + HOUR) == [rd("t1", T0, 20.5)]
    assert await store.count(ReadingFilter(drill_id="d1"), T0, T0 + HOUR) == 1


EVENTS = [
    Event(
        ts_ns=T0 + S,
        kind="alert_fired",
        title="库房 r101 湿度过高 (humidity high)",
        text='RH 68 % > 60 %\nsecond line with "quotes" and a back\\slash',
        severity="critical",
        tags={"site": "hq", "room": "r101", "sensor": "h1", "alert_id": "a-17"},
    ),
    Event(ts_ns=T0 + 2 * S, kind="device_offline", title="th-2 offline", tags={"device": "th-2"}),
    Event(
        ts_ns=T0 + 3 * S,
        kind="alert_fired",
        title="drill: smoke",
        severity="warning",
        tags={"room": "r201"},
        drill_id="fire-2026",
    ),
    Event(ts_ns=T0 + 4 * S, kind="alert_resolved", title="", text="", tags={}),
]


async def test_events_round_trip_with_tags_text_and_drills(store: Store) -> None:
    await store.write_events(list(reversed(EVENTS)))
    assert await store.events(T0, T0 + HOUR) == EVENTS
    assert await store.events(T0, T0 + HOUR, kind="alert_fired") == [EVENTS[0], EVENTS[2]]
    assert await store.events(T0 + 2 * S, T0 + 4 * S) == EVENTS[1:3]
    assert await store.events(T0, T0 + HOUR, limit=1) == EVENTS[:1]
    assert await store.events(T0, T0 + HOUR, kind="nothing_like_it") == []


async def test_an_event_written_twice_is_stored_once(store: Store) -> None:
    await store.write_events(EVENTS[:2])
    await store.write_events(EVENTS[:1])
    assert await store.events(T0, T0 + HOUR) == EVENTS[:2]


HOSTILE = [
    "'",
    "' OR 1=1 --",
    "t1' OR '1'='1",
    '" OR ""="',
    "\\",
    "t1\\",
    "\\' OR 1=1 --",
    "x\ny",
    "t1) OR (1=1",
    "/.*/",
    "; DROP TABLE readings; --",
]


@pytest.mark.parametrize("value", HOSTILE)
async def test_a_hostile_filter_value_matches_nothing_and_raises_nothing(
    store: Store, value: str
) -> None:
    await store.write_readings(SERIES_DATA)
    await store.write_events(EVENTS)
    for field in ("site", "building", "room", "device", "sensor", "kind", "drill_id"):
        flt = ReadingFilter(**{field: value})
        assert await store.raw(flt, T0, T0 + HOUR) == []
        assert await store.count(flt, T0, T0 + HOUR) == 0
        assert await store.latest(flt) == []
    assert await store.series(value, T0, T0 + 120 * S, 60) == [
        SeriesPoint(MINUTES[0], None),
        SeriesPoint(MINUTES[1], None),
    ]
    assert await store.series("t1", T0, T0 + 60 * S, 60, drill_id=value) == [
        SeriesPoint(MINUTES[0], None)
    ]
    assert await store.events(T0, T0 + HOUR, kind=value) == []
    assert await store.count(EVERYTHING, T0, T0 + HOUR) == 7  # and nothing was dropped


ODD_IDS = ["it's", 'say "hi"', "a,b=c d", "' OR 1=1 --", "room 库房", "tab\there"]


async def test_ids_with_quotes_commas_and_spaces_are_stored_and_found_exactly(
    store: Store,
) -> None:
    data = [rd(sensor, T0 + i * S, float(i)) for i, sensor in enumerate(ODD_IDS)]
    await store.write_readings(data)
    for reading in data:
        assert await store.raw(ReadingFilter(sensor=reading.sensor), T0, T0 + HOUR) == [reading]
        assert await store.latest(ReadingFilter(sensor=reading.sensor)) == [reading]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_a_non_finite_value_is_refused_as_bad_data(store: Store, value: float) -> None:
    with pytest.raises(StoreError) as caught:
        await store.write_readings([rd("t1", T0, 1.0), rd("t2", T0, value)])
    assert caught.value.bad_request
    assert not caught.value.retryable
    assert await store.count(EVERYTHING, T0, T0 + HOUR) == 0  # the batch is all or nothing


async def test_empty_batches_and_ping_succeed_on_an_empty_store(store: Store) -> None:
    await store.write_readings([])
    await store.write_events([])
    await store.ping()
    assert await store.latest(EVERYTHING) == []
    assert await store.count(EVERYTHING, T0, T0 + HOUR) == 0
    assert await store.events(T0, T0 + HOUR) == []
