"""``fluctuation``: max − min within the rolling window against the profile's allowed span."""

from __future__ import annotations

import pytest

from tests.cases_rules.kit import Step, evaluator, feed

H = 3600
DAY = 24 * H
# paper: ±5 %RH, mode span -> 10 %RH allowed; ±2 °C -> 4 °C. strict_paper: 5 %RH.
CASES: list[tuple[str, dict[str, object], list[Step], list[bool]]] = [
    ("span equal to the limit is fine", {}, [(0, "r1-h", 50), (H, "r1-h", 60)], [False, False]),
    (
        "span above the limit",
        {},
        [(0, "r1-h", 50), (H, "r1-h", 60), (2 * H, "r1-h", 60.1)],
        [False, False, True],
    ),
    ("temperature span 4 °C allowed", {}, [(0, "r1-t", 18), (H, "r1-t", 22)], [False, False]),
    ("temperature span over 4 °C", {}, [(0, "r1-t", 18), (H, "r1-t", 22.1)], [False, True]),
    (
        "a sample exactly 24 h old still counts; one second later it has aged out",
        {},
        [(0, "r1-h", 50), (H, "r1-h", 60.1), (DAY, "r1-h", 55), (DAY + 1, "r1-h", 55)],
        [False, True, True, False],
    ),
    (
        "falling swing counts too",
        {},
        [(0, "r1-h", 60), (H, "r1-h", 55), (2 * H, "r1-h", 49.9)],
        [False, False, True],
    ),
    (
        "rule window shorter than the profile's",
        {"window_hours": 1},
        [(0, "r1-h", 50), (H + 1, "r1-h", 61)],
        [False, False],
    ),
    (
        "strict profile allows only the ± itself",
        {},
        [(0, "r3-h", 50), (H, "r3-h", 55), (2 * H, "r3-h", 55.1)],
        [False, False, True],
    ),
    ("sensors are separate", {}, [(0, "r1-t", 15), (H, "r1-t2", 23)], [False, False]),
]


@pytest.mark.parametrize(("case", "params", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_fluctuation_table(
    case: str, params: dict[str, object], steps: list[Step], expected: list[bool]
) -> None:
    assert [c.active for c in feed(evaluator("fluctuation", **params), steps)] == expected


def test_summary_and_value_are_the_span() -> None:
    conds = feed(evaluator("fluctuation"), [(0, "r1-h", 48), (H, "r1-h", 60.5)])
    assert conds[-1].value == pytest.approx(12.5)
    assert conds[-1].summary == (
        "101 纸质档案库 湿度 24 小时内波动 12.5 %RH（48–60.5 %RH），允许 10 %RH"
    )


def test_window_memory_stays_bounded_on_a_monotonic_series() -> None:
    """A steady rise keeps one min candidate per sample only within the window."""
    ev = evaluator("fluctuation", window_hours=1)
    steps: list[Step] = [(t * 60.0, "r1-t", 15 + t * 0.001) for t in range(600)]
    feed(ev, steps)
    window = next(iter(ev._windows.values()))  # type: ignore[attr-defined]
    assert len(window) <= 61
