"""Dew point (Magnus) and ``condensation``: room air within ``margin`` °C of its dew point."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.formulas import dew_point
from tests.cases_rules.kit import Step, evaluator, feed


@pytest.mark.parametrize(
    ("t", "rh", "td"),
    [(20.0, 50.0, 9.26), (10.0, 50.0, 0.05)],  # domain.md's check values
)
def test_dew_point_check_values(t: float, rh: float, td: float) -> None:
    assert round(dew_point(t, rh), 2) == td


@given(st.floats(-30, 50), st.floats(1, 100))
def test_dew_point_never_above_air_temperature(t: float, rh: float) -> None:
    assert dew_point(t, rh) <= t + 1e-9


def test_saturated_air_is_at_its_dew_point() -> None:
    assert dew_point(17.0, 100.0) == pytest.approx(17.0)


@pytest.mark.parametrize("rh", [0.0, -1.0, 100.1])
def test_dew_point_refuses_impossible_humidity(rh: float) -> None:
    with pytest.raises(ValueError):
        dew_point(20.0, rh)


# At 20 °C: RH 85 -> gap 2.60 °C; 88 -> 2.05; 89 -> 1.87; 90 -> 1.69; 100 -> 0.
# At 35 °C, RH 89 -> 2.09.
CASES: list[tuple[str, dict[str, object], list[Step], list[bool]]] = [
    ("no pair yet", {}, [(0, "r1-t", 20)], []),
    ("gap above margin", {}, [(0, "r1-t", 20), (1, "r1-h", 88)], [False]),
    ("gap within margin", {}, [(0, "r1-t", 20), (1, "r1-h", 90)], [True]),
    (
        "clears only past margin + hysteresis",
        {},
        [(0, "r1-t", 20), (1, "r1-h", 90), (2, "r1-h", 88), (3, "r1-h", 85)],
        [True, True, False],
    ),
    (
        "margin 0 watches the air itself (inclusive)",
        {"margin": 0, "hysteresis": 0},
        [(0, "r1-t", 20), (1, "r1-h", 99), (2, "r1-h", 100)],
        [False, True],
    ),
    (
        "any temperature sensor of the room pairs with its humidity",
        {},
        [(0, "r1-t", 35), (1, "r1-h", 89), (2, "r1-t2", 20)],
        [False, True],
    ),
    (
        "readings too far apart are not paired",
        {"max_skew": "5m"},
        [(0, "r1-t", 20), (301, "r1-h", 90)],
        [],
    ),
    ("rooms are not mixed", {}, [(0, "r1-t", 20), (1, "r2-h", 90)], []),
    ("bone-dry air has no risk", {}, [(0, "r1-t", 20), (1, "r1-h", 0)], [False]),
]


@pytest.mark.parametrize(("case", "params", "steps", "expected"), CASES, ids=[c[0] for c in CASES])
def test_condensation_table(
    case: str, params: dict[str, object], steps: list[Step], expected: list[bool]
) -> None:
    assert [c.active for c in feed(evaluator("condensation", **params), steps)] == expected


def test_condition_is_per_room_and_names_the_dew_point() -> None:
    conds = feed(evaluator("condensation"), [(0, "r1-t", 20), (1, "r1-h", 90)])
    assert conds[-1].labels == {"site": "s1", "building": "b1", "room": "r1"}
    assert conds[-1].annotations["dew_point"] == f"{dew_point(20, 90):.2f}"
    assert "结露" in conds[-1].summary and "101 纸质档案库" in conds[-1].summary
