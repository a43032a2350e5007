"""``stuck``: a value unchanged (within ``tolerance``) for ``duration`` or longer.

"Unchanged" is measured against the reading that started the flat run: any reading more
than ``tolerance`` away from it starts a new run. Active when the newest reading is at least
``duration`` after the run's start (inclusive). Binary and access sensors are skipped (a
closed door is meant to stay closed).

At start-up the run is primed from the store (``duration`` plus an hour, so a run flat all
along reaches ``duration`` again). A restored alert the store shows no run for (unreachable,
behind) resumes the run it reported: its value, started ``duration`` before the alert did.
Its value is the one recorded when the alert last changed state, up to ``tolerance`` away
from the run's first, so against it only a reading more than twice ``tolerance`` away is
surely a change (nearer ones keep the alert: a false keep, never a false resolution). Cold,
a run that began at the first reading seen is not a true start: its inactive verdicts are
held back until a change is seen or ``duration`` has passed since that first reading (by
then the run seen live decides for itself).
"""

from __future__ import annotations

from collections.abc import Sequence

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
from alerting.lifecycle import Alert
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
        self._first_live: dict[Scope, int] = {}  # scope -> its first reading (cold only)
        self._restored: set[Scope] = set()  # runs taken from a restored alert's value

    def history_ns(self) -> dict[str, int]:
        return {
            sensor: ns_of(self.rule_for(ref.room).duration_s + 3600)
            for sensor, ref in self.refs.items()
        }

    def restore(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            sensor = alert.labels.get("sensor")
            ref = self.refs.get(sensor or "")
            if ref is None or alert.value is None:
                continue
            key = (ref.sensor, alert.labels.get("drill_id", ""))
            rule = self.rule_for(ref.room)
            primed = self._run.get(key)
            if primed is not None and self._primed_newest.get(key, -1) >= alert.last_active_ns:
                continue  # the store saw what the alert saw: its run is the truth
            if primed is None or abs(primed[1] - alert.value) > 2 * rule.tolerance:
                self._run[key] = (alert.started_at_ns - ns_of(rule.duration_s), alert.value)
                self._restored.add(key)

    def chill(self, now_ns: int) -> None:
        super().chill(now_ns)
        self._seen_change.clear()
        self._first_live.clear()

    def unsure(self, reading: Reading, rule: StuckRule) -> bool:
        if self.cold_since is None:
            return False
        key = scope_of(reading)
        first = self._first_live.get(key, reading.ts_ns)
        return key not in self._seen_change and reading.ts_ns - first < ns_of(rule.duration_s)

    def judge(self, reading: Reading, ref: SensorRef, rule: StuckRule) -> Verdict:
        key = scope_of(reading)
        if self.cold_since is not None:
            self._first_live.setdefault(key, reading.ts_ns)
        run = self._run.get(key)
        tolerance = rule.tolerance * (2 if key in self._restored else 1)
        if run is None or abs(reading.value - run[1]) > tolerance:
            if run is not None:
                self._seen_change.add(key)
            run = (reading.ts_ns, reading.value)
            self._run[key] = run
            self._restored.discard(key)
        flat_s = max(0, reading.ts_ns - run[0]) / 1e9
        return Verdict(
            active=reading.ts_ns - run[0] >= ns_of(rule.duration_s),
            value=reading.value,
            summary=f"{self.room_name(ref.room)} {self.sensor_name(ref)} {KIND_ZH[ref.kind]} "
            f"{fmt(flat_s / 3600)} 小时未变化（{fmt(reading.value)} {reading.unit}）",
            limit=f"{fmt(rule.duration_s / 3600)} 小时内应有变化",
        )
