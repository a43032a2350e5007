"""``rate_of_change``: a change of at least ``delta`` within ``window`` (e.g. RH up 5 points
in 30 minutes).

The change is measured from the lowest (``up``) or highest (``down``) reading of the same
sensor within the window, inclusive of a sample exactly ``window`` old, to the newest reading.
Active when that change is at least ``delta`` (inclusive); ``either`` watches both ways.
"""

from __future__ import annotations

from alerting.evaluators.base import KIND_ZH, Verdict, fmt, ns_of, register_evaluator
from alerting.evaluators.window import WindowEvaluator
from alerting.rules import RateOfChangeRule, format_duration
from gateway.reading import Reading
from gateway.site import SensorRef


@register_evaluator("rate_of_change")
class RateOfChangeEvaluator(WindowEvaluator[RateOfChangeRule]):
    """Per sensor (and drill): rise or fall within the rolling window."""

    rule_type = RateOfChangeRule

    def window_ns(self, ref: SensorRef) -> int:
        return ns_of(self.rule_for(ref.room).window_s)

    def judge(self, reading: Reading, ref: SensorRef, rule: RateOfChangeRule) -> Verdict:
        window = self.window(reading, self.window_ns(ref))
        rise = reading.value - window.min[1]
        fall = window.max[1] - reading.value
        up = rule.direction in ("up", "either") and rise >= rule.delta
        down = rule.direction in ("down", "either") and fall >= rule.delta
        change = rise if up or (not down and rise >= fall) else -fall
        unit = reading.unit
        span = format_duration(rule.window_s)
        arrow = {"up": "上升", "down": "下降", "either": "变化"}[rule.direction]
        limit = f"{span} 内{arrow}不超过 {fmt(rule.delta)} {unit}"
        summary = (
            f"{self.room_name(ref.room)} {KIND_ZH[ref.kind]} {span} 内"
            f"{'上升' if change >= 0 else '下降'} {fmt(abs(change))} {unit}，"
            f"现为 {fmt(reading.value)} {unit}"
        )
        return Verdict(up or down, change, summary, limit)
