"""The evaluator contract, its registry, and helpers every evaluator shares.

An evaluator turns readings (``on_reading``) and clock ticks (``on_tick``) into Conditions
for one rule. It is pure: no I/O, no wall clock (time comes only from its arguments), so a
test drives it with explicit timestamps. It emits a Condition each time it re-evaluates a
scope, active or not; the lifecycle dedupes and applies ``for``/``keep_firing_for``.

Drill readings (``drill_id`` set) are kept apart: every evaluator keys its state by drill
id too and copies the id into the labels, so a drill never clears or feeds a real alert.

Restarts. State that needs history (rolling windows, when a door opened, a flat run...) is
rebuilt at start-up before the first live reading: the service fetches from the store what
``history_ns`` asks for, replays it through ``prime`` (conditions dropped: it all happened
already) and then calls ``resume`` once with the alerts that were active when the gateway
stopped. When the store could not give that history (unreachable, or behind: the newest
readings still in the spool), the evaluator is *cold*: until it has seen enough live data it
holds back the inactive verdicts it cannot vouch for. Holding back is how an evaluator says
"unknown": no condition, so the lifecycle keeps a restored alert as it is instead of
resolving it (and paging again when the next reading fires it anew). Every kind bounds that
time (its window, ``duration`` or ``max_open`` of live data; for confirmed fire, until each
detector has reported or has been silent long enough to count as offline): a sensor that
never reports again must not keep a restored alert open for ever.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

from alerting.lifecycle import Alert
from alerting.model import Condition
from alerting.rules import RuleBase
from gateway.reading import Reading, SensorKind
from gateway.site import ModbusDevice, MqttDevice, SensorRef, Site

R = TypeVar("R", bound=RuleBase)
NS = 1_000_000_000
Scope = tuple[str, str]

KIND_ZH: dict[SensorKind, str] = {
    SensorKind.TEMPERATURE: "温度",
    SensorKind.HUMIDITY: "湿度",
    SensorKind.SMOKE: "烟感",
    SensorKind.DOOR: "门磁",
    SensorKind.WATER_LEAK: "漏水",
    SensorKind.LIGHT: "照度",
    SensorKind.CO2: "二氧化碳",
    SensorKind.VOC: "VOC",
    SensorKind.PM2_5: "PM2.5",
    SensorKind.BATTERY: "电量",
    SensorKind.ACCESS: "门禁",
    SensorKind.UV: "紫外线",
}


class Evaluator(Protocol):
    """Turns one rule's readings and ticks into Conditions (see the module docstring)."""

    def __init__(self, rule: RuleBase, site: Site) -> None: ...

    def on_reading(self, reading: Reading) -> list[Condition]: ...

    def on_tick(self, now_ns: int) -> list[Condition]: ...

    def history_ns(self) -> dict[str, int]:
        """Per watched sensor, how far back its stored readings must be replayed at start-up
        (sensors not listed: none)."""
        ...

    def prime(self, readings: Iterable[Reading]) -> None:
        """Replay stored readings (one sensor's, in time order) into the state, silently."""
        ...

    def resume(self, *, now_ns: int, complete: bool, active: Sequence[Alert]) -> bool:
        """Priming is over: ``complete`` whether the store gave every history asked for,
        ``active`` the open alerts whose condition held when the gateway stopped. Returns
        whether the evaluator is warm (False: cold, see the module docstring)."""
        ...


EVALUATORS: dict[str, type[Evaluator]] = {}
E = TypeVar("E", bound=type[Evaluator])


def register_evaluator(kind: str) -> Callable[[E], E]:
    """Class decorator: make ``cls`` the evaluator of rules of ``kind``."""

    def wrap(cls: E) -> E:
        if kind in EVALUATORS:
            raise ValueError(f"evaluator for rule kind '{kind}' registered twice")
        EVALUATORS[kind] = cls
        return cls

    return wrap


