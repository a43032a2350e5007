"""``battery_low``: a battery below ``threshold`` percent (exclusive: exactly the threshold
is fine); once active it clears at ``threshold + hysteresis`` or above."""

from __future__ import annotations

from alerting.evaluators.base import Verdict, fmt, register_evaluator
from alerting.evaluators.hysteresis import HysteresisEvaluator
from alerting.rules import BatteryLowRule
from gateway.reading import Reading
from gateway.site import SensorRef


@register_evaluator("battery_low")
class BatteryLowEvaluator(HysteresisEvaluator[BatteryLowRule]):
    """Per battery sensor (and drill): charge below the threshold."""

    rule_type = BatteryLowRule

    def judge(self, reading: Reading, ref: SensorRef, rule: BatteryLowRule) -> Verdict:
        active = self.latch(
            reading,
            trip=reading.value < rule.threshold,
            clear=reading.value >= rule.threshold + rule.hysteresis,
        )
        return Verdict(
            active,
            reading.value,
            summary=f"{self.room_name(ref.room)} {self.sensor_name(ref)} 电量 "
            f"{fmt(reading.value)} %",
            limit=f"电量不低于 {fmt(rule.threshold)} %",
        )
