"""Duty rosters and escalation policies: who is on duty when, and what the file refuses."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from alerting.contacts import load_contacts
from alerting.roster import EscalationConfig, Roster
from gateway.configfile import ConfigError
from tests.servers import REPO

TZ = ZoneInfo("Asia/Shanghai")

ROSTER = Roster.model_validate(
    {
        "id": "keepers",
        "shifts": [
            {
                "days": ["mon", "tue", "wed", "thu", "fri"],
                "start": "08:30",
                "end": "17:30",
                "contacts": ["day"],
            },
            # Weeknights and the whole weekend: from Friday 17:30 the night shift runs on.
            {
                "days": ["mon", "tue", "wed", "thu"],
                "start": "17:30",
                "end": "08:30",
                "contacts": ["night"],
            },
            {"days": ["fri"], "start": "17:30", "end": "08:30", "contacts": ["night"]},
            {"days": ["sat", "sun"], "start": "08:30", "end": "08:30", "contacts": ["weekend"]},
            # Saturday afternoon inspections: two people on duty at once.
            {"days": ["sat"], "start": "14:00", "end": "16:00", "contacts": ["inspector"]},
        ],
        "holidays": [{"date": "2026-01-01", "name": "元旦", "contacts": ["holiday"]}],
    }
)


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-01-06 10:00", ["day"]),  # Tuesday day shift
        ("2026-01-06 08:29", ["night"]),  # Monday's night shift still on, past midnight
        ("2026-01-06 08:30", ["day"]),  # hand-over: the incoming shift from the minute
        ("2026-01-06 17:29", ["day"]),
        ("2026-01-06 17:30", ["night"]),
        ("2026-01-06 23:59", ["night"]),
        ("2026-01-07 00:00", ["night"]),  # across midnight
        ("2026-01-10 03:00", ["night"]),  # Saturday small hours: Friday's night shift
        ("2026-01-10 08:30", ["weekend"]),
        ("2026-01-10 15:00", ["weekend", "inspector"]),  # overlapping shifts: both
        ("2026-01-12 08:29", ["weekend"]),  # Monday morning: Sunday's 24 h shift ends 08:30
        ("2026-01-01 03:00", ["holiday"]),  # a holiday replaces the whole local date
        ("2026-01-01 12:00", ["holiday"]),
        ("2026-01-01 23:59", ["holiday"]),
        ("2026-01-02 00:00", ["night"]),  # the holiday's weekday (Thursday) night resumes
    ],
)
def test_who_is_on_duty(when: str, expected: list[str]) -> None:
    assert ROSTER.on_duty(local(when)) == expected


def test_the_site_time_zone_decides_not_utc() -> None:
    # 01:00 UTC on Tuesday is 09:00 in Beijing: the day shift.
    utc = datetime(2026, 1, 6, 1, 0, tzinfo=ZoneInfo("UTC"))
    assert ROSTER.on_duty(utc.astimezone(TZ)) == ["day"]


def _roster(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "id": "r",
        "shifts": [{"days": ["mon"], "start": "08:00", "end": "08:00", "contacts": ["a"]}],
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("roster", "message"),
    [
        (_roster(), "no shift covers mon 00:00–08:00"),
        (
            _roster(
                shifts=[
                    {
                        "days": list(("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
                        "start": "08:00",
                        "end": "02:00",
                        "contacts": ["a"],
                    }
                ]
            ),
            "no shift covers mon 02:00–08:00",
        ),
        (
            _roster(shifts=[{"days": ["mon"], "start": 1080, "end": "08:00", "contacts": ["a"]}]),
            "write the time in quotes",
        ),
        (
            _roster(
                shifts=[{"days": ["mon"], "start": "25:00", "end": "08:00", "contacts": ["a"]}]
            ),
            "not a time of day",
        ),
        (
            _roster(
                default=["a"],
                holidays=[
                    {"date": "2026-10-01", "contacts": ["a"]},
                    {"date": "2026-10-01", "contacts": ["a"]},
                ],
            ),
            "listed twice",
        ),
    ],
)
def test_bad_rosters_are_refused(roster: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        Roster.model_validate(roster)
    assert message in str(info.value)


def test_a_default_fills_the_gaps() -> None:
    roster = Roster.model_validate(_roster(default=["duty-phone"]))
    assert roster.on_duty(local("2026-01-07 03:00")) == ["duty-phone"]  # a Wednesday
    assert roster.on_duty(local("2026-01-05 09:00")) == ["a"]


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ([{"severity": "critical", "tiers": [{"contacts": ["a"]}, {"contacts": ["b"]}]}], "after"),
        ([{"severity": "critical", "tiers": [{"contacts": ["a"], "after": "5m"}]}], "last tier"),
        ([{"severity": "critical", "tiers": [{"after": "5m"}, {"contacts": ["b"]}]}], "roster"),
        ([{"severity": "critical", "tiers": [{"roster": "nope"}]}], "unknown roster 'nope'"),
        (
            [
                {"severity": "critical", "tiers": [{"contacts": ["a"]}]},
                {"severity": "critical", "tiers": [{"contacts": ["b"]}]},
            ],
            "two policies",
        ),
        ([{"severity": "critical", "tiers": [{"contacts": ["a"], "after": "soon"}, {}]}], "soon"),
    ],
)
def test_bad_policies_are_refused(policies: list[object], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        EscalationConfig.model_validate({"policies": policies})
    assert message in str(info.value)


CONTACTS = """\
contacts:
  - id: keeper
    urls: ["json://127.0.0.1:9/k"]
  - id: officer
    urls: ["json://127.0.0.1:9/o"]
