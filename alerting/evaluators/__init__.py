"""Rule evaluators: one module per rule kind, each registered in ``EVALUATORS``.

Importing this package registers them all; ``build_evaluators`` makes one per rule.
"""

from __future__ import annotations

from alerting.evaluators import (  # noqa: F401  (imported to register)
    access_badge,
    band,
    battery_low,
    calibration_overdue,
    condensation,
    confirmed_fire,
    door_forced,
    door_held,
    door_schedule,
    fluctuation,
    offline,
    rate_of_change,
    smoke,
    stuck,
    threshold,
    water_leak,
)
from alerting.evaluators.base import EVALUATORS, Evaluator, register_evaluator
from alerting.rules import RuleSet
from gateway.site import Site

__all__ = ["EVALUATORS", "Evaluator", "build_evaluators", "register_evaluator"]


def build_evaluators(rules: RuleSet, site: Site) -> list[Evaluator]:
    """One evaluator per rule, in file order."""
    return [EVALUATORS[rule.kind](rule, site) for rule in rules.rules]