def fmt(value: float) -> str:
    """A reading for people: at most one decimal, no trailing ``.0``."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def ns_of(seconds: float) -> int:
    return round(seconds * NS)


def device_interval_s(dev: ModbusDevice | MqttDevice) -> float:
    """How often a device is heard from: ``poll_interval``, or ``expected_interval`` for
    MQTT devices (which publish when they like)."""
    if isinstance(dev, MqttDevice):
        return dev.expected_interval
    return dev.poll_interval


def silence_limits_s(site: Site) -> dict[str, float]:
    """Per sensor, how long it may stay silent before it counts as offline: its device's
    ``offline_after`` intervals."""
    limits: dict[str, float] = {}
    for placement in site.placements():
        dev = placement.device
        for spec in dev.sensors:
            limits[spec.id] = dev.offline_after * device_interval_s(dev)
    return limits


def scope_of(reading: Reading) -> Scope:
    """The state key of a per-sensor evaluator: the sensor, and the drill kept apart."""
    return (reading.sensor, reading.drill_id or "")


class BaseEvaluator(Generic[R]):
    """Shared plumbing: scope filtering, per-room overrides, labels and Condition building."""

    rule_type: ClassVar[type[RuleBase]] = RuleBase

    def __init__(self, rule: RuleBase, site: Site) -> None:
        if not isinstance(rule, self.rule_type):
            raise TypeError(f"{type(self).__name__} evaluates {self.rule_type.__name__} rules")
        self.rule: R = rule  # type: ignore[assignment]
        self.site = site
        self.tz = ZoneInfo(site.model.site.timezone)
        self.refs: dict[str, SensorRef] = {
            ref.sensor: ref for ref in site.sensors() if rule.applies_to(ref)
        }
        self._room_rules: dict[str, R] = {}
        self._room_names = {room.id: room.name or room.id for _, room in site.rooms()}
        # Set by ``resume`` when priming could not rebuild the state: from then on.
        self.cold_since: int | None = None
        self._primed_newest: dict[Scope, int] = {}

    def wants(self, reading: Reading) -> bool:
        """Whether the reading is from a sensor this rule watches (by id and kind)."""
        ref = self.refs.get(reading.sensor)
        return ref is not None and ref.kind == reading.kind

    def rule_for(self, room: str) -> R:
        """The rule with ``room``'s overrides applied (computed once per room)."""
        if room not in self._room_rules:
            self._room_rules[room] = self.rule.for_room(room)  # type: ignore[assignment]
        return self._room_rules[room]

    def room_name(self, room: str) -> str:
        return self._room_names.get(room, room)

    def sensor_name(self, ref: SensorRef) -> str:
        return ref.spec.name or ref.sensor

    def local(self, ts_ns: int) -> datetime:
        return datetime.fromtimestamp(ts_ns / NS, tz=self.tz)

    def labels(
        self, ref: SensorRef, drill_id: str | None, *, per_sensor: bool = True
    ) -> dict[str, str]:
        labels = {"site": ref.site, "building": ref.building, "room": ref.room}
        if per_sensor:
            labels["sensor"] = ref.sensor
        if drill_id:
            labels["drill_id"] = drill_id
        return labels

    def condition(
        self,
        labels: dict[str, str],
        *,
        active: bool,
        at_ns: int,
        value: float | None = None,
        summary: str = "",
        limit: str = "",
        annotations: dict[str, str] | None = None,
    ) -> Condition:
        rule = self.rule_for(labels["room"])
        return Condition(
            rule_id=rule.id,
            rule_kind=rule.kind,
            severity=rule.severity,
            labels=labels,
            active=active,
            at_ns=at_ns,
            value=value,
            summary=summary,
            limit=limit,
            for_s=rule.for_s,
            keep_firing_for_s=rule.keep_firing_for_s,
            annotations=annotations or {},
        )

    def on_reading(self, reading: Reading) -> list[Condition]:
        return []

    def on_tick(self, now_ns: int) -> list[Condition]:
        return []

    # --- restarts (see the module docstring) --------------------------------------------

    def history_ns(self) -> dict[str, int]:
        return {}  # by default a kind judges each reading on its own

    def prime(self, readings: Iterable[Reading]) -> None:
        for reading in readings:
            if self.wants(reading):
                self.on_reading(reading)  # only the state counts: it all happened already
                self._primed_newest[scope_of(reading)] = reading.ts_ns

    def resume(self, *, now_ns: int, complete: bool, active: Sequence[Alert]) -> bool:
        mine = [a for a in active if a.rule_id == self.rule.id]
        self.restore(mine)
        keeps_history = bool(self.history_ns())
        warm = not keeps_history or (complete and not any(self.behind(a) for a in mine))
        if not warm:
            self.chill(now_ns)
        return warm

    def restore(self, alerts: Sequence[Alert]) -> None:
        """Take over state only the alerts remember (a latch); by default none."""

    def behind(self, alert: Alert) -> bool:
        """Whether the primed state misses what made ``alert`` active: the store's newest
        reading for its scope is older than the alert's last active condition (those
        readings are still in the spool). Kinds whose conditions come from the clock
        override this."""
        history = self.history_ns()
        drill = alert.labels.get("drill_id", "")
        sensor = alert.labels.get("sensor")
        room = alert.labels.get("room")
        sensors = (
            [sensor]
            if sensor is not None
            else [s for s, ref in self.refs.items() if ref.room == room]
        )
        newest = [self._primed_newest.get((s, drill), -1) for s in sensors if history.get(s)]
        return bool(newest) and max(newest) < alert.last_active_ns

    def chill(self, now_ns: int) -> None:
        """Priming could not rebuild the state: judge from live data from ``now_ns`` on."""
        self.cold_since = now_ns

    def cold_for(self, at_ns: int, window_ns: int) -> bool:
        """Whether, at ``at_ns``, a cold evaluator has seen less than ``window_ns`` live."""
        return self.cold_since is not None and at_ns - self.cold_since < window_ns


