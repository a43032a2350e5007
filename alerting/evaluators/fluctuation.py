"""``fluctuation``: the profile's 24-hour swing limit over a rolling window.

The span is the highest minus the lowest reading of one sensor within the last
``window_hours`` (the profile's, unless the rule sets its own), the window inclusive of a
sample exactly that old. The limit is the profile's ``Fluctuation.allowed_span`` (mode
``span``: twice the standard's ±; ``strict``: the ± itself). Active when the span is
greater than the limit (a span equal to the limit is allowed); it clears by itself once the
extremes age out of the window.
"""

from __future__ import annotations

from alerting.evaluators.base import KIND_ZH, Verdict, fmt, ns_of, register_evaluator
from alerting.evaluators.window import WindowEvaluator
from alerting.rules import FluctuationRule
from gateway.reading import Reading
from gateway.site import SensorRef


@register_evaluator("fluctuation")
class FluctuationEvaluator(WindowEvaluator[FluctuationRule]):
    """Per sensor (and drill): the rolling span against the profile's allowed span."""

    rule_type = FluctuationRule

    def window_ns(self, ref: SensorRef) -> int:
        fluct = self.site.standards.get(ref.storage_class).fluctuation
        return ns_of((self.rule_for(ref.room).window_hours or fluct.window_hours) * 3600)

    def judge(self, reading: Reading, ref: SensorRef, rule: FluctuationRule) -> Verdict:
        fluct = self.site.standards.get(ref.storage_class).fluctuation
        hours = rule.window_hours or fluct.window_hours
        window = self.window(reading, self.window_ns(ref))
        span = window.max[1] - window.min[1]
        allowed = fluct.allowed_span(ref.kind.value)
        unit = reading.unit
        limit = f"{fmt(hours)} 小时内波动不超过 {fmt(allowed)} {unit}"
        summary = (
            f"{self.room_name(ref.room)} {KIND_ZH[ref.kind]} {fmt(hours)} 小时内波动 "
            f"{fmt(span)} {unit}（{fmt(window.min[1])}–{fmt(window.max[1])} {unit}），"
            f"允许 {fmt(allowed)} {unit}"
        )
        return Verdict(span > allowed, span, summary, limit)
