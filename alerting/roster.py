"""Duty rosters and escalation policies: the ``escalation:`` section of the contacts file.

A roster says who is on duty at a moment, in the site's time zone:

- **shifts**: weekdays, a start and an end (``"HH:MM"``, quoted: YAML reads an unquoted
  ``18:00`` as the number 1080). The start is the hand-over: a shift covers its start
  inclusive to its end exclusive, so at 08:00 sharp the day shift is on duty, not the night
  shift. An end not after the start runs past midnight into the next day (``days`` names the
  day the shift *starts*); start equal to end is a 24-hour shift. Overlapping shifts put
  everyone in them on duty.
- **holidays**: dates with their own assignment, which replaces the weekly shifts for that
  whole local date, midnight to midnight.
- **default**: who is on duty when no shift covers the moment. Without it, a week with a gap
  is refused: a gap would mean nobody is called at 3 a.m.

A policy per severity lists tiers: tier 1 (usually the keepers' roster) is told when the
alert's first notice goes out; if nobody acknowledges within the tier's ``after``, the next
tier is told, and so on. A tier names a roster, contacts, or both. Only the last tier has no
``after`` (there is nothing to escalate to).

Pure: the models and the look-up, no I/O. :mod:`alerting.escalation` runs the policies.
"""

from __future__ import annotations

from datetime import date as Date
from datetime import datetime, time, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from alerting.model import Severity
from alerting.rules import Duration, format_duration
from gateway.standards import ID_PATTERN

Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_MIN = 1440
_WEEK_MIN = 7 * _DAY_MIN


