"""``access_badge``: a badge presented at a room's reader that is not authorised there.

One alert per room and badge. Rooms not listed in ``authorised_badges`` are not watched by
this rule. A refused swipe is an event, not a state: the condition clears by itself on the
first tick at least ``hold`` after that badge's last refused swipe (inclusive).

At start-up the swipes of the last ``hold`` are primed from the store; a restored alert the
store has no swipe for (unreachable, behind) holds from its last active condition.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerting.evaluators.base import BaseEvaluator, ns_of, register_evaluator
from alerting.lifecycle import Alert
from alerting.model import Condition
from alerting.rules import AccessBadgeRule, RuleBase
from gateway.reading import Reading
from gateway.site import Site


@register_evaluator("access_badge")
class AccessBadgeEvaluator(BaseEvaluator[AccessBadgeRule]):
    """Per room, badge (and drill): a swipe by a badge not authorised for the room."""

    rule_type = AccessBadgeRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self.refs = {k: r for k, r in self.refs.items() if r.room in self.rule.authorised_badges}
        # (sensor, badge, drill) -> ts of the last refused swipe
        self._refused: dict[tuple[str, int, str], int] = {}

    def history_ns(self) -> dict[str, int]:
        return {s: ns_of(self.rule_for(ref.room).hold_s) for s, ref in self.refs.items()}

    def behind(self, alert: Alert) -> bool:
        return False  # restore() covers what the store lacks

    def restore(self, alerts: Sequence[Alert]) -> None:
        # Without this a restored alert would never see its clearing tick.
        for alert in alerts:
            badge, room = alert.labels.get("badge"), alert.labels.get("room")
            readers = sorted(s for s, ref in self.refs.items() if ref.room == room)
            if badge is None or not badge.lstrip("-").isdigit() or not readers:
                continue
            drill = alert.labels.get("drill_id", "")
            if not any((s, int(badge), drill) in self._refused for s in readers):
                self._refused[(readers[0], int(badge), drill)] = alert.last_active_ns

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        ref = self.refs[reading.sensor]
        rule = self.rule_for(ref.room)
        badge = int(reading.value)
        if badge in rule.authorised_badges.get(ref.room, []):
            return []
        key = (reading.sensor, badge, reading.drill_id or "")
        self._refused[key] = max(reading.ts_ns, self._refused.get(key, reading.ts_ns))
        return [self._condition(key, reading.ts_ns, active=True)]

    def on_tick(self, now_ns: int) -> list[Condition]:
        out = []
        for key, last in sorted(self._refused.items()):
            hold = ns_of(self.rule_for(self.refs[key[0]].room).hold_s)
            if now_ns - last >= hold:
                del self._refused[key]
                out.append(self._condition(key, now_ns, active=False))
        return out

    def _condition(self, key: tuple[str, int, str], at_ns: int, *, active: bool) -> Condition:
        sensor, badge, drill = key
        ref = self.refs[sensor]
        labels = self.labels(ref, drill or None, per_sensor=False)
        labels["badge"] = str(badge)
        room = self.room_name(ref.room)
        return self.condition(
            labels,
            active=active,
            at_ns=at_ns,
            value=float(badge),
            summary=f"{room} 门禁：卡号 {badge} 无权进入" if active else f"{room} 卡号 {badge}",
            limit="仅限授权卡号",
        )
