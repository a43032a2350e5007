"""Door and access rules: ``door_schedule``, ``door_held``, ``door_forced``, ``access_badge``.

T0 is Monday 2026-01-05 10:00 Asia/Shanghai. Room r1 opens mon–fri 08:30–17:30 and
sat 22:00–02:00 (past midnight); r2 has no schedule.
"""

from __future__ import annotations

import pytest

from alerting.model import Severity
from tests.cases_rules.kit import Step, evaluator, feed, last_state

H = 3600
SAT_23 = 5 * 24 * H + 13 * H  # Saturday 23:00

SCHEDULE: list[tuple[str, list[Step], list[bool]]] = [
    ("open in hours", [(0, "r1-door", 1)], [False]),
    ("open after hours", [(8 * H, "r1-door", 1)], [True]),
    (
        "closing after hours clears",
        [(8 * H, "r1-door", 1), (8 * H + 5, "r1-door", 0)],
        [True, False],
    ),
    ("end is exclusive", [(7.5 * H, "r1-door", 1)], [True]),
    ("one second before the end", [(7.5 * H - 1, "r1-door", 1)], [False]),
    ("start is inclusive", [(-1.5 * H, "r1-door", 1)], [False]),
    ("one second before the start", [(-1.5 * H - 1, "r1-door", 1)], [True]),
    ("sunday is closed", [(6 * 24 * H, "r1-door", 1)], [True]),
    ("overnight span, saturday night", [(SAT_23, "r1-door", 1)], [False]),
    ("overnight span, after midnight", [(SAT_23 + 2 * H, "r1-door", 1)], [False]),
    ("overnight span ends at 02:00", [(SAT_23 + 3 * H, "r1-door", 1)], [True]),
    (
        "a door left open past closing turns active on the tick",
        [(7 * H, "r1-door", 1), (7.5 * H - 1, "tick", 0), (7.5 * H, "tick", 0)],
        [False, False, True],
    ),
    ("closed doors are not re-checked", [(0, "r1-door", 0), (8 * H, "tick", 0)], [False]),
    ("rooms without a schedule are not watched", [(8 * H, "r2-door", 1)], []),
]


@pytest.mark.parametrize(("case", "steps", "expected"), SCHEDULE, ids=[c[0] for c in SCHEDULE])
def test_door_schedule_table(case: str, steps: list[Step], expected: list[bool]) -> None:
    assert [c.active for c in feed(evaluator("door_schedule"), steps)] == expected


def test_door_schedule_summary_uses_local_time() -> None:
    (cond,) = feed(evaluator("door_schedule"), [(8 * H, "r1-door", 1)])
    assert cond.summary == "101 纸质档案库 库门 于 18:00 开启，不在开放时间内"


HELD: list[tuple[str, list[Step], list[bool]]] = [
    ("just opened", [(0, "r1-door", 1)], [False]),
    (
        "held exactly max_open is active (inclusive)",
        [(0, "r1-door", 1), (299, "tick", 0), (300, "tick", 0)],
        [False, False, True],
    ),
    (
        "closing clears and restarts the timer",
        [
            (0, "r1-door", 1),
            (300, "tick", 0),
            (310, "r1-door", 0),
            (400, "r1-door", 1),
            (699, "tick", 0),
            (700, "tick", 0),
        ],
        [False, True, False, False, False, True],
    ),
    (
        "repeated open readings do not restart the timer",
        [(0, "r1-door", 1), (200, "r1-door", 1), (300, "r1-door", 1)],
        [False, False, True],
    ),
    ("closed doors tick nothing", [(0, "r1-door", 0), (900, "tick", 0)], [False]),
]


@pytest.mark.parametrize(("case", "steps", "expected"), HELD, ids=[c[0] for c in HELD])
def test_door_held_table(case: str, steps: list[Step], expected: list[bool]) -> None:
    assert [c.active for c in feed(evaluator("door_held", max_open="5m"), steps)] == expected


