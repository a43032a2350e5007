"""``stuck``: a value unchanged (within ``tolerance``) for ``duration`` or longer.

"Unchanged" is measured against the reading that started the flat run: any reading more
than ``tolerance`` away from it starts a new run. Active when the newest reading is at least
``duration`` after the run's start (inclusive). Binary and access sensors are skipped (a
closed door is meant to stay closed).

At start-up the run is primed from the store (``duration`` plus an hour, so a run flat all
along reaches ``duration`` again). Cold, a run that began at the first reading seen is not a
true start: until a change is seen its inactive verdicts are held back.
"""

from __future__ import annotations

from alerting.evaluators.base import (
    KIND_ZH,
    PerReadingEvaluator,
    Scope,
    Verdict,
    fmt,
    ns_of,
    register_evaluator,
    scope_of,
)
from alerting.rules import RuleBase, StuckRule
from gateway.reading import Reading
from gateway.site import SensorRef, Site


@register_evaluator("stuck")
class StuckEvaluator(PerReadingEvaluator[StuckRule]):
    """Per sensor (and drill): flat for ``duration``."""

    rule_type = StuckRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._run: dict[Scope, tuple[int, float]] = {}
        self._seen_change: set[Scope] = set()  # scopes whose run start was seen (cold only)

    def history_ns(self) -> dict[str, int]:
        return {
            sensor: ns_of(self.rule_for(ref.room).duration_s + 3600)
            for sensor, ref in self.refs.items()
        }

    def chill(self, now_ns: int) -> None:
        super().chill(now_ns)
        self._seen_change.clear()

    def unsure(self, reading: Reading, rule: StuckRule) -> bool:
        return self.cold_since is not None and scope_of(reading) not in self._seen_change

    def judge(self, reading: Reading, ref: SensorRef, rule: StuckRule) -> Verdict:
        key = scope_of(reading)
        run = self._run.get(key)
        if run is None or abs(reading.value - run[1]) > rule.tolerance:
            if run is not None:
                self._seen_change.add(key)
            run = (reading.ts_ns, reading.value)
            self._run[key] = run
        flat_s = max(0, reading.ts_ns - run[0]) / 1e9
        return Verdict(
            active=reading.ts_ns - run[0] >= ns_of(rule.duration_s),
            value=reading.value,
            summary=f"{self.room_name(ref.room)} {self.sensor_name(ref)} {KIND_ZH[ref.kind]} "
            f"{fmt(flat_s / 3600)} 小时未变化（{fmt(reading.value)} {reading.unit}）",
            limit=f"{fmt(rule.duration_s / 3600)} 小时内应有变化",
        )
