"""``confirmed_fire``: two detectors of one room, or smoke plus a rise of ``rise`` °C within
``window`` (both inclusive); one condition per room."""

from __future__ import annotations

import pytest

from alerting.model import Severity
from tests.cases_rules.kit import Step, evaluator, feed

RULE = {"rise": 5, "window": "10m"}
CASES: list[tuple[str, list[Step], list[bool]]] = [
    ("one detector is not confirmation", [(0, "r1-smoke1", 1)], [False]),
    ("two detectors confirm", [(0, "r1-smoke1", 1), (3, "r1-smoke2", 1)], [False, True]),
    (
        "a detector resetting unconfirms",
        [(0, "r1-smoke1", 1), (3, "r1-smoke2", 1), (9, "r1-smoke2", 0)],
        [False, True, False],
    ),
    (
        "detectors in different rooms do not confirm",
        [(0, "r1-smoke1", 1), (3, "r2-smoke", 1)],
        [False, False],
    ),
    (
        "smoke plus a rise equal to `rise`",
        [(0, "r1-t", 20), (60, "r1-smoke1", 1), (120, "r1-t", 25)],
        [False, False, True],
    ),
    (
        "smoke plus a rise just under",
        [(0, "r1-t", 20), (60, "r1-smoke1", 1), (120, "r1-t", 24.9)],
        [False, False, False],
    ),
    (
        "a rise before the smoke counts when the smoke comes",
        [(0, "r1-t", 20), (60, "r1-t", 26), (90, "r1-smoke1", 1)],
        [False, False, True],
    ),
    (
        "the rise must be within the window",
        [(0, "r1-t", 20), (60, "r1-smoke1", 1), (601, "r1-t", 25)],
        [False, False, False],
    ),
    (
        "the window edge is inclusive",
        [(0, "r1-t", 20), (60, "r1-smoke1", 1), (600, "r1-t", 25)],
        [False, False, True],
    ),
    (
        "a rise on another temperature sensor of the room",
        [(0, "r1-t2", 20), (10, "r1-smoke1", 1), (20, "r1-t2", 30)],
        [False, False, True],
    ),
    (
        "a rise in another room does not confirm",
        [(0, "r2-t", 10), (10, "r1-smoke1", 1), (20, "r2-t", 30)],
        [False, False, False],
    ),
    ("a rise without smoke is not a fire", [(0, "r1-t", 20), (60, "r1-t", 40)], [False, False]),
]


@pytest.mark.parametrize(("case", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_confirmed_fire_table(case: str, steps: list[Step], expected: list[bool]) -> None:
    assert [c.active for c in feed(evaluator("confirmed_fire", **RULE), steps)] == expected


def test_labels_are_per_room_and_severity_critical() -> None:
    conds = feed(evaluator("confirmed_fire"), [(0, "r1-smoke1", 1), (1, "r1-smoke2", 1)])
    assert conds[-1].labels == {"site": "s1", "building": "b1", "room": "r1"}
    assert conds[-1].severity is Severity.CRITICAL
    assert conds[-1].rule_kind == "confirmed_fire"
    assert "确认火警" in conds[-1].summary
    assert conds[0].fingerprint == conds[-1].fingerprint
