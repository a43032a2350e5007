"""Reading validation: pure checks that decide whether a reading may enter the spool.

Nothing here does I/O or reads a clock; the pipeline passes ``now_ns`` in, so tests can pin
every edge. A rejected reading is counted and logged by the pipeline, never stored: a value
outside what the sensor can physically measure is a device or decoding fault, and storing it
would trip alerts and skew the preservation metrics computed from the series.
"""

from __future__ import annotations

import math
from collections.abc import Container
from enum import StrEnum
from types import MappingProxyType

from gateway.reading import BINARY_KINDS, Reading, SensorKind

DEFAULT_MAX_FUTURE_S = 300.0
DEFAULT_MAX_AGE_S = 30 * 86_400.0
_NS = 1_000_000_000


class RejectReason(StrEnum):
    """Why a reading was refused (the ``reason`` label of ``readings_rejected``)."""

    NOT_A_NUMBER = "not_a_number"  # NaN or ±inf
    OUT_OF_RANGE = "out_of_range"  # outside PHYSICAL_RANGES, or a binary kind not 0/1
    FAULT_CODE = "fault_code"  # the collector saw the device's own fault/not-a-number code
    FUTURE_TIMESTAMP = "future_timestamp"  # more than max_future_s ahead of the gateway clock
    TOO_OLD = "too_old"  # more than max_age_s behind the gateway clock
    UNKNOWN_SENSOR = "unknown_sensor"  # sensor id not in the site file


# What each kind of sensor can physically report, both ends INCLUSIVE (a value equal to an end
# is accepted). Chosen to be wider than any sensor archwatch supports, so a real but extreme
# reading (a fire, a flood) is kept and only impossible values are refused:
# - temperature -40..85 °C: the industrial operating range of common RS-485/Modbus T/RH
#   probes (SHT3x/SHT4x-based) and of the electronics reporting it;
# - humidity 0..100 %RH: by definition;
# - light 0..200000 lx: direct sunlight is about 100000 lx, with headroom for lux meters;
# - uv 0..20000 µW/cm² (20 mW/cm²): noon sun in the tropics gives about 6 mW/cm² of UV-A
#   and UV-B; the RS-485 UV transmitters in use have a full scale of 15 or 20 mW/cm²;
# - co2 0..10000 ppm: the full scale of the NDIR sensors in use (1 % by volume);
# - voc 0..60000 ppb: the full scale of the MOX/PID VOC sensors in use;
# - pm2_5 0..1000 µg/m³: the full scale of laser particle counters (PMS5003, SPS30);
# - battery 0..100 %.
# Binary kinds (smoke, door, water_leak) must be exactly 0 or 1 (see BINARY_KINDS).
PHYSICAL_RANGES: MappingProxyType[SensorKind, tuple[float, float]] = MappingProxyType(
    {
        SensorKind.TEMPERATURE: (-40.0, 85.0),
        SensorKind.HUMIDITY: (0.0, 100.0),
        SensorKind.LIGHT: (0.0, 200_000.0),
        SensorKind.UV: (0.0, 20_000.0),
        SensorKind.CO2: (0.0, 10_000.0),
        SensorKind.VOC: (0.0, 60_000.0),
        SensorKind.PM2_5: (0.0, 1_000.0),
        SensorKind.BATTERY: (0.0, 100.0),
        # Badge numbers: any non-negative integer a float represents exactly (below 2**53).
        SensorKind.ACCESS: (0.0, float(2**53 - 1)),
    }
)
BINARY_VALUES = (0.0, 1.0)


def _value_reason(kind: SensorKind, value: float) -> RejectReason | None:
    # An int is always finite (and math.isfinite would overflow on a huge one).
    if isinstance(value, float) and not math.isfinite(value):
        return RejectReason.NOT_A_NUMBER
    if kind in BINARY_KINDS:
        return None if value in BINARY_VALUES else RejectReason.OUT_OF_RANGE
    low, high = PHYSICAL_RANGES[kind]
    return None if low <= value <= high else RejectReason.OUT_OF_RANGE


def validate(
    reading: Reading,
    now_ns: int,
    *,
    max_future_s: float = DEFAULT_MAX_FUTURE_S,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    known_sensors: Container[str] | None = None,
) -> RejectReason | None:
    """The reason to refuse ``reading`` at gateway time ``now_ns``, or None if it is valid.

    Checked in this order, the first failure wins: unknown sensor (when ``known_sensors`` is
    given), not a number, physical range, then the timestamp. The timestamp bounds are
    inclusive: exactly ``max_future_s`` ahead or exactly ``max_age_s`` behind is accepted.
    ``fault_code`` is never returned here: only the collector can recognise a device's code.
    """
    if known_sensors is not None and reading.sensor not in known_sensors:
        return RejectReason.UNKNOWN_SENSOR
    reason = _value_reason(reading.kind, reading.value)
    if reason is not None:
        return reason
    # Integer nanoseconds against a float bound: Python compares int and float exactly, so no
    # rounding at the edge and no overflow for any timestamp.
    ahead_ns = reading.ts_ns - now_ns
    if ahead_ns > max_future_s * _NS:
        return RejectReason.FUTURE_TIMESTAMP
    if -ahead_ns > max_age_s * _NS:
        return RejectReason.TOO_OLD
    return None
