"""The rules file: a YAML list of alert rules, validated with pydantic and against the site.

Each rule has an ASCII ``id``, a ``kind`` (which evaluator runs it), a ``severity`` (default
per kind), a ``scope`` (default: everything the kind applies to), ``for`` and
``keep_firing_for`` durations (applied by the lifecycle), kind-specific parameters, and
``overrides`` per room (any parameter but id, kind, scope). Unknown keys are refused; every
problem is reported with its file, line and field, like the site file.

Durations are strings with units, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1h30m"``, or a
plain number of seconds.

The file is either that list, or a mapping with the list under ``rules:`` and the
notification timing under ``timing:`` (:class:`Timing`: ``group_wait``, ``group_interval``,
``repeat_interval``; each optional, defaults as in :mod:`alerting.dispatch`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from alerting.dispatch import DispatchConfig
from alerting.model import Severity
from gateway.configfile import ConfigError, format_loc, read_yaml
from gateway.reading import BINARY_KINDS, SensorKind
from gateway.site import OUTDOOR_ROOM, SensorRef, Site
from gateway.standards import ID_PATTERN

Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]

_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
# ASCII digits only: str.isdigit-style Unicode digits in a config file are a typo, not a number.
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", re.ASCII)
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$", re.ASCII)


def parse_duration(value: object) -> float:
    """Seconds in ``value``: ``"90s"``, ``"5m"``, ``"1h30m"``, ``"2d"`` or a number of seconds.

    Refuses negatives, booleans, non-finite numbers, empty strings and unknown units.
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text, re.ASCII):
            seconds = float(text)
        elif _WHOLE.match(text):
            seconds = sum(float(n) * _UNIT_S[u] for n, u in _PART.findall(text))
        else:
            raise ValueError(
                f"invalid duration '{value}' (use e.g. '30s', '5m', '2h', '1d', '1h30m')"
            )
    else:
        raise ValueError("a duration is a number of seconds or a string like '5m'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration '{value}': must be finite and not negative")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest ``1h30m``-style spelling of a whole number of seconds (``0s`` for 0)."""
    whole = int(seconds)
    if whole != seconds or whole < 0:
        return f"{seconds}s"
    out = ""
    for unit in ("w", "d", "h", "m", "s"):
        size = int(_UNIT_S[unit])
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out or "0s"


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Scope(_Strict):
    """Which sensors and rooms a rule watches; an empty (absent) list means "all"."""

    site: Id | None = None
    buildings: list[Id] = Field(default_factory=list)
    rooms: list[Id] = Field(default_factory=list)
    storage_classes: list[Id] = Field(default_factory=list)
    kinds: list[SensorKind] = Field(default_factory=list)
    sensors: list[Id] = Field(default_factory=list)

    def matches(self, ref: SensorRef) -> bool:
        return (
            (self.site is None or ref.site == self.site)
            and (not self.buildings or ref.building in self.buildings)
            and (not self.rooms or ref.room in self.rooms)
            and (not self.storage_classes or ref.storage_class in self.storage_classes)
            and (not self.kinds or ref.kind in self.kinds)
            and (not self.sensors or ref.sensor in self.sensors)
        )


class RuleBase(_Strict):
    """Fields every rule has. Subclasses add their kind's parameters."""

    # Sensor kinds the rule's evaluator looks at (None: every kind).
    sensor_kinds: ClassVar[frozenset[SensorKind] | None] = None
    # Whether outdoor sensors are left out (no standards profile, no room to act on).
    indoor_only: ClassVar[bool] = False

    id: Id
    kind: str
    severity: Severity = Severity.WARNING
    scope: Scope = Field(default_factory=Scope)
    for_s: Duration = Field(default=0.0, alias="for")
    keep_firing_for_s: Duration = Field(default=0.0, alias="keep_firing_for")
    overrides: dict[Id, dict[str, Any]] = Field(default_factory=dict)
    description: str = ""

    def applies_to(self, ref: SensorRef) -> bool:
        """Whether this rule watches the sensor (its scope and the kinds it understands)."""
        if self.indoor_only and ref.room == OUTDOOR_ROOM:
            return False
        kinds = self.watched_kinds()
        return (kinds is None or ref.kind in kinds) and self.scope.matches(ref)

    def watched_kinds(self) -> frozenset[SensorKind] | None:
        return self.sensor_kinds

    def site_problems(self, site: Site) -> list[tuple[tuple[int | str, ...], str]]:
        """Problems of this rule against the site that its own fields cannot show."""
        return []

    def for_room(self, room: str) -> RuleBase:
        """The rule with ``room``'s overrides applied (itself when the room has none)."""
        override = self.overrides.get(room)
        if not override:
            return self
        base = self.model_dump(by_alias=True, exclude={"overrides"})
        return type(self).model_validate({**base, **override})