def _clock_time(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        parts = text.split(":")
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
            raise ValueError(f"time '{value}' must be written HH:MM, e.g. '08:00'")
        hour, minute = int(parts[0]), int(parts[1])
        if not (0 <= hour <= 23 and 0 <= minute <= 59):
            raise ValueError(f"time '{value}' is not a time of day")
        return time(hour, minute)
    raise ValueError(
        "write the time in quotes, e.g. '18:00' (YAML reads 18:00 unquoted as a number)"
    )


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Shift(_Strict):
    """People on duty on some weekdays from ``start`` (the hand-over) to ``end``."""

    days: list[Weekday] = Field(min_length=1)
    start: ClockTime
    end: ClockTime
    contacts: list[Id] = Field(min_length=1)

    def minutes(self) -> int:
        """The shift's length in minutes (past midnight when end <= start)."""
        start = self.start.hour * 60 + self.start.minute
        end = self.end.hour * 60 + self.end.minute
        return end - start if end > start else end - start + _DAY_MIN

    def covers(self, local: datetime) -> bool:
        """Whether the local (naive or aware) time falls in this shift."""
        for back in (0, 1):
            day = local - timedelta(days=back)
            if DAYS[day.weekday()] not in self.days:
                continue
            begin = datetime.combine(day.date(), self.start, tzinfo=local.tzinfo)
            if begin <= local < begin + timedelta(minutes=self.minutes()):
                return True
        return False


class Holiday(_Strict):
    """A date with its own assignment: replaces the weekly shifts for that local date."""

    date: Date
    name: str = ""
    contacts: list[Id] = Field(min_length=1)


class Roster(_Strict):
    """Who is on duty when: weekly shifts, holidays and a default (module docstring)."""

    id: Id
    name: str = ""
    shifts: list[Shift] = Field(default_factory=list)
    holidays: list[Holiday] = Field(default_factory=list)
    default: list[Id] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Roster:
        seen: set[Date] = set()
        for holiday in self.holidays:
            if holiday.date in seen:
                raise ValueError(f"holiday {holiday.date} is listed twice")
            seen.add(holiday.date)
        if not self.default:
            gap = self.first_gap()
            if gap is not None:
                raise ValueError(
                    f"no shift covers {gap}; add a shift or a 'default' list of contacts"
                )
        return self

    def first_gap(self) -> str | None:
        """The first uncovered span of the week (``"sun 02:00–08:00"``), if any."""
        covered = [False] * _WEEK_MIN
        for shift in self.shifts:
            start = shift.start.hour * 60 + shift.start.minute
            for day in shift.days:
                first = DAYS.index(day) * _DAY_MIN + start
                for m in range(first, first + shift.minutes()):
                    covered[m % _WEEK_MIN] = True
        if all(covered):
            return None
        begin = covered.index(False)
        end = begin
        while end < _WEEK_MIN and not covered[end]:
            end += 1

        def fmt(m: int) -> str:
            return f"{(m % _DAY_MIN) // 60:02d}:{m % 60:02d}"

        from_day, to_day = DAYS[begin // _DAY_MIN], DAYS[(end // _DAY_MIN) % 7]
        if end % _DAY_MIN and to_day != from_day:
            return f"{from_day} {fmt(begin)}–{to_day} {fmt(end)}"
        return f"{from_day} {fmt(begin)}–{fmt(end)}"

    def on_duty(self, local: datetime) -> list[str]:
        """Contact ids on duty at ``local`` (a time in the site's zone), in file order."""
        for holiday in self.holidays:
            if holiday.date == local.date():
                return list(holiday.contacts)
        out: list[str] = []
        for shift in self.shifts:
            if shift.covers(local):
                out.extend(c for c in shift.contacts if c not in out)
        return out or list(self.default)

    def contact_ids(self) -> set[str]:
        ids = set(self.default)
        for shift in self.shifts:
            ids.update(shift.contacts)
        for holiday in self.holidays:
            ids.update(holiday.contacts)
        return ids


class Tier(_Strict):
    """One step of a policy: a roster's people on duty and/or named contacts."""

    roster: Id | None = None
    contacts: list[Id] = Field(default_factory=list)
    after_s: Duration | None = Field(default=None, alias="after")

    @model_validator(mode="after")
    def _someone(self) -> Tier:
        if self.roster is None and not self.contacts:
            raise ValueError("a tier needs a 'roster', 'contacts' or both")
        return self


class Policy(_Strict):
    """The tiers an alert of ``severity`` climbs while nobody acknowledges it."""

    severity: Severity
    tiers: list[Tier] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _timed(self) -> Policy:
        for i, tier in enumerate(self.tiers[:-1]):
            if tier.after_s is None or tier.after_s <= 0:
                raise ValueError(
                    f"tier {i + 1} needs 'after' (how long to wait for an acknowledgement "
                    "before the next tier)"
                )
        if self.tiers[-1].after_s is not None:
            raise ValueError("the last tier has no next tier: remove its 'after'")
        return self


class EscalationConfig(_Strict):
    """The contacts file's ``escalation:`` section: rosters and one policy per severity."""

    rosters: list[Roster] = Field(default_factory=list)
    policies: list[Policy] = Field(min_length=1)

    @model_validator(mode="after")
    def _references(self) -> EscalationConfig:
        ids = [r.id for r in self.rosters]
        for rid in ids:
            if ids.count(rid) > 1:
                raise ValueError(f"duplicate roster id '{rid}'")
        severities = [p.severity for p in self.policies]
        for sev in severities:
            if severities.count(sev) > 1:
                raise ValueError(f"two policies for severity '{sev.value}'")
        for p, policy in enumerate(self.policies):
            for t, tier in enumerate(policy.tiers):
                if tier.roster is not None and tier.roster not in ids:
                    raise ValueError(
                        f"policies[{p}].tiers[{t}].roster: unknown roster '{tier.roster}'"
                    )
        return self

    def roster(self, roster_id: str) -> Roster:
        return next(r for r in self.rosters if r.id == roster_id)

    def policy_for(self, severity: str) -> Policy | None:
        return next((p for p in self.policies if p.severity.value == severity), None)

    def unknown_contacts(self, known: set[str]) -> list[str]:
        """One problem per contact id referenced here but not in the contacts list."""
        problems = []
        for roster in self.rosters:
            for cid in sorted(roster.contact_ids() - known):
                problems.append(f"rosters '{roster.id}': unknown contact '{cid}'")
        for p, policy in enumerate(self.policies):
            for t, tier in enumerate(policy.tiers):
                for cid in tier.contacts:
                    if cid not in known:
                        problems.append(f"policies[{p}].tiers[{t}]: unknown contact '{cid}'")
        return problems

    def tier_contacts(self, tier: Tier, local: datetime) -> list[str]:
        """Who a tier tells at ``local``: the roster's people on duty, then named contacts."""
        out = self.roster(tier.roster).on_duty(local) if tier.roster is not None else []
        out.extend(c for c in tier.contacts if c not in out)
        return out

    def describe(self) -> list[str]:
        """One line per policy, for ``archwatch check-config``."""
        lines = []
        for policy in self.policies:
            steps = []
            for tier in policy.tiers:
                who = "+".join(
                    [*([f"roster {tier.roster}"] if tier.roster else []), *tier.contacts]
                )
                wait = f" ({format_duration(tier.after_s)})" if tier.after_s is not None else ""
                steps.append(f"{who}{wait}")
            lines.append(f"escalation {policy.severity.value}: " + " → ".join(steps))
        return lines
