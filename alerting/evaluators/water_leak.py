"""``water_leak``: a leak sensor reports water (1). Immediate and critical by default."""

from __future__ import annotations

from alerting.evaluators.base import register_evaluator
from alerting.evaluators.binary import BinaryEvaluator
from alerting.rules import WaterLeakRule


@register_evaluator("water_leak")
class WaterLeakEvaluator(BinaryEvaluator[WaterLeakRule]):
    """Per leak sensor (and drill): active while it reports water."""

    rule_type = WaterLeakRule
    active_text = "检测到漏水"
    clear_text = "无漏水"