class _Hysteresis(_Strict):
    temperature: float = Field(default=0.5, ge=0)
    humidity: float = Field(default=2.0, ge=0)

    def for_kind(self, kind: SensorKind) -> float:
        return self.temperature if kind is SensorKind.TEMPERATURE else self.humidity


_CLIMATE = frozenset({SensorKind.TEMPERATURE, SensorKind.HUMIDITY})


class BandRule(RuleBase):
    """The room's standards-profile band for temperature and humidity (inclusive)."""

    sensor_kinds = _CLIMATE
    indoor_only = True
    kind: Literal["band"]
    hysteresis: _Hysteresis = Field(default_factory=_Hysteresis)


class ThresholdRule(RuleBase):
    """A fixed limit on one sensor kind: active above ``above`` or below ``below``."""

    kind: Literal["threshold"]
    sensor_kind: SensorKind
    above: float | None = None
    below: float | None = None
    hysteresis: float = Field(default=0.0, ge=0)

    def watched_kinds(self) -> frozenset[SensorKind] | None:
        return frozenset({self.sensor_kind})

    @model_validator(mode="after")
    def _a_limit(self) -> ThresholdRule:
        if self.above is None and self.below is None:
            raise ValueError("a threshold rule needs 'above', 'below' or both")
        if self.above is not None and self.below is not None and self.below >= self.above:
            raise ValueError("'below' must be less than 'above'")
        return self


class FluctuationRule(RuleBase):
    """The profile's 24-hour swing limit over a rolling window (max minus min)."""

    sensor_kinds = _CLIMATE
    indoor_only = True
    kind: Literal["fluctuation"]
    window_hours: float | None = Field(default=None, gt=0, le=24 * 31)


class RateOfChangeRule(RuleBase):
    """A change of at least ``delta`` within ``window`` (e.g. RH up 5 points in 30 minutes)."""

    kind: Literal["rate_of_change"]
    sensor_kind: SensorKind
    delta: float = Field(gt=0)
    window_s: Duration = Field(alias="window")
    direction: Literal["up", "down", "either"] = "either"

    def watched_kinds(self) -> frozenset[SensorKind] | None:
        return frozenset({self.sensor_kind})

    @model_validator(mode="after")
    def _window(self) -> RateOfChangeRule:
        if self.window_s <= 0:
            raise ValueError("'window' must be longer than zero")
        return self


class CondensationRule(RuleBase):
    """Room air temperature within ``margin`` °C of its dew point (see the evaluator)."""

    sensor_kinds = _CLIMATE
    indoor_only = True
    kind: Literal["condensation"]
    margin: float = Field(default=2.0, ge=0, le=30)
    hysteresis: float = Field(default=0.5, ge=0)
    max_skew_s: Duration = Field(default=600.0, alias="max_skew")


class SmokeRule(RuleBase):
    """A smoke detector reports smoke (value 1)."""

    sensor_kinds = frozenset({SensorKind.SMOKE})
    kind: Literal["smoke"]
    severity: Severity = Severity.CRITICAL


class WaterLeakRule(RuleBase):
    """A leak sensor reports water (value 1)."""

    sensor_kinds = frozenset({SensorKind.WATER_LEAK})
    kind: Literal["water_leak"]
    severity: Severity = Severity.CRITICAL


class ConfirmedFireRule(RuleBase):
    """Smoke on two detectors of a room, or smoke plus a temperature rise in that room."""

    sensor_kinds = frozenset({SensorKind.SMOKE, SensorKind.TEMPERATURE})
    indoor_only = True  # outdoor sensors have no room to confirm a fire in
    kind: Literal["confirmed_fire"]
    severity: Severity = Severity.CRITICAL
    rise: float = Field(default=5.0, gt=0)
    window_s: Duration = Field(default=600.0, alias="window")


