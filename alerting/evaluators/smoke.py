"""``smoke``: a detector reports smoke (1). Immediate (``for`` 0) and critical by default."""

from __future__ import annotations

from alerting.evaluators.base import register_evaluator
from alerting.evaluators.binary import BinaryEvaluator
from alerting.rules import SmokeRule


@register_evaluator("smoke")
class SmokeEvaluator(BinaryEvaluator[SmokeRule]):
    """Per detector (and drill): active while it reports smoke."""

    rule_type = SmokeRule
    active_text = "检测到烟雾"
    clear_text = "无烟雾"