def test_door_held_override_per_room() -> None:
    ev = evaluator("door_held", max_open="5m", overrides={"r2": {"max_open": "1m"}})
    conds = feed(ev, [(0, "r1-door", 1), (0, "r2-door", 1), (60, "tick", 0)])
    assert last_state(conds, sensor="r1-door") is False
    assert last_state(conds, sensor="r2-door") is True


FORCED_RULE = {"access_window": "60s", "authorised_badges": {"r1": [1234]}}
FORCED: list[tuple[str, list[Step], list[bool]]] = [
    (
        "badge then open within the window (edge inclusive)",
        [(0, "r1-door", 0), (100, "r1-card", 1234), (160, "r1-door", 1)],
        [False, False],
    ),
    (
        "open with no badge at all",
        [(0, "r1-door", 0), (10, "r1-door", 1), (20, "r1-door", 1), (30, "r1-door", 0)],
        [False, True, True, False],
    ),
    (
        "badge too long before",
        [(0, "r1-door", 0), (100, "r1-card", 1234), (161, "r1-door", 1)],
        [False, True],
    ),
    (
        "an unauthorised badge does not open legitimately",
        [(0, "r1-door", 0), (100, "r1-card", 999), (110, "r1-door", 1)],
        [False, True],
    ),
    (
        "a badge in another room does not count",
        [(0, "r1-door", 0), (100, "r2-card", 1234), (110, "r1-door", 1)],
        [False, True],
    ),
    (
        "rooms without a badge list accept any badge",
        [(0, "r2-door", 0), (100, "r2-card", 5), (110, "r2-door", 1)],
        [False, False],
    ),
    ("a door already open at start is not an opening", [(0, "r1-door", 1)], []),
]


@pytest.mark.parametrize(("case", "steps", "expected"), FORCED, ids=[c[0] for c in FORCED])
def test_door_forced_table(case: str, steps: list[Step], expected: list[bool]) -> None:
    assert [c.active for c in feed(evaluator("door_forced", **FORCED_RULE), steps)] == expected


def test_forced_door_is_critical() -> None:
    conds = feed(evaluator("door_forced"), [(0, "r1-door", 0), (1, "r1-door", 1)])
    assert conds[-1].active and conds[-1].severity is Severity.CRITICAL
    assert "强行" in conds[-1].summary


BADGE_RULE = {"authorised_badges": {"r1": [1234, 5678]}, "hold": "10m"}
BADGE: list[tuple[str, list[Step], list[bool]]] = [
    ("authorised badge", [(0, "r1-card", 1234)], []),
    ("unauthorised badge", [(0, "r1-card", 999)], [True]),
    (
        "clears after hold (inclusive)",
        [(0, "r1-card", 999), (599, "tick", 0), (600, "tick", 0), (700, "tick", 0)],
        [True, False],
    ),
    (
        "a second swipe extends the hold",
        [(0, "r1-card", 999), (300, "r1-card", 999), (600, "tick", 0), (900, "tick", 0)],
        [True, True, False],
    ),
    ("rooms not listed are not watched", [(0, "r2-card", 999)], []),
]


@pytest.mark.parametrize(("case", "steps", "expected"), BADGE, ids=[c[0] for c in BADGE])
def test_access_badge_table(case: str, steps: list[Step], expected: list[bool]) -> None:
    assert [c.active for c in feed(evaluator("access_badge", **BADGE_RULE), steps)] == expected


def test_each_badge_is_its_own_alert() -> None:
    conds = feed(evaluator("access_badge", **BADGE_RULE), [(0, "r1-card", 1), (1, "r1-card", 2)])
    assert [c.labels["badge"] for c in conds] == ["1", "2"]
    assert conds[0].fingerprint != conds[1].fingerprint
    assert conds[0].summary == "101 纸质档案库 门禁：卡号 1 无权进入"