class DoorScheduleRule(RuleBase):
    """A door open outside its room's opening hours (site timezone)."""

    sensor_kinds = frozenset({SensorKind.DOOR})
    kind: Literal["door_schedule"]


class DoorHeldRule(RuleBase):
    """A door held open for ``max_open`` or longer."""

    sensor_kinds = frozenset({SensorKind.DOOR})
    kind: Literal["door_held"]
    max_open_s: Duration = Field(alias="max_open")


class DoorForcedRule(RuleBase):
    """A door opened with no valid badge read in its room within ``access_window`` before."""

    sensor_kinds = frozenset({SensorKind.DOOR, SensorKind.ACCESS})
    kind: Literal["door_forced"]
    severity: Severity = Severity.CRITICAL
    access_window_s: Duration = Field(default=60.0, alias="access_window")
    # Per room; a room absent here accepts any badge as valid for opening its door.
    authorised_badges: dict[Id, list[int]] = Field(default_factory=dict)

    def site_problems(self, site: Site) -> list[tuple[tuple[int | str, ...], str]]:
        # Without a reader in scope every opening of the room's door would count as forced.
        watched = [ref for ref in site.sensors() if self.applies_to(ref)]
        readers = {ref.room for ref in watched if ref.kind is SensorKind.ACCESS}
        doors = sorted({ref.room for ref in watched if ref.kind is SensorKind.DOOR})
        return [
            (("scope",), f"room '{room}' has a door but no access reader in scope")
            for room in doors
            if room not in readers
        ]


class AccessBadgeRule(RuleBase):
    """A badge presented in a room it is not authorised for."""

    sensor_kinds = frozenset({SensorKind.ACCESS})
    kind: Literal["access_badge"]
    authorised_badges: dict[Id, list[int]]
    # How long after the last refused swipe the alert clears by itself.
    hold_s: Duration = Field(default=600.0, alias="hold")


class OfflineRule(RuleBase):
    """No reading from a sensor for ``intervals`` × its device's interval."""

    kind: Literal["offline"]
    # None: the device's own ``offline_after``.
    intervals: int | None = Field(default=None, ge=1, le=100_000)


class StuckRule(RuleBase):
    """A value unchanged (within ``tolerance``) for ``duration``; binary kinds are skipped."""

    kind: Literal["stuck"]
    duration_s: Duration = Field(default=6 * 3600.0, alias="duration")
    tolerance: float = Field(default=0.0, ge=0)

    def applies_to(self, ref: SensorRef) -> bool:
        return (
            ref.kind not in BINARY_KINDS
            and ref.kind is not SensorKind.ACCESS
            and (super().applies_to(ref))
        )


class BatteryLowRule(RuleBase):
    """A battery below ``threshold`` percent."""

    sensor_kinds = frozenset({SensorKind.BATTERY})
    kind: Literal["battery_low"]
    threshold: float = Field(default=20.0, gt=0, le=100)
    hysteresis: float = Field(default=5.0, ge=0)


class CalibrationOverdueRule(RuleBase):
    """A sensor whose calibration due date is before today (site timezone)."""

    kind: Literal["calibration_overdue"]
    severity: Severity = Severity.INFO

    def applies_to(self, ref: SensorRef) -> bool:
        return ref.spec.calibration is not None and super().applies_to(ref)


Rule = Annotated[
    BandRule
    | ThresholdRule
    | FluctuationRule
    | RateOfChangeRule
    | CondensationRule
    | SmokeRule
    | WaterLeakRule
    | ConfirmedFireRule
    | DoorScheduleRule
    | DoorHeldRule
    | DoorForcedRule
    | AccessBadgeRule
    | OfflineRule
    | StuckRule
    | BatteryLowRule
    | CalibrationOverdueRule,
    Field(discriminator="kind"),
]
RULE_TYPES: tuple[type[RuleBase], ...] = (
    BandRule,
    ThresholdRule,
    FluctuationRule,
    RateOfChangeRule,
    CondensationRule,
    SmokeRule,
    WaterLeakRule,
    ConfirmedFireRule,
    DoorScheduleRule,
    DoorHeldRule,
    DoorForcedRule,
    AccessBadgeRule,
    OfflineRule,
    StuckRule,
    BatteryLowRule,
    CalibrationOverdueRule,
)
RULE_KINDS: frozenset[str] = frozenset(
    str(get_args(t.model_fields["kind"].annotation)[0]) for t in RULE_TYPES
)
_RULE: TypeAdapter[RuleBase] = TypeAdapter(Rule)
_NOT_OVERRIDABLE = ("id", "kind", "scope", "overrides")


