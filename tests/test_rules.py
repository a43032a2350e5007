"""The rules file: loading, validation against the site with file:line messages, overrides,
durations, and the summary ``archwatch check-config`` prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.evaluators import EVALUATORS, build_evaluators
from alerting.model import Severity
from alerting.rules import (
    RULE_KINDS,
    BandRule,
    ThresholdRule,
    Timing,
    format_duration,
    load_rules,
    parse_duration,
    site_rules,
    summarise_rules,
)
from gateway.configfile import ConfigError
from gateway.resources import demo_site_path
from gateway.site import load_site
from tests.cases_rules.kit import rule, site, write


def test_every_rule_kind_has_an_evaluator() -> None:
    assert set(EVALUATORS) == RULE_KINDS
    assert len(RULE_KINDS) == 16


def test_the_demo_rules_load_for_the_demo_site() -> None:
    demo = load_site(demo_site_path())
    rules = site_rules(demo)
    assert rules is not None
    kinds = {r.kind for r in rules.rules}
    assert {
        "band",
        "fluctuation",
        "condensation",
        "smoke",
        "water_leak",
        "confirmed_fire",
        "door_schedule",
        "door_held",
        "offline",
        "calibration_overdue",
    } <= kinds
    band = rules.get("climate-band")
    assert band.for_s <= 30
    assert len(build_evaluators(rules, demo)) == len(rules)


def test_summary_lists_each_rule_with_what_it_watches() -> None:
    demo = load_site(demo_site_path())
    lines = summarise_rules(demo.relative("rules.yaml"), demo)
    assert lines[0].endswith(f"{len(lines) - 1} rules")
    assert "  climate-band: band, warning, 4 sensors, for 20s, overrides for r201" in lines
    assert "  smoke: smoke, critical, 1 sensors" in lines


@pytest.mark.parametrize(
    ("kind", "extra", "severity"),
    [
        ("smoke", {}, Severity.CRITICAL),
        ("water_leak", {}, Severity.CRITICAL),
        ("confirmed_fire", {}, Severity.CRITICAL),
        ("door_forced", {}, Severity.CRITICAL),
        ("band", {}, Severity.WARNING),
        ("offline", {}, Severity.WARNING),
        ("calibration_overdue", {}, Severity.INFO),
        ("door_held", {"max_open": "5m"}, Severity.WARNING),
    ],
)
def test_default_severity_per_kind(kind: str, extra: dict[str, str], severity: Severity) -> None:
    assert rule(kind, **extra).severity is severity


def test_severity_and_durations_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules.yaml",
        """\
        - id: humid
          kind: band
          severity: critical
          for: 1h30m
          keep_firing_for: 90
          scope: {rooms: [r1], kinds: [humidity]}
        """,
    )
    (band,) = load_rules(path, site()).rules
    assert isinstance(band, BandRule)
    assert (band.severity, band.for_s, band.keep_firing_for_s) == (Severity.CRITICAL, 5400, 90)
    watched = [ref.sensor for ref in site().sensors() if band.applies_to(ref)]
    assert watched == ["r1-h"]


def test_overrides_apply_to_their_room_only(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules.yaml",
        """\
        - id: hot
          kind: threshold
          sensor_kind: temperature
          above: 28
          for: 5m
          overrides:
            r2: {above: 16, for: 30s}
        """,
    )
    (hot,) = load_rules(path, site()).rules
    r1, r2 = hot.for_room("r1"), hot.for_room("r2")
    assert isinstance(r1, ThresholdRule) and isinstance(r2, ThresholdRule)
    assert (r1.above, r1.for_s) == (28, 300)
    assert (r2.above, r2.for_s) == (16, 30)
    assert r2.id == "hot" and r2.overrides == {}


# (case, rules file, line, field, message): every problem names file, line and field.
INVALID: list[tuple[str, str, int, str, str]] = [
    ("unknown kind", "- id: a\n  kind: bogus\n", 2, "[0].kind", "unknown rule kind 'bogus'"),
    ("missing kind", "- id: a\n", 1, "[0].kind", "missing"),
    (
        "unknown room",
        "- id: a\n  kind: band\n  scope:\n    rooms: [r1, r9]\n",
        4,
        "[0].scope.rooms[1]",
        "unknown room 'r9'",
    ),
    (
        "unknown sensor",
        "- id: a\n  kind: smoke\n  scope:\n    sensors:\n      - r1-smoke1\n      - nope\n",
        6,
        "[0].scope.sensors[1]",
        "unknown sensor 'nope'",
    ),
    (
        "unknown storage class",
        "- id: a\n  kind: band\n  scope: {storage_classes: [papyrus]}\n",
        3,
        "[0].scope.storage_classes[0]",
        "unknown storage class 'papyrus'",
    ),
    ("other site", "- id: a\n  kind: band\n  scope: {site: s2}\n", 3, "[0].scope.site", "'s2'"),
    ("bad duration", "- id: a\n  kind: band\n  for: 5 minutes\n", 3, "[0].for", "invalid duration"),
    (
        "negative duration",
        "- id: a\n  kind: band\n  keep_firing_for: -5s\n",
        3,
        "[0].keep_firing_for",
        "invalid duration",
    ),
    ("extra key", "- id: a\n  kind: band\n  treshold: 5\n", 3, "[0].treshold", "unknown key"),
    (
        "a parameter of another kind",
        "- id: a\n  kind: smoke\n  margin: 5\n",
        3,
        "[0].margin",
        "unknown key",
    ),
    (
        "missing parameter",
        "- id: a\n  kind: door_held\n",
        1,
        "[0].max_open",
        "Field required",
    ),
    (
        "override for an unknown room",
        "- id: a\n  kind: band\n  overrides:\n    r9: {for: 1m}\n",
        4,
        "[0].overrides.r9",
        "unknown room 'r9'",
    ),
    (
        "unknown key in an override",
        "- id: a\n  kind: band\n  overrides:\n    r1:\n      for: 1m\n      colour: red\n",
        6,
        "[0].overrides.r1.colour",
        "unknown key",
    ),
    (
        "bad duration in an override",
        "- id: a\n  kind: band\n  overrides:\n    r1:\n      for: soon\n",
        5,
        "[0].overrides.r1.for",
        "invalid duration 'soon'",
    ),
    (
        "override of the scope",
        "- id: a\n  kind: band\n  overrides:\n    r1:\n      scope: {}\n",
        5,
        "[0].overrides.r1.scope",
        "cannot be overridden",
    ),
    ("duplicate id", "- id: a\n  kind: band\n- id: a\n  kind: smoke\n", 3, "[1].id", "duplicate"),
    ("non-ASCII id", "- id: 湿度\n  kind: band\n", 1, "[0].id", "should match pattern"),
    (
        "threshold without a limit",
        "- id: a\n  kind: threshold\n  sensor_kind: temperature\n",
        1,
        "[0]",
        "needs 'above', 'below' or both",
    ),
    (
        "rule that matches nothing",
        "- id: a\n  kind: threshold\n  sensor_kind: co2\n  above: 1000\n",
        1,
        "[0].scope",
        "matches no sensor",
    ),
    (
        "forced-door rule without a reader",
        "- id: a\n  kind: door_forced\n  scope:\n    sensors: [r1-door]\n",
        3,
        "[0].scope",
        "room 'r1' has a door but no access reader",
    ),
    (
        "badges for an unknown room",
        "- id: a\n  kind: access_badge\n  authorised_badges:\n    r9: [1]\n",
        4,
        "[0].authorised_badges.r9",
        "unknown room 'r9'",
    ),
]


@pytest.mark.parametrize(
    ("case", "text", "line", "field", "message"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_rules_name_file_line_and_field(
    tmp_path: Path, case: str, text: str, line: int, field: str, message: str
) -> None:
    path = write(tmp_path, "rules.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_rules(path, site())
    assert len(info.value.problems) == 1, info.value.problems
    where, got_field, why = info.value.problems[0].split(": ", 2)
    assert where == f"{path}:{line}"
    assert got_field == field
    assert message in why


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules.yaml",
        """\
        - id: a
          kind: bogus
        - id: b
          kind: band
          scope: {rooms: [nowhere]}
        - id: c
          kind: smoke
          for: later
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_rules(path, site())
    assert [p.split(": ")[1] for p in info.value.problems] == [
        "[0].kind",
        "[1].scope.rooms[0]",
        "[2].for",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "file is empty"), ("a: 1\n", "must be a YAML list"), ("- [unclosed", "invalid YAML")],
)
def test_unreadable_rules_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "rules.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_rules(path, site())
    assert message in "\n".join(info.value.problems)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("5", 5.0),  # a bare number is seconds
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86_400.0),
        ("1w", 604_800.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        (" 20s ", 20.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad",
    ["", "5 m", "m", "-1s", "5min", "1h-30m", "1e3s", "٣s", "1" * 400 + "s", True, None],
)
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@given(st.integers(min_value=0, max_value=10**9))
def test_duration_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["s", "m", "h", "d", "w"])),
        min_size=1,
        max_size=5,
    )
)
def test_duration_parts_add_up(parts: list[tuple[int, str]]) -> None:
    size = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == sum(n * size[u] for n, u in parts)


