"""``confirmed_fire``: smoke on two detectors of one room, or smoke plus a temperature rise.

The rise is the newest temperature of a sensor in the room minus its lowest reading within
``window`` (inclusive of a sample exactly that old); ``rise`` is inclusive (a rise equal to
it confirms). The condition is per room; it clears when fewer than the confirming signals
remain (e.g. the detectors reset). The lifecycle's inhibition uses this rule kind to mute the
room's climate alerts.

At start-up the detectors' states (a day back) and the temperature windows are primed from
the store. Cold, an inactive verdict is held back until every smoke detector of the room has
reported live and, while a detector is on, a whole ``window`` of live temperatures has been
seen. A detector that stays silent longer than its device's offline limit (``offline_after``
intervals, as the ``offline`` rule counts) since the restart stops holding it back: it is
offline (that rule says so), and a dead or removed detector must not keep a restored fire
alert open for ever (it would mute the room's climate alerts through the inhibit rule and
hold their escalation). A verdict held back is given on the first tick after the bound, so
no further reading is needed for the alert to resolve.
"""

from __future__ import annotations

from alerting.evaluators.base import (
    BaseEvaluator,
    RollingMinMax,
    fmt,
    ns_of,
    register_evaluator,
    silence_limits_s,
)
from alerting.model import Condition
from alerting.rules import ConfirmedFireRule, RuleBase
from gateway.reading import Reading, SensorKind
from gateway.site import SensorRef, Site


@register_evaluator("confirmed_fire")
class ConfirmedFireEvaluator(BaseEvaluator[ConfirmedFireRule]):
    """Per room (and drill): two smoke detectors, or one plus a temperature rise."""

    rule_type = ConfirmedFireRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._smoke: dict[tuple[str, str], dict[str, bool]] = {}
        self._temps: dict[tuple[str, str], RollingMinMax] = {}
        self._last_temp: dict[tuple[str, str], tuple[int, float]] = {}
        self._room_temps: dict[str, list[str]] = {}
        self._room_smoke: dict[str, set[str]] = {}
        for sensor, ref in self.refs.items():
            if ref.kind is SensorKind.TEMPERATURE:
                self._room_temps.setdefault(ref.room, []).append(sensor)
            else:
                self._room_smoke.setdefault(ref.room, set()).add(sensor)
        self._heard: set[tuple[str, str]] = set()  # (detector, drill) heard live (cold only)
        limits = silence_limits_s(site)
        # How long after a restart a detector not yet heard may still hold a verdict back.
        self._silence_ns = {
            s: ns_of(limits.get(s, self.rule.window_s))
            for smoke in self._room_smoke.values()
            for s in smoke
        }
        # Rooms (and drills) whose inactive verdict was held back: re-judged on ticks.
        self._withheld: dict[tuple[str, str], SensorRef] = {}

    def history_ns(self) -> dict[str, int]:
        return {
            sensor: ns_of(self.rule_for(ref.room).window_s)
            if ref.kind is SensorKind.TEMPERATURE
            else ns_of(86400)  # a detector's state since it last changed
            for sensor, ref in self.refs.items()
        }

    def chill(self, now_ns: int) -> None:
        super().chill(now_ns)
        self._heard.clear()
        self._withheld.clear()

    def _unsure(
        self, room: str, drill: str, at_ns: int, rule: ConfirmedFireRule, smoking: int
    ) -> bool:
        if self.cold_since is None:
            return False
        cold_ns = at_ns - self.cold_since
        unheard = any(
            (s, drill) not in self._heard and cold_ns <= self._silence_ns[s]
            for s in self._room_smoke.get(room, ())
        )
        # With a detector on, a rise may hide in the part of the window not seen live.
        return unheard or (smoking > 0 and self.cold_for(at_ns, ns_of(rule.window_s)))

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        ref = self.refs[reading.sensor]
        rule = self.rule_for(ref.room)
        drill = reading.drill_id or ""
        room_key = (ref.room, drill)
        if reading.kind is SensorKind.SMOKE:
            self._smoke.setdefault(room_key, {})[reading.sensor] = reading.value == 1
            self._heard.add((reading.sensor, drill))
        else:
            sensor_key = (reading.sensor, drill)
            window = self._temps.setdefault(sensor_key, RollingMinMax(ns_of(rule.window_s)))
            window.add(reading.ts_ns, reading.value)
            self._last_temp[sensor_key] = (reading.ts_ns, reading.value)
        return self._verdict(ref, drill, reading.ts_ns)

    def on_tick(self, now_ns: int) -> list[Condition]:
        # Only verdicts held back while cold: once the bound has passed they are given
        # without waiting for a reading (the silent detector may never send one).
        return [
            cond
            for key, ref in sorted(self._withheld.items())
            for cond in self._verdict(ref, key[1], now_ns)
        ]

    def _verdict(self, ref: SensorRef, drill: str, at_ns: int) -> list[Condition]:
        rule = self.rule_for(ref.room)
        room_key = (ref.room, drill)
        detectors = sorted(s for s, on in self._smoke.get(room_key, {}).items() if on)
        rise = self._max_rise(ref.room, drill, at_ns, rule)
        active = len(detectors) >= 2 or (len(detectors) >= 1 and rise >= rule.rise)
        if not active and self._unsure(ref.room, drill, at_ns, rule, len(detectors)):
            self._withheld[room_key] = ref
            return []  # unknown (alerting.evaluators.base): a restored alert stays
        self._withheld.pop(room_key, None)
        name = self.room_name(ref.room)
        minutes = fmt(rule.window_s / 60)
        if active and len(detectors) >= 2:
            summary = f"{name} 确认火警：{len(detectors)} 个烟感同时报警"
        elif active:
            summary = f"{name} 确认火警：烟感报警且温度 {minutes} 分钟内上升 {fmt(rise)} °C"
        else:
            summary = f"{name} 未确认火警（报警烟感 {len(detectors)} 个）"
        return [
            self.condition(
                self.labels(ref, drill or None, per_sensor=False),
                active=active,
                at_ns=at_ns,
                value=float(len(detectors)),
                summary=summary,
                limit=f"两个烟感，或烟感加 {minutes} 分钟内升温 {fmt(rule.rise)} °C",
                annotations={"detectors": ",".join(detectors), "rise": f"{rise:.2f}"},
            )
        ]

    def _max_rise(self, room: str, drill: str, now_ns: int, rule: ConfirmedFireRule) -> float:
        best = 0.0
        for sensor in self._room_temps.get(room, []):
            window = self._temps.get((sensor, drill))
            last = self._last_temp.get((sensor, drill))
            if window is None or last is None:
                continue
            window.expire(now_ns)
            if not window or now_ns - last[0] > ns_of(rule.window_s):
                continue
            best = max(best, last[1] - window.min[1])
        return best