class Timing(_Strict):
    """The rules file's ``timing:``: how notifications are grouped, spaced and repeated (the
    timing model of :mod:`alerting.dispatch`). Bounded so that a typo cannot delay a fire
    alarm by an hour or repeat an unanswered one only once a week."""

    group_wait_s: Duration = Field(default=10.0, alias="group_wait", ge=0, le=600)
    group_interval_s: Duration = Field(default=60.0, alias="group_interval", ge=1, le=3600)
    repeat_interval_s: Duration = Field(default=1800.0, alias="repeat_interval", ge=60, le=86_400)

    @model_validator(mode="after")
    def _ordered(self) -> Timing:
        if self.repeat_interval_s < self.group_interval_s:
            raise ValueError(
                f"repeat_interval ({format_duration(self.repeat_interval_s)}) must not be "
                f"shorter than group_interval ({format_duration(self.group_interval_s)})"
            )
        return self

    def dispatch(self) -> DispatchConfig:
        """The dispatcher's configuration with these times (grouping by room unchanged)."""
        return DispatchConfig(
            group_wait_s=self.group_wait_s,
            group_interval_s=self.group_interval_s,
            repeat_interval_s=self.repeat_interval_s,
        )


class RuleSet:
    """The validated rules of one site, in file order, and the file's notification timing."""

    def __init__(self, path: Path, rules: list[RuleBase], timing: Timing | None = None) -> None:
        self.path = path
        self.rules = rules
        self.timing = timing or Timing()

    def __iter__(self) -> Iterator[RuleBase]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> RuleBase:
        return next(r for r in self.rules if r.id == rule_id)


Problem = tuple[tuple[int | str, ...], str]


def _cross_check(rules: list[tuple[int, RuleBase]], site: Site) -> list[Problem]:
    """Problems no single field can see: references into the site, duplicates, overrides."""
    problems: list[Problem] = []
    buildings = {b.id for b in site.model.buildings}
    rooms = {r.id for _, r in site.rooms()}
    sensors = {s.sensor for s in site.sensors()}
    seen: set[str] = set()
    for i, rule in rules:
        before = len(problems)
        if rule.id in seen:
            problems.append(((i, "id"), f"duplicate rule id '{rule.id}'"))
        seen.add(rule.id)
        scope = rule.scope
        if scope.site is not None and scope.site != site.id:
            problems.append(((i, "scope", "site"), f"site '{scope.site}' is not '{site.id}'"))
        for name, noun, known, items in (
            ("buildings", "building", buildings, scope.buildings),
            ("rooms", "room", rooms, scope.rooms),
            (
                "storage_classes",
                "storage class",
                set(site.standards.profiles),
                scope.storage_classes,
            ),
            ("sensors", "sensor", sensors, scope.sensors),
        ):
            for j, item in enumerate(items):
                if item not in known:
                    problems.append(
                        (
                            (i, "scope", name, j),
                            f"unknown {noun} '{item}' (known: {', '.join(sorted(known))})",
                        )
                    )
        badges = getattr(rule, "authorised_badges", {})
        for room in badges:
            if room not in rooms:
                problems.append(((i, "authorised_badges", room), f"unknown room '{room}'"))
        for room, override in rule.overrides.items():
            loc: tuple[int | str, ...] = (i, "overrides", room)
            if room not in rooms:
                problems.append((loc, f"unknown room '{room}' (known: {', '.join(sorted(rooms))})"))
                continue
            fixed = [k for k in override if k in _NOT_OVERRIDABLE]
            for key in fixed:
                problems.append(((*loc, key), f"'{key}' cannot be overridden per room"))
            if fixed:
                continue
            try:
                rule.for_room(room)
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    where = (*loc, *err["loc"])
                    msg = err["msg"]
                    if err["type"] == "extra_forbidden":
                        msg = "unknown key (check spelling; unknown keys are refused, not ignored)"
                    problems.append((where, msg))
        problems.extend(((i, *loc), msg) for loc, msg in rule.site_problems(site))
        if len(problems) == before and not any(rule.applies_to(ref) for ref in site.sensors()):
            problems.append(((i, "scope"), f"rule '{rule.id}' matches no sensor of the site"))
    return problems