@given(st.text(max_size=20))
def test_duration_parser_never_crashes(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert seconds >= 0


def test_timing_from_the_rules_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "rules.yaml",
        """\
        timing:
          group_wait: 0s
          group_interval: 30s
          repeat_interval: 2h
        rules:
        - id: humid
          kind: band
          scope: {rooms: [r1], kinds: [humidity]}
        """,
    )
    loaded = load_rules(path, site())
    assert [r.id for r in loaded.rules] == ["humid"]
    t = loaded.timing
    assert (t.group_wait_s, t.group_interval_s, t.repeat_interval_s) == (0, 30, 7200)
    # Only some set: the others keep the defaults; a plain list: all defaults.
    partial = write(tmp_path, "p.yaml", "timing: {repeat_interval: 1h}\nrules: []\n")
    assert load_rules(partial, site()).timing == Timing(repeat_interval=3600)
    plain = write(tmp_path, "l.yaml", "- {id: humid, kind: band, scope: {rooms: [r1]}}\n")
    assert load_rules(plain, site()).timing == Timing()
    assert Timing() == Timing(group_wait="10s", group_interval="1m", repeat_interval="30m")


@pytest.mark.parametrize(
    ("timing", "where", "why"),
    [
        ("{group_wait: 1h}", "timing.group_wait", "less than or equal to 600"),
        ("{group_wait: -5}", "timing.group_wait", "not negative"),
        ("{group_interval: 0s}", "timing.group_interval", "greater than or equal to 1"),
        ("{repeat_interval: 30s}", "timing.repeat_interval", "greater than or equal to 60"),
        ("{repeat_interval: 2d}", "timing.repeat_interval", "less than or equal to 86400"),
        ("{repeat_interval: soon}", "timing.repeat_interval", "duration"),
        ("{group_interval: 1h, repeat_interval: 10m}", "timing", "must not be shorter"),
        ("{group_wiat: 5s}", "timing.group_wiat", "unknown key"),
        ("[10s]", "timing", "valid dictionary"),
    ],
)
def test_bad_timing_names_file_line_and_field(
    tmp_path: Path, timing: str, where: str, why: str
) -> None:
    text = f"timing: {timing}\nrules:\n- {{id: x, kind: band, for: nope}}\n"
    path = write(tmp_path, "rules.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_rules(path, site())
    first, *rest = info.value.problems
    assert first.startswith(f"{path}:1: {where}: ") and why in first, first
    assert any(p.startswith(f"{path}:3: [0].for") for p in rest), rest  # rules still checked


def test_a_rules_mapping_needs_its_rules_list(tmp_path: Path) -> None:
    path = write(tmp_path, "rules.yaml", "timing: {group_wait: 5s}\n")
    with pytest.raises(ConfigError) as info:
        load_rules(path, site())
    assert "'rules:'" in "\n".join(info.value.problems)
