"""``band``: the room's profile band (paper: 14–24 °C, 45–60 %RH), inclusive, with hysteresis."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.evaluators import EVALUATORS
from alerting.model import Severity
from alerting.rules import load_rules
from gateway.reading import SensorKind
from gateway.resources import demo_site_path
from gateway.simulation import demo_climates, sensor_value
from gateway.site import load_site
from tests.cases_rules.kit import Step, evaluator, feed

# (case, rule params, steps (t_s, sensor, value), expected active flag per condition)
CASES: list[tuple[str, dict[str, object], list[Step], list[bool]]] = [
    ("humidity equal to max is in band", {}, [(0, "r1-h", 60.0)], [False]),
    ("humidity just above max", {}, [(0, "r1-h", 60.1)], [True]),
    ("humidity equal to min is in band", {}, [(0, "r1-h", 45.0)], [False]),
    ("humidity just below min", {}, [(0, "r1-h", 44.9)], [True]),
    ("temperature equal to max", {}, [(0, "r1-t", 24.0)], [False]),
    ("temperature above max", {}, [(0, "r1-t", 24.1)], [True]),
    ("temperature below min", {}, [(0, "r1-t", 13.9)], [True]),
    (
        "humidity clears only 2 points inside (inclusive)",
        {},
        [(0, "r1-h", 61), (10, "r1-h", 60), (20, "r1-h", 58.1), (30, "r1-h", 58)],
        [True, True, True, False],
    ),
    (
        "low humidity clears at min + 2",
        {},
        [(0, "r1-h", 44), (10, "r1-h", 46.9), (20, "r1-h", 47)],
        [True, True, False],
    ),
    (
        "temperature clears at max - 0.5",
        {},
        [(0, "r1-t", 25), (10, "r1-t", 23.6), (20, "r1-t", 23.5)],
        [True, True, False],
    ),
    (
        "hysteresis does not delay activation",
        {},
        [(0, "r1-h", 59), (10, "r1-h", 60.1)],
        [False, True],
    ),
    (
        "custom hysteresis",
        {"hysteresis": {"humidity": 0}},
        [(0, "r1-h", 61), (10, "r1-h", 60)],
        [True, False],
    ),
    (
        "per-room override of the hysteresis",
        {"overrides": {"r1": {"hysteresis": {"humidity": 5}}}},
        [(0, "r1-h", 61), (10, "r1-h", 56), (20, "r1-h", 55)],
        [True, True, False],
    ),
    ("film master vault has its own band", {}, [(0, "r2-h", 46), (10, "r2-t", 15.1)], [True, True]),
    ("sensors keep separate state", {}, [(0, "r1-t", 30), (10, "r1-t2", 20)], [True, False]),
    ("outdoor sensors are not watched", {}, [(0, "out-t", 40)], []),
    ("other kinds are not watched", {}, [(0, "r1-smoke1", 1)], []),
    ("scope by room", {"scope": {"rooms": ["r2"]}}, [(0, "r1-h", 70), (0, "r2-h", 70)], [True]),
    ("scope by kind", {"scope": {"kinds": ["humidity"]}}, [(0, "r1-t", 40)], []),
]


@pytest.mark.parametrize(("case", "params", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_band_table(
    case: str, params: dict[str, object], steps: list[Step], expected: list[bool]
) -> None:
    conds = feed(evaluator("band", **params), steps)
    assert [c.active for c in conds] == expected


def test_condition_carries_rule_timing_labels_and_chinese_text() -> None:
    ev = evaluator("band", for_="5m", keep_firing_for="30s")
    (cond,) = feed(ev, [(0, "r1-h", 63.2)])
    assert cond.summary == "101 纸质档案库 湿度 63.2 %RH，超出 45–60 %RH"
    assert cond.limit == "45–60 %RH"
    assert cond.labels == {"site": "s1", "building": "b1", "room": "r1", "sensor": "r1-h"}
    assert (cond.for_s, cond.keep_firing_for_s) == (300.0, 30.0)
    assert cond.severity is Severity.WARNING and cond.rule_kind == "band"
    assert cond.value == 63.2
    (low,) = feed(ev, [(10, "r1-t", 12)])
    assert low.summary == "101 纸质档案库 温度 12 °C，低于 14–24 °C"


def test_per_room_override_of_for() -> None:
    ev = evaluator("band", for_="1m", overrides={"r2": {"for": "10m"}})
    r1, r2 = feed(ev, [(0, "r1-h", 70), (0, "r2-h", 70)])
    assert (r1.for_s, r2.for_s) == (60.0, 600.0)


def test_demo_hvac_failure_fires_within_the_first_minute() -> None:
    """The shipped rules on the demo building: room 101's humidity leaves its band early
    enough that the band rule's ``for`` has elapsed before 60 s."""
    site = load_site(demo_site_path())
    assert site.model.rules is not None
    rules = load_rules(site.relative(site.model.rules), site)
    band = next(r for r in rules.rules if r.kind == "band")
    ev = EVALUATORS["band"](band, site)
    t0 = 1_767_225_600.0
    climates = demo_climates(site, t0)
    first_active: float | None = None
    for step in range(0, 60 * 2):  # the demo's 2 s Modbus poll
        t = step * 0.5
        for ref in site.sensors():
            if ref.room != "r101" or ref.kind not in (SensorKind.HUMIDITY, SensorKind.TEMPERATURE):
                continue
            value = sensor_value(ref, climates[f"{ref.building}/{ref.room}"], t0 + t)
            for cond in ev.on_reading(ref.reading(value, round((t0 + t) * 1e9))):
                if cond.active and first_active is None:
                    first_active = t
                    assert cond.labels["room"] == "r101"
    assert first_active is not None
    assert first_active + band.for_s < 60


def test_rules_need_their_own_kind(tmp_path: Path) -> None:
    from tests.cases_rules.kit import rule, site

    with pytest.raises(TypeError):
        EVALUATORS["band"](rule("smoke"), site())
