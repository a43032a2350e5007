"""``rate_of_change``: a change of at least ``delta`` within ``window`` (inclusive)."""

from __future__ import annotations

import pytest

from tests.cases_rules.kit import Step, evaluator, feed

UP = {"sensor_kind": "humidity", "delta": 5, "window": "30m", "direction": "up"}
DOWN = {**UP, "direction": "down"}
EITHER = {**UP, "direction": "either"}
CASES: list[tuple[str, dict[str, object], list[Step], list[bool]]] = [
    ("rise just under delta", UP, [(0, "r1-h", 50), (600, "r1-h", 54.9)], [False, False]),
    ("rise equal to delta", UP, [(0, "r1-h", 50), (1200, "r1-h", 55)], [False, True]),
    (
        "a rise spread over more than the window is not fast",
        UP,
        [(0, "r1-h", 50), (1801, "r1-h", 55)],
        [False, False],
    ),
    (
        "the window edge is inclusive",
        UP,
        [(0, "r1-h", 50), (1800, "r1-h", 55)],
        [False, True],
    ),
    (
        "measured from the lowest point in the window",
        UP,
        [(0, "r1-h", 52), (300, "r1-h", 49), (600, "r1-h", 54)],
        [False, False, True],
    ),
    (
        "clears when the low point ages out",
        UP,
        [(0, "r1-h", 50), (600, "r1-h", 55), (2401, "r1-h", 55)],
        [False, True, False],
    ),
    ("falls ignored by up", UP, [(0, "r1-h", 60), (60, "r1-h", 50)], [False, False]),
    ("fall by down", DOWN, [(0, "r1-h", 60), (60, "r1-h", 55)], [False, True]),
    ("rise ignored by down", DOWN, [(0, "r1-h", 50), (60, "r1-h", 60)], [False, False]),
    (
        "either way",
        EITHER,
        [(0, "r1-h", 60), (60, "r1-h", 54), (90, "r1-h", 60)],
        [False, True, True],
    ),
    ("other kinds ignored", UP, [(0, "r1-t", 10), (60, "r1-t", 30)], []),
]


@pytest.mark.parametrize(("case", "params", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rate_of_change_table(
    case: str, params: dict[str, object], steps: list[Step], expected: list[bool]
) -> None:
    assert [c.active for c in feed(evaluator("rate_of_change", **params), steps)] == expected


def test_summary_says_how_much_and_how_fast() -> None:
    conds = feed(evaluator("rate_of_change", **UP), [(0, "r1-h", 50), (600, "r1-h", 56)])
    assert conds[-1].summary == "101 纸质档案库 湿度 30m 内上升 6 %RH，现为 56 %RH"
    assert conds[-1].value == pytest.approx(6)