def _format(path: Path, problems: list[Problem], lines: dict[tuple[str, ...], int]) -> list[str]:
    out = []
    for loc, msg in problems:
        parts = tuple(str(p) for p in loc)
        line = next(
            (lines[parts[:n]] for n in range(len(parts), 0, -1) if parts[:n] in lines), None
        )
        where = f"{path}:{line}" if line else str(path)
        out.append(f"{where}: {format_loc(loc)}: {msg}")
    return out


def _parse(data: list[Any]) -> tuple[list[tuple[int, RuleBase]], list[Problem]]:
    """Validate each rule on its own, so one bad rule does not hide the others' problems."""
    rules: list[tuple[int, RuleBase]] = []
    problems: list[Problem] = []
    for i, item in enumerate(data):
        kind = item.get("kind") if isinstance(item, dict) else None
        if isinstance(item, dict) and kind not in RULE_KINDS:
            known = ", ".join(sorted(RULE_KINDS))
            why = "missing" if kind is None else f"unknown rule kind '{kind}'"
            problems.append(((i, "kind"), f"{why} (known: {known})"))
            continue
        try:
            rules.append((i, _RULE.validate_python(item)))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = tuple(err["loc"])
                if loc and loc[0] == kind:
                    loc = loc[1:]  # the union's tag, not a key of the file
                msg = err["msg"]
                if err["type"] == "extra_forbidden":
                    msg = "unknown key (check spelling; unknown keys are refused, not ignored)"
                problems.append(((i, *loc), msg))
    return rules, problems


def load_rules(path: Path, site: Site) -> RuleSet:
    """Load and fully validate a rules file against ``site``; raise ConfigError listing all
    problems, each as ``file:line: field: why``."""
    path = Path(path)
    data, lines = read_yaml(path)
    if data is None:
        raise ConfigError(path, [f"{path}: file is empty"])
    timing, timing_problems = Timing(), list[Problem]()
    if isinstance(data, dict) and set(data) <= {"rules", "timing"} and "rules" in data:
        timing, timing_problems = _parse_timing(data.get("timing"))
        data = data["rules"]
        # Rules sit under "rules:": their locations are looked up there.
        timing_lines = lines
        lines = {k[1:]: v for k, v in lines.items() if k[:1] == ("rules",)}
    else:
        timing_lines = {}
    if not isinstance(data, list):
        raise ConfigError(
            path,
            [
                f"{path}:1: the rules file must be a YAML list of rules, or a mapping with "
                "'rules:' (that list) and optional 'timing:'"
            ],
        )
    rules, problems = _parse(data)
    problems += _cross_check(rules, site)
    if problems or timing_problems:
        problems.sort(key=lambda p: int(p[0][0]))
        shown = _format(path, timing_problems, timing_lines) + _format(path, problems, lines)
        raise ConfigError(path, shown)
    return RuleSet(path, [rule for _, rule in rules], timing)


def _parse_timing(data: object) -> tuple[Timing, list[Problem]]:
    """The ``timing:`` section (absent or empty: the defaults)."""
    if data is None:
        return Timing(), []
    try:
        return Timing.model_validate(data), []
    except ValidationError as exc:
        problems: list[Problem] = []
        for err in exc.errors(include_url=False):
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (known: group_wait, group_interval, repeat_interval)"
            problems.append((("timing", *err["loc"]), msg))
        return Timing(), problems


def site_rules(site: Site) -> RuleSet | None:
    """The rules file the site names (``rules:``), loaded; None when it names none."""
    if not site.model.rules:
        return None
    return load_rules(site.relative(site.model.rules), site)


def summarise_rules(path: Path, site: Site) -> list[str]:
    """One line per rule for ``archwatch check-config`` (raises ConfigError when invalid)."""
    ruleset = load_rules(path, site)
    out = [f"{path}: {len(ruleset)} rules"]
    for rule in ruleset.rules:
        count = sum(1 for ref in site.sensors() if rule.applies_to(ref))
        extra = f", for {format_duration(rule.for_s)}" if rule.for_s else ""
        if rule.overrides:
            extra += f", overrides for {', '.join(sorted(rule.overrides))}"
        out.append(f"  {rule.id}: {rule.kind}, {rule.severity}, {count} sensors{extra}")
    return out
