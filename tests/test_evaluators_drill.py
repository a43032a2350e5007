"""Drill readings are evaluated apart from real ones: own state, own labels, own alerts."""

from __future__ import annotations

import pytest

from tests.cases_rules.kit import Step, evaluator, feed, last_state

# (kind, params, real steps, drill steps): the drill would flip the real state if mixed.
CASES: list[tuple[str, dict[str, object], list[Step], list[Step]]] = [
    ("band", {}, [(0, "r1-h", 61), (20, "r1-h", 59)], [(10, "r1-h", 50, "d1")]),
    ("smoke", {}, [(0, "r1-smoke1", 1)], [(10, "r1-smoke1", 0, "d1")]),
    ("confirmed_fire", {}, [(0, "r1-smoke1", 1)], [(10, "r1-smoke2", 1, "d1")]),
    (
        "fluctuation",
        {},
        [(0, "r1-h", 50), (20, "r1-h", 55)],
        [(10, "r1-h", 70, "d1")],
    ),
    (
        "door_held",
        {"max_open": "1m"},
        [(0, "r1-door", 1), (100, "tick", 0)],
        [(50, "r1-door", 0, "d1")],
    ),
    (
        "door_forced",
        {},
        [(0, "r1-door", 0), (100, "r1-door", 1)],
        [(90, "r1-card", 7, "d1")],
    ),
    ("stuck", {"duration": "1m"}, [(0, "r1-h", 50), (120, "r1-h", 50)], [(60, "r1-h", 80, "d1")]),
]


@pytest.mark.parametrize(("kind", "params", "real", "drill"), CASES, ids=[c[0] for c in CASES])
def test_drill_does_not_touch_real_state(
    kind: str, params: dict[str, object], real: list[Step], drill: list[Step]
) -> None:
    alone = feed(evaluator(kind, **params), real)
    mixed_ev = evaluator(kind, **params)
    mixed = feed(mixed_ev, sorted([*real, *drill], key=lambda s: s[0]))
    real_only = [c for c in mixed if c.drill_id is None]
    assert [(c.active, c.labels) for c in real_only] == [(c.active, c.labels) for c in alone]
    # Negative control: the same readings without their drill id would change the verdicts.
    undrilled: list[Step] = [(s[0], s[1], s[2]) for s in drill]
    merged = feed(evaluator(kind, **params), sorted([*real, *undrilled], key=lambda s: s[0]))
    assert [c.active for c in merged] != [c.active for c in alone]


def test_drill_conditions_are_labelled_and_have_their_own_fingerprint() -> None:
    ev = evaluator("smoke")
    real, drill = feed(ev, [(0, "r1-smoke1", 1), (1, "r1-smoke1", 1, "drill-7")])
    assert drill.drill_id == "drill-7" and real.drill_id is None
    assert drill.labels == {**real.labels, "drill_id": "drill-7"}
    assert drill.fingerprint != real.fingerprint


def test_drill_alarm_clears_without_clearing_the_real_one() -> None:
    ev = evaluator("water_leak")
    conds = feed(
        ev, [(0, "r1-leak", 1), (1, "r1-leak", 1, "d9"), (2, "r1-leak", 0, "d9"), (3, "tick", 0)]
    )
    assert last_state([c for c in conds if c.drill_id is None]) is True
    assert last_state(conds, drill_id="d9") is False
