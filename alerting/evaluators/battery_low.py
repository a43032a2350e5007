"""``battery_low``: a battery below ``threshold`` percent (exclusive: exactly the threshold
is fine); once active it clears at ``threshold + hysteresis`` or above."""

from __future__ import annotations

from alerting.evaluators.base import BaseEvaluator, fmt, register_evaluator
from alerting.model import Condition
from alerting.rules import BatteryLowRule, RuleBase
from gateway.reading import Reading
from gateway.site import Site


@register_evaluator("battery_low")
class BatteryLowEvaluator(BaseEvaluator[BatteryLowRule]):
    """Per battery sensor (and drill): charge below the threshold."""

    rule_type = BatteryLowRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._active: dict[tuple[str, str], bool] = {}

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        ref = self.refs[reading.sensor]
        rule = self.rule_for(ref.room)
        key = (reading.sensor, reading.drill_id or "")
        low = reading.value < rule.threshold
        recovered = reading.value >= rule.threshold + rule.hysteresis
        active = low or (self._active.get(key, False) and not recovered)
        self._active[key] = active
        return [
            self.condition(
                self.labels(ref, reading.drill_id),
                active=active,
                at_ns=reading.ts_ns,
                value=reading.value,
                summary=f"{self.room_name(ref.room)} {self.sensor_name(ref)} 电量 "
                f"{fmt(reading.value)} %",
                limit=f"电量不低于 {fmt(rule.threshold)} %",
            )
        ]
