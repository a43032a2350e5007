"""``threshold``: exclusive limits on any sensor kind, with hysteresis."""

from __future__ import annotations

import pytest

from tests.cases_rules.kit import Step, evaluator, feed

BOTH = {"sensor_kind": "temperature", "above": 30, "below": 5, "hysteresis": 1}
CASES: list[tuple[str, dict[str, object], list[Step], list[bool]]] = [
    ("equal to above is fine", BOTH, [(0, "r1-t", 30)], [False]),
    ("just above", BOTH, [(0, "r1-t", 30.1)], [True]),
    ("equal to below is fine", BOTH, [(0, "r1-t", 5)], [False]),
    ("just below", BOTH, [(0, "r1-t", 4.9)], [True]),
    (
        "clears at above - hysteresis",
        BOTH,
        [(0, "r1-t", 31), (1, "r1-t", 29.5), (2, "r1-t", 29)],
        [True, True, False],
    ),
    (
        "clears at below + hysteresis",
        BOTH,
        [(0, "r1-t", 4), (1, "r1-t", 5.5), (2, "r1-t", 6)],
        [True, True, False],
    ),
    ("outdoor sensors count", BOTH, [(0, "out-t", 31)], [True]),
    ("other kinds ignored", BOTH, [(0, "r1-h", 99)], []),
    ("only above", {"sensor_kind": "battery", "above": 90}, [(0, "r1-bat", 95)], [True]),
    (
        "override per room",
        {**BOTH, "overrides": {"r2": {"above": 20}}},
        [(0, "r1-t", 25), (0, "r2-t", 25)],
        [False, True],
    ),
]


@pytest.mark.parametrize(("case", "params", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_threshold_table(
    case: str, params: dict[str, object], steps: list[Step], expected: list[bool]
) -> None:
    assert [c.active for c in feed(evaluator("threshold", **params), steps)] == expected


def test_summary_names_the_limit() -> None:
    (cond,) = feed(evaluator("threshold", **BOTH), [(0, "r1-t", 31.25)])
    assert cond.summary == "101 纸质档案库 101 温度 温度 31.2 °C，高于 30 °C"
    assert cond.limit == "不低于 5 °C，不高于 30 °C"


def test_every_sensor_kind_has_a_chinese_name_for_messages_and_the_console() -> None:
    """A kind added to the Reading type without its name would crash rule evaluation
    (messages look the kind up) the first time a rule sees such a sensor."""
    from alerting.evaluators.base import KIND_ZH
    from api.routes.console import SENSOR_KIND_TEXT
    from gateway.reading import SensorKind

    assert set(KIND_ZH) == set(SensorKind)
    assert set(SENSOR_KIND_TEXT) == {k.value for k in SensorKind}
    assert {KIND_ZH[k] for k in SensorKind} == {SENSOR_KIND_TEXT[k.value] for k in SensorKind}
