"""``door_held``: a door held open for ``max_open`` or longer (inclusive).

The open time counts from the first reading that saw the door open after one that saw it
closed (or from the first reading at all). Re-checked on every tick, so no reading is needed
for a held door to become active.

At start-up the door's state is primed from the store (a day, or twice ``max_open`` if
longer, so a door open all along counts as open that long). Cold, or when the store does
not show a door open that a restored alert says is held, an open time counted from the
first reading seen is not a true opening: until the door is seen closed, its inactive
verdicts are held back. That is bounded by ``max_open``: counted from the first reading
that saw the door open, it is active once ``max_open`` has passed (open at least that long
live), so held-back verdicts stop then. A door not heard from at all stays as last known,
open, which is what the restored alert says (a dead sensor is the ``offline`` rule's).
"""

from __future__ import annotations

from alerting.evaluators.base import BaseEvaluator, fmt, ns_of, register_evaluator
from alerting.lifecycle import Alert
from alerting.model import Condition
from alerting.rules import DoorHeldRule, RuleBase
from gateway.reading import Reading
from gateway.site import Site


@register_evaluator("door_held")
class DoorHeldEvaluator(BaseEvaluator[DoorHeldRule]):
    """Per door (and drill): open continuously for at least ``max_open``."""

    rule_type = DoorHeldRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._opened_at: dict[tuple[str, str], int] = {}
        self._seen_closed: set[tuple[str, str]] = set()  # doors seen closed (cold only)

    def history_ns(self) -> dict[str, int]:
        return {
            sensor: max(ns_of(86400), 2 * ns_of(self.rule_for(ref.room).max_open_s))
            for sensor, ref in self.refs.items()
        }

    def behind(self, alert: Alert) -> bool:
        # Its conditions come from ticks: the store is behind when it does not know the
        # held door is open.
        key = (alert.labels.get("sensor", ""), alert.labels.get("drill_id", ""))
        return key not in self._opened_at

    def chill(self, now_ns: int) -> None:
        super().chill(now_ns)
        self._seen_closed.clear()

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        key = (reading.sensor, reading.drill_id or "")
        if reading.value == 1:
            self._opened_at.setdefault(key, reading.ts_ns)
        else:
            self._opened_at.pop(key, None)
            self._seen_closed.add(key)
        return self._checked(key, reading.ts_ns)

    def on_tick(self, now_ns: int) -> list[Condition]:
        return [c for key in sorted(self._opened_at) for c in self._checked(key, now_ns)]

    def _checked(self, key: tuple[str, str], at_ns: int) -> list[Condition]:
        cond = self._check(key, at_ns)
        if (
            not cond.active
            and key in self._opened_at
            and self.cold_since is not None
            and key not in self._seen_closed
        ):
            return []  # unknown: open since we know not when (module docstring)
        return [cond]

    def _check(self, key: tuple[str, str], at_ns: int) -> Condition:
        sensor, drill = key
        ref = self.refs[sensor]
        rule = self.rule_for(ref.room)
        opened = self._opened_at.get(key)
        open_s = (at_ns - opened) / 1e9 if opened is not None else 0.0
        active = opened is not None and at_ns - opened >= ns_of(rule.max_open_s)
        limit = f"开门不超过 {fmt(rule.max_open_s / 60)} 分钟"
        summary = (
            f"{self.room_name(ref.room)} {self.sensor_name(ref)} 已开启 {fmt(open_s / 60)} 分钟"
            if opened is not None
            else f"{self.room_name(ref.room)} {self.sensor_name(ref)} 已关闭"
        )
        return self.condition(
            self.labels(ref, drill or None),
            active=active,
            at_ns=at_ns,
            value=open_s,
            summary=summary,
            limit=limit,
        )
