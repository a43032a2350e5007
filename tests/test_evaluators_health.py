"""Sensor health: ``offline``, ``stuck``, ``battery_low``, ``calibration_overdue``.

In the test site, r1-t (MQTT, expected every 10 s, offline_after 3) is offline after more
than 30 s of silence; r1-mt (Modbus, polled every 2 s, offline_after 5) after more than 10 s.
"""

from __future__ import annotations

import pytest

from alerting.model import Severity
from tests.cases_rules.kit import Step, evaluator, feed, last_state

OFFLINE_SCOPE = {"scope": {"sensors": ["r1-t", "r1-mt"]}}
OFFLINE: list[tuple[str, dict[str, object], list[Step], str, bool]] = [
    ("heard recently", {}, [(0, "tick", 0), (5, "r1-t", 20), (35, "tick", 0)], "r1-t", False),
    (
        "silent longer than 3 × 10 s",
        {},
        [(0, "tick", 0), (5, "r1-t", 20), (36, "tick", 0)],
        "r1-t",
        True,
    ),
    (
        "never heard: counted from the first tick",
        {},
        [(0, "tick", 0), (30, "tick", 0)],
        "r1-t",
        False,
    ),
    ("never heard, past the limit", {}, [(0, "tick", 0), (31, "tick", 0)], "r1-t", True),
    ("modbus: 5 × 2 s, exactly", {}, [(0, "tick", 0), (10, "tick", 0)], "r1-mt", False),
    ("modbus: past 10 s", {}, [(0, "tick", 0), (10.5, "tick", 0)], "r1-mt", True),
    (
        "a reading brings it back",
        {},
        [(0, "tick", 0), (31, "tick", 0), (32, "r1-t", 20)],
        "r1-t",
        False,
    ),
    ("rule sets the intervals", {"intervals": 2}, [(0, "tick", 0), (21, "tick", 0)], "r1-t", True),
    (
        "per-room override of the intervals",
        {"overrides": {"r1": {"intervals": 10}}},
        [(0, "tick", 0), (31, "tick", 0)],
        "r1-t",
        False,
    ),
    (
        "drill readings do not prove a sensor alive",
        {},
        [(0, "tick", 0), (30, "r1-t", 20, "drill-1"), (31, "tick", 0)],
        "r1-t",
        True,
    ),
]


@pytest.mark.parametrize(
    ("case", "params", "steps", "sensor", "expected"), OFFLINE, ids=[c[0] for c in OFFLINE]
)
def test_offline_table(
    case: str, params: dict[str, object], steps: list[Step], sensor: str, expected: bool
) -> None:
    conds = feed(evaluator("offline", **OFFLINE_SCOPE, **params), steps)  # type: ignore[arg-type]
    assert last_state(conds, sensor=sensor) is expected


def test_offline_condition_carries_its_own_for() -> None:
    conds = feed(
        evaluator("offline", for_="2m", **OFFLINE_SCOPE), [(0, "tick", 0), (40, "tick", 0)]
    )
    active = [c for c in conds if c.active]
    assert {c.labels["sensor"] for c in active} == {"r1-t", "r1-mt"}
    assert all(c.for_s == 120 for c in conds)
    assert "离线" in active[0].summary


STUCK_RULE = {"duration": "1h", "tolerance": 0.1}
STUCK: list[tuple[str, list[Step], list[bool]]] = [
    (
        "flat within tolerance for just under the duration",
        [(0, "r1-h", 50), (1800, "r1-h", 50.05), (3599, "r1-h", 50.1)],
        [False, False, False],
    ),
    ("flat for exactly the duration", [(0, "r1-h", 50), (3600, "r1-h", 50)], [False, True]),
    (
        "a change clears and restarts",
        [(0, "r1-h", 50), (3600, "r1-h", 50), (3700, "r1-h", 51), (7200, "r1-h", 51)],
        [False, True, False, False],
    ),
    ("a change beyond tolerance", [(0, "r1-h", 50), (3600, "r1-h", 50.2)], [False, False]),
    ("binary sensors are not watched", [(0, "r1-door", 0), (9999, "r1-door", 0)], []),
    ("access readers are not watched", [(0, "r1-card", 1), (9999, "r1-card", 1)], []),
]


@pytest.mark.parametrize(("case", "steps", "expected"), STUCK, ids=[c[0] for c in STUCK])
def test_stuck_table(case: str, steps: list[Step], expected: list[bool]) -> None:
    assert [c.active for c in feed(evaluator("stuck", **STUCK_RULE), steps)] == expected


BATTERY: list[tuple[str, list[Step], list[bool]]] = [
    ("equal to threshold is fine", [(0, "r1-bat", 20)], [False]),
    ("below threshold", [(0, "r1-bat", 19.9)], [True]),
    (
        "recovers only at threshold + hysteresis",
        [(0, "r1-bat", 15), (1, "r1-bat", 24.9), (2, "r1-bat", 25)],
        [True, True, False],
    ),
    ("other kinds ignored", [(0, "r1-h", 5)], []),
]


@pytest.mark.parametrize(("case", "steps", "expected"), BATTERY, ids=[c[0] for c in BATTERY])
def test_battery_low_table(case: str, steps: list[Step], expected: list[bool]) -> None:
    ev = evaluator("battery_low", threshold=20, hysteresis=5)
    assert [c.active for c in feed(ev, steps)] == expected


# r1-t is due 2026-01-05 (calibrated 2025-01-05 + 365 days), r2-t due 2026-01-06.
# T0 is 2026-01-05 10:00 local; +52200 s is 2026-01-06 00:30 local but still 01-05 in UTC.
CALIBRATION: list[tuple[str, list[float], dict[str, bool]]] = [
    ("due today is not overdue", [0], {"r1-t": False, "r2-t": False}),
    ("the local date decides", [0, 52_200], {"r1-t": True, "r2-t": False}),
    ("a day later", [0, 86_400 * 2], {"r1-t": True, "r2-t": True}),
]


@pytest.mark.parametrize(
    ("case", "ticks", "expected"), CALIBRATION, ids=[c[0] for c in CALIBRATION]
)
def test_calibration_overdue_table(
    case: str, ticks: list[float], expected: dict[str, bool]
) -> None:
    conds = feed(evaluator("calibration_overdue"), [(t, "tick", 0) for t in ticks])
    assert {s: last_state(conds, sensor=s) for s in expected} == expected
    # Only sensors with a calibration record are watched.
    assert {c.labels["sensor"] for c in conds} == {"r1-t", "r2-t"}


def test_calibration_is_checked_once_per_local_day() -> None:
    ev = evaluator("calibration_overdue")
    assert len(feed(ev, [(0, "tick", 0)])) == 2
    assert feed(ev, [(3600, "tick", 0)]) == []
    conds = feed(ev, [(86_400, "tick", 0)])
    overdue = next(c for c in conds if c.labels["sensor"] == "r1-t")
    assert overdue.active and overdue.value == 1.0 and overdue.severity is Severity.INFO
    assert overdue.summary == "101 纸质档案库 101 温度 校准于 2026-01-05 到期，已逾期 1 天"