escalation:
  rosters:
    - id: keepers
      shifts:
        - days: [mon, tue, wed, thu, fri, sat, sun]
          start: "08:00"
          end: "08:00"
          contacts: [keeper]
  policies:
    - severity: critical
      tiers:
        - roster: keepers
          after: 5m
        - contacts: [officer, director]
"""


def test_an_unknown_contact_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "contacts.yaml"
    path.write_text(CONTACTS, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_contacts(path, env={})
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:6: escalation:")
    assert "policies[0].tiers[1]: unknown contact 'director'" in problem


def test_an_unquoted_time_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "contacts.yaml"
    path.write_text(
        CONTACTS.replace('start: "08:00"', "start: 18:00").replace(", director", ""),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_contacts(path, env={})
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:11: escalation.rosters[0].shifts[0].start:")
    assert "quotes" in problem


def test_the_example_contacts_file_has_a_valid_escalation_section() -> None:
    contacts = load_contacts(REPO / "examples" / "contacts.yaml", env={})
    config = contacts.model.escalation
    assert config is not None
    policy = config.policy_for("critical")
    assert policy is not None and len(policy.tiers) == 3
    night = config.tier_contacts(policy.tiers[0], local("2026-01-06 03:00"))
    assert night and all(c in contacts for c in night)


def test_check_config_validates_the_escalation_section(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    result = CliRunner().invoke(main, ["check-config", str(REPO / "examples" / "site.yaml")])
    assert result.exit_code == 0, result.output
    assert "escalation critical: roster keepers (5m) → roster security (10m)" in result.output

    # A copy of the example whose night shift now ends at 07:30: an hour nobody covers.
    for name in ("site.yaml", "rules.yaml", "contacts.yaml"):
        text = (REPO / "examples" / name).read_text(encoding="utf-8")
        if name == "contacts.yaml":
            text = text.replace(
                'start: "17:30"\n          end: "08:30"', 'start: "17:30"\n          end: "07:30"'
            )
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check-config", str(tmp_path / "site.yaml")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'contacts.yaml'}:" in result.output
    assert "no shift covers tue 07:30–08:30" in result.output
