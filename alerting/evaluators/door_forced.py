"""``door_forced``: a door opened with no valid badge read in its room just before.

An opening is a reading of 1 after a reading of 0 from the same door (a door already open
when archwatch starts is not an opening: it is the held-open rule's business). It is valid
when an ``access`` reading in the same room, with a badge authorised for the room (any
badge when the rule lists none for it), came at most ``access_window`` before the opening
(inclusive) and not after it. A forced door stays active until it closes.

Whether a door that is open was forced is known only when its opening was seen: for any
other open door (open when archwatch started, or restarted) there is no verdict until it
closes, so a restored forced-door alert stays until the door really closes. At start-up the
badge reads of the last ``access_window`` are primed from the store, so a door opened just
after a restart by someone who badged just before it is not taken for forced.
"""

from __future__ import annotations

from alerting.evaluators.base import BaseEvaluator, fmt, ns_of, register_evaluator
from alerting.model import Condition
from alerting.rules import DoorForcedRule, RuleBase
from gateway.reading import Reading, SensorKind
from gateway.site import Site


@register_evaluator("door_forced")
class DoorForcedEvaluator(BaseEvaluator[DoorForcedRule]):
    """Per door (and drill): opened without a valid badge read within the access window."""

    rule_type = DoorForcedRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._last_badge: dict[tuple[str, str], int] = {}  # (room, drill) -> ts of valid read
        self._door: dict[tuple[str, str], bool] = {}  # (sensor, drill) -> open
        self._forced: dict[tuple[str, str], bool] = {}

    def history_ns(self) -> dict[str, int]:
        return {
            sensor: ns_of(self.rule_for(ref.room).access_window_s)
            for sensor, ref in self.refs.items()
            if ref.kind is SensorKind.ACCESS
        }

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        ref = self.refs[reading.sensor]
        rule = self.rule_for(ref.room)
        drill = reading.drill_id or ""
        if reading.kind is SensorKind.ACCESS:
            allowed = rule.authorised_badges.get(ref.room)
            if allowed is None or int(reading.value) in allowed:
                room_key = (ref.room, drill)
                self._last_badge[room_key] = max(
                    reading.ts_ns, self._last_badge.get(room_key, reading.ts_ns)
                )
            return []
        key = (reading.sensor, drill)
        was_open = self._door.get(key)
        is_open = reading.value == 1
        self._door[key] = is_open
        if not is_open:
            forced = False
        elif was_open is False:
            badge = self._last_badge.get((ref.room, drill))
            forced = badge is None or not (
                reading.ts_ns - ns_of(rule.access_window_s) <= badge <= reading.ts_ns
            )
        elif was_open is None or key not in self._forced:
            return []  # no opening seen: nothing to judge (unknown, not inactive)
        else:
            forced = self._forced[key]
        self._forced[key] = forced
        window = fmt(rule.access_window_s)
        return [
            self.condition(
                self.labels(ref, reading.drill_id),
                active=forced,
                at_ns=reading.ts_ns,
                value=reading.value,
                summary=(
                    f"{self.room_name(ref.room)} {self.sensor_name(ref)} 被开启，"
                    f"开门前 {window} 秒内无有效刷卡（疑似强行闯入）"
                    if forced
                    else f"{self.room_name(ref.room)} {self.sensor_name(ref)} "
                    f"{'开启' if is_open else '关闭'}"
                ),
                limit=f"开门前 {window} 秒内须有有效刷卡",
            )
        ]
