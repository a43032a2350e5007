"""``smoke`` and ``water_leak``: immediate, critical, active exactly while the sensor says 1."""

from __future__ import annotations

import pytest

from alerting.model import Severity
from tests.cases_rules.kit import Step, evaluator, feed

CASES: list[tuple[str, str, list[Step], list[bool]]] = [
    ("smoke detected", "smoke", [(0, "r1-smoke1", 1)], [True]),
    ("smoke clear", "smoke", [(0, "r1-smoke1", 0)], [False]),
    ("smoke and reset", "smoke", [(0, "r1-smoke1", 1), (5, "r1-smoke1", 0)], [True, False]),
    ("every detector", "smoke", [(0, "r1-smoke2", 1), (0, "r2-smoke", 1)], [True, True]),
    ("smoke ignores leak sensors", "smoke", [(0, "r1-leak", 1)], []),
    ("leak detected", "water_leak", [(0, "r1-leak", 1)], [True]),
    ("leak dried", "water_leak", [(0, "r1-leak", 1), (9, "r1-leak", 0)], [True, False]),
    ("leak ignores smoke", "water_leak", [(0, "r1-smoke1", 1)], []),
]


@pytest.mark.parametrize(("case", "kind", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_binary_table(case: str, kind: str, steps: list[Step], expected: list[bool]) -> None:
    assert [c.active for c in feed(evaluator(kind), steps)] == expected


@pytest.mark.parametrize(("kind", "text"), [("smoke", "检测到烟雾"), ("water_leak", "检测到漏水")])
def test_immediate_and_critical_by_default(kind: str, text: str) -> None:
    sensor = "r1-smoke1" if kind == "smoke" else "r1-leak"
    (cond,) = feed(evaluator(kind), [(0, sensor, 1)])
    assert cond.severity is Severity.CRITICAL
    assert cond.for_s == 0
    assert text in cond.summary and cond.labels["sensor"] == sensor
