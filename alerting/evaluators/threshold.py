"""``threshold``: a fixed limit on any sensor kind, with hysteresis.

Edges: the limits are exclusive (``above: 30`` is active at 30.1, not at 30). Once active,
the condition clears only at or below ``above - hysteresis`` (at or above
``below + hysteresis``); in between, the previous state holds.
"""

from __future__ import annotations

from alerting.evaluators.base import KIND_ZH, Verdict, fmt, register_evaluator
from alerting.evaluators.hysteresis import HysteresisEvaluator
from alerting.rules import ThresholdRule
from gateway.reading import Reading
from gateway.site import SensorRef


@register_evaluator("threshold")
class ThresholdEvaluator(HysteresisEvaluator[ThresholdRule]):
    """Per sensor (and drill): above ``above`` or below ``below``."""

    rule_type = ThresholdRule

    def judge(self, reading: Reading, ref: SensorRef, rule: ThresholdRule) -> Verdict:
        value, h = reading.value, rule.hysteresis
        too_high = rule.above is not None and value > rule.above
        too_low = rule.below is not None and value < rule.below
        cleared = (rule.above is None or value <= rule.above - h) and (
            rule.below is None or value >= rule.below + h
        )
        active = self.latch(reading, trip=too_high or too_low, clear=cleared)
        unit = reading.unit
        parts = []
        if rule.below is not None:
            parts.append(f"不低于 {fmt(rule.below)} {unit}")
        if rule.above is not None:
            parts.append(f"不高于 {fmt(rule.above)} {unit}")
        limit = "，".join(parts)
        what = (
            f"{self.room_name(ref.room)} {self.sensor_name(ref)} {KIND_ZH[ref.kind]} "
            f"{fmt(value)} {unit}"
        )
        if too_high:
            summary = f"{what}，高于 {fmt(rule.above or 0)} {unit}"
        elif too_low:
            summary = f"{what}，低于 {fmt(rule.below or 0)} {unit}"
        else:
            summary = f"{what}，要求{limit}"
        return Verdict(active, value, summary, limit)
