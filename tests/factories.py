"""Readings for unit tests: one base reading, varied with ``dataclasses.replace``."""

from __future__ import annotations

from gateway.clock import ManualClock
from gateway.reading import Reading, SensorKind

S = 1_000_000_000
# ManualClock's default start: 2026-01-01T00:00:00Z
T0_NS = ManualClock().now_ns()


def make_reading(**changes: object) -> Reading:
    """A paper-room temperature reading at T0 unless told otherwise."""
    fields: dict[str, object] = {
        "site": "hq",
        "building": "b1",
        "room": "r101",
        "device": "th-1",
        "sensor": "t1",
        "kind": SensorKind.TEMPERATURE,
        "storage_class": "paper",
        "value": 20.0,
        "ts_ns": T0_NS,
    }
    fields.update(changes)
    return Reading(**fields)  # type: ignore[arg-type]