@dataclass(frozen=True)
class Verdict:
    """What one reading means for its sensor: the Condition fields a rule kind decides."""

    active: bool
    value: float
    summary: str
    limit: str


class PerReadingEvaluator(BaseEvaluator[R]):
    """An evaluator that judges each reading of a watched sensor as it comes.

    Every reading gives one Condition, labelled with its sensor (and drill); a kind only
    implements ``judge``, with the room's overrides already applied to the rule.
    """

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        ref = self.refs[reading.sensor]
        rule = self.rule_for(ref.room)
        verdict = self.judge(reading, ref, rule)
        if not verdict.active and self.unsure(reading, rule):
            return []  # unknown (module docstring): a restored alert stays as it is
        return [
            self.condition(
                self.labels(ref, reading.drill_id),
                active=verdict.active,
                at_ns=reading.ts_ns,
                value=verdict.value,
                summary=verdict.summary,
                limit=verdict.limit,
            )
        ]

    def judge(self, reading: Reading, ref: SensorRef, rule: R) -> Verdict:
        raise NotImplementedError

    def unsure(self, reading: Reading, rule: R) -> bool:
        """Whether an inactive verdict on ``reading`` cannot be vouched for (cold state)."""
        return False


class RollingMinMax:
    """Min and max of the values seen within the last ``window_ns`` (monotonic deques).

    Each deque holds (ts, value) candidates only: a value that can never again be the
    minimum (a later one is smaller or equal) is dropped at once, so memory stays bounded by
    the samples in one window and each update is amortised O(1). The window is inclusive:
    a sample exactly ``window_ns`` older than the newest still counts. ``max_samples`` caps
    each deque for a sensor that floods a long window with a steady trend: the oldest
    candidates go first, which can only understate the span, never invent one.
    """

    def __init__(self, window_ns: int, max_samples: int = 100_000) -> None:
        self.window_ns = window_ns
        self._min: deque[tuple[int, float]] = deque(maxlen=max_samples)
        self._max: deque[tuple[int, float]] = deque(maxlen=max_samples)

    def add(self, ts_ns: int, value: float) -> None:
        # Out-of-order samples would break the deques' time order: they are ignored.
        if self._min and ts_ns < self._min[-1][0]:
            return
        while self._min and self._min[-1][1] >= value:
            self._min.pop()
        self._min.append((ts_ns, value))
        while self._max and self._max[-1][1] <= value:
            self._max.pop()
        self._max.append((ts_ns, value))
        self.expire(ts_ns)

    def expire(self, now_ns: int) -> None:
        oldest = now_ns - self.window_ns
        while self._min and self._min[0][0] < oldest:
            self._min.popleft()
        while self._max and self._max[0][0] < oldest:
            self._max.popleft()

    @property
    def min(self) -> tuple[int, float]:
        return self._min[0]

    @property
    def max(self) -> tuple[int, float]:
        return self._max[0]

    def __len__(self) -> int:
        return max(len(self._min), len(self._max))

    def __bool__(self) -> bool:
        return bool(self._min)
