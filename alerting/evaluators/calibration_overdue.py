"""``calibration_overdue``: a sensor whose calibration due date is before today.

"Today" is the tick's date in the site timezone; due today is not yet overdue. Evaluated on
the first tick and again whenever the local date changes (the due dates only move with the
site file, which restarts the evaluators).
"""

from __future__ import annotations

from datetime import date

from alerting.evaluators.base import BaseEvaluator, register_evaluator
from alerting.model import Condition
from alerting.rules import CalibrationOverdueRule, RuleBase
from gateway.site import Site


@register_evaluator("calibration_overdue")
class CalibrationOverdueEvaluator(BaseEvaluator[CalibrationOverdueRule]):
    """Per sensor: calibration due before today (1987 regulation, Art. 11)."""

    rule_type = CalibrationOverdueRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._checked_on: date | None = None

    def on_tick(self, now_ns: int) -> list[Condition]:
        today = self.local(now_ns).date()
        if today == self._checked_on:
            return []
        self._checked_on = today
        out = []
        for sensor in sorted(self.refs):
            ref = self.refs[sensor]
            cal = ref.spec.calibration
            assert cal is not None  # the rule only applies to sensors with a calibration
            overdue_days = (today - cal.due).days
            out.append(
                self.condition(
                    self.labels(ref, None),
                    active=overdue_days > 0,
                    at_ns=now_ns,
                    value=float(overdue_days),
                    summary=f"{self.room_name(ref.room)} {self.sensor_name(ref)} 校准于 "
                    f"{cal.due:%Y-%m-%d} 到期"
                    + (f"，已逾期 {overdue_days} 天" if overdue_days > 0 else ""),
                    limit=f"校准有效期至 {cal.due:%Y-%m-%d}",
                )
            )
        return out
