"""``stuck``: a value unchanged (within ``tolerance``) for ``duration`` or longer.

"Unchanged" is measured against the reading that started the flat run: any reading more
than ``tolerance`` away from it starts a new run. Active when the newest reading is at least
``duration`` after the run's start (inclusive). Binary and access sensors are skipped (a
closed door is meant to stay closed).
"""

from __future__ import annotations

from alerting.evaluators.base import KIND_ZH, BaseEvaluator, fmt, ns_of, register_evaluator
from alerting.model import Condition
from alerting.rules import RuleBase, StuckRule
from gateway.reading import Reading
from gateway.site import Site


@register_evaluator("stuck")
class StuckEvaluator(BaseEvaluator[StuckRule]):
    """Per sensor (and drill): flat for ``duration``."""

    rule_type = StuckRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._run: dict[tuple[str, str], tuple[int, float]] = {}

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        ref = self.refs[reading.sensor]
        rule = self.rule_for(ref.room)
        key = (reading.sensor, reading.drill_id or "")
        run = self._run.get(key)
        if run is None or abs(reading.value - run[1]) > rule.tolerance:
            run = (reading.ts_ns, reading.value)
            self._run[key] = run
        flat_s = max(0, reading.ts_ns - run[0]) / 1e9
        active = reading.ts_ns - run[0] >= ns_of(rule.duration_s)
        return [
            self.condition(
                self.labels(ref, reading.drill_id),
                active=active,
                at_ns=reading.ts_ns,
                value=reading.value,
                summary=f"{self.room_name(ref.room)} {self.sensor_name(ref)} {KIND_ZH[ref.kind]} "
                f"{fmt(flat_s / 3600)} 小时未变化（{fmt(reading.value)} {reading.unit}）",
                limit=f"{fmt(rule.duration_s / 3600)} 小时内应有变化",
            )
        ]
