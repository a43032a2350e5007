"""Validation: which readings may enter the spool, at every documented edge."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.reading import Reading, SensorKind
from gateway.validation import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_MAX_FUTURE_S,
    RejectReason,
    validate,
)
from tests.factories import S, make_reading

NOW_NS = 1_767_225_600 * S
BASE = make_reading(ts_ns=NOW_NS)


def reading(**changes: object) -> Reading:
    return replace(BASE, **changes)  # type: ignore[arg-type]


OUT = RejectReason.OUT_OF_RANGE
NAN = RejectReason.NOT_A_NUMBER

VALUE_CASES: list[tuple[SensorKind, float, RejectReason | None]] = [
    # temperature -40..85 °C, ends included
    (SensorKind.TEMPERATURE, -40.0, None),
    (SensorKind.TEMPERATURE, 85.0, None),
    (SensorKind.TEMPERATURE, 21.5, None),
    (SensorKind.TEMPERATURE, -40.01, OUT),
    (SensorKind.TEMPERATURE, 85.01, OUT),
    (SensorKind.TEMPERATURE, -3276.8, OUT),  # an int16 0x8000 sentinel scaled by 0.1
    (SensorKind.TEMPERATURE, math.nan, NAN),
    (SensorKind.TEMPERATURE, math.inf, NAN),
    (SensorKind.TEMPERATURE, -math.inf, NAN),
    # humidity 0..100 %RH
    (SensorKind.HUMIDITY, 0.0, None),
    (SensorKind.HUMIDITY, 100.0, None),
    (SensorKind.HUMIDITY, -0.1, OUT),
    (SensorKind.HUMIDITY, 100.1, OUT),
    (SensorKind.HUMIDITY, math.nan, NAN),
    # binary kinds: exactly 0 or 1
    (SensorKind.SMOKE, 0.0, None),
    (SensorKind.SMOKE, 1.0, None),
    (SensorKind.SMOKE, 0.5, OUT),
    (SensorKind.SMOKE, 2.0, OUT),
    (SensorKind.DOOR, 1.0, None),
    (SensorKind.DOOR, -1.0, OUT),
    (SensorKind.WATER_LEAK, 0.0, None),
    (SensorKind.WATER_LEAK, 255.0, OUT),
    (SensorKind.WATER_LEAK, math.nan, NAN),
    # light 0..200000 lx
    (SensorKind.LIGHT, 0.0, None),
    (SensorKind.LIGHT, 200_000.0, None),
    (SensorKind.LIGHT, 200_000.5, OUT),
    (SensorKind.LIGHT, -1.0, OUT),
    # co2 0..10000 ppm
    (SensorKind.CO2, 0.0, None),
    (SensorKind.CO2, 10_000.0, None),
    (SensorKind.CO2, 10_001.0, OUT),
    # voc 0..60000 ppb
    (SensorKind.VOC, 60_000.0, None),
    (SensorKind.VOC, 60_000.1, OUT),
    (SensorKind.VOC, -0.1, OUT),
    # pm2.5 0..1000 µg/m³
    (SensorKind.PM2_5, 1_000.0, None),
    (SensorKind.PM2_5, 1_000.1, OUT),
    # battery 0..100 %
    (SensorKind.BATTERY, 0.0, None),
    (SensorKind.BATTERY, 100.0, None),
    (SensorKind.BATTERY, 101.0, OUT),
]


@pytest.mark.parametrize(("kind", "value", "expected"), VALUE_CASES)
def test_value_ranges(kind: SensorKind, value: float, expected: RejectReason | None) -> None:
    assert validate(reading(kind=kind, value=value), NOW_NS) == expected


def test_every_kind_has_a_rule() -> None:
    for kind in SensorKind:
        assert validate(reading(kind=kind, value=0.0), NOW_NS) is None
        assert validate(reading(kind=kind, value=-1e9), NOW_NS) == OUT


TIME_CASES: list[tuple[str, int, RejectReason | None]] = [
    ("now", 0, None),
    ("exactly max_future ahead", 300 * S, None),
    ("1 ns past max_future", 300 * S + 1, RejectReason.FUTURE_TIMESTAMP),
    ("a day ahead", 86_400 * S, RejectReason.FUTURE_TIMESTAMP),
    ("an hour behind", -3600 * S, None),
    ("exactly max_age behind", -30 * 86_400 * S, None),
    ("1 ns older than max_age", -30 * 86_400 * S - 1, RejectReason.TOO_OLD),
    ("the epoch (device clock never set)", -NOW_NS, RejectReason.TOO_OLD),
]


@pytest.mark.parametrize(
    ("offset_ns", "expected"), [c[1:] for c in TIME_CASES], ids=[c[0] for c in TIME_CASES]
)
def test_timestamp_bounds_with_defaults(offset_ns: int, expected: RejectReason | None) -> None:
    r = reading(ts_ns=NOW_NS + offset_ns)
    assert validate(r, NOW_NS) == expected


def test_defaults_are_the_documented_ones() -> None:
    assert DEFAULT_MAX_FUTURE_S == 300
    assert DEFAULT_MAX_AGE_S == 30 * 86_400


def test_bounds_are_configurable() -> None:
    r_ahead = reading(ts_ns=NOW_NS + 10 * S)
    assert validate(r_ahead, NOW_NS, max_future_s=10, max_age_s=60) is None
    assert (
        validate(r_ahead, NOW_NS, max_future_s=9.5, max_age_s=60) == RejectReason.FUTURE_TIMESTAMP
    )
    r_old = reading(ts_ns=NOW_NS - 61 * S)
    assert validate(r_old, NOW_NS, max_future_s=10, max_age_s=60) == RejectReason.TOO_OLD
    assert validate(r_old, NOW_NS, max_future_s=10, max_age_s=61) is None


def test_unknown_sensor_only_when_a_list_is_given() -> None:
    r = reading(sensor="rogue-1")
    assert validate(r, NOW_NS) is None
    assert validate(r, NOW_NS, known_sensors={"t1", "h1"}) == RejectReason.UNKNOWN_SENSOR
    assert validate(replace(r, sensor="t1"), NOW_NS, known_sensors={"t1"}) is None


def test_first_failing_check_wins() -> None:
    bad_everything = reading(sensor="rogue", value=math.nan, ts_ns=NOW_NS + 3600 * S)
    assert validate(bad_everything, NOW_NS, known_sensors=set()) == RejectReason.UNKNOWN_SENSOR
    assert validate(bad_everything, NOW_NS) == NAN
    assert validate(replace(bad_everything, value=999.0), NOW_NS) == OUT
    assert validate(replace(bad_everything, value=20.0), NOW_NS) == RejectReason.FUTURE_TIMESTAMP


def test_validate_never_reports_a_fault_code() -> None:
    """Only a collector knows a device's fault code; validation must not guess one."""
    for kind, value, _ in VALUE_CASES:
        assert validate(reading(kind=kind, value=value), NOW_NS) != RejectReason.FAULT_CODE


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers())


@given(
    kind=st.sampled_from(list(SensorKind)),
    value=numbers,
    ts_ns=st.integers(),
    now_ns=st.integers(),
    max_future_s=st.one_of(st.floats(allow_nan=False), st.integers()),
    max_age_s=st.one_of(st.floats(allow_nan=False), st.integers()),
)
def test_never_raises(
    kind: SensorKind,
    value: float,
    ts_ns: int,
    now_ns: int,
    max_future_s: float,
    max_age_s: float,
) -> None:
    r = reading(kind=kind, value=value, ts_ns=ts_ns)
    result = validate(r, now_ns, max_future_s=max_future_s, max_age_s=max_age_s)
    assert result is None or isinstance(result, RejectReason)
    if isinstance(value, float) and not math.isfinite(value):
        assert result == NAN


@given(value=st.floats(min_value=-40.0, max_value=85.0), offset_s=st.integers(-86_400, 300))
def test_plausible_temperatures_are_accepted(value: float, offset_s: int) -> None:
    assert validate(reading(value=value, ts_ns=NOW_NS + offset_s * S), NOW_NS) is None
