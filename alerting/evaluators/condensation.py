"""``condensation``: room air temperature within ``margin`` °C of its dew point.

What is compared: the room's latest air temperature T and the dew point Td of the room's air
computed (Magnus, alerting.formulas.dew_point) from that T and the room's latest relative
humidity. Walls, floors and boxes on outside walls are colder than the air, so the margin
stands for how much colder the coldest surface may be: when T − Td ≤ margin (inclusive), a
surface that much colder than the air reaches the dew point and water condenses on it
(margin 0 watches the room air itself). The pair is used only when the two readings are at
most ``max_skew`` apart. Once active, it clears only when T − Td > margin + hysteresis.
The scope is the room: with several sensors of a kind, the latest reading of any counts.
After a restart the latch is taken from the alerts active when the gateway stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerting.evaluators.base import BaseEvaluator, fmt, ns_of, register_evaluator
from alerting.formulas import dew_point
from alerting.lifecycle import Alert
from alerting.model import Condition
from alerting.rules import CondensationRule, RuleBase
from gateway.reading import Reading, SensorKind
from gateway.site import Site


@register_evaluator("condensation")
class CondensationEvaluator(BaseEvaluator[CondensationRule]):
    """Per room (and drill): the dew-point gap of the latest temperature and humidity."""

    rule_type = CondensationRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        # (room, drill) -> kind -> (ts_ns, value) of the latest reading
        self._latest: dict[tuple[str, str], dict[SensorKind, tuple[int, float]]] = {}
        self._active: dict[tuple[str, str], bool] = {}

    def restore(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            self._active[(alert.labels["room"], alert.labels.get("drill_id", ""))] = True

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        ref = self.refs[reading.sensor]
        rule = self.rule_for(ref.room)
        key = (ref.room, reading.drill_id or "")
        latest = self._latest.setdefault(key, {})
        previous = latest.get(reading.kind)
        if previous is not None and previous[0] > reading.ts_ns:
            return []  # an older reading arriving late says nothing about now
        latest[reading.kind] = (reading.ts_ns, reading.value)
        t = latest.get(SensorKind.TEMPERATURE)
        rh = latest.get(SensorKind.HUMIDITY)
        if t is None or rh is None or abs(t[0] - rh[0]) > ns_of(rule.max_skew_s):
            return []
        if rh[1] <= 0:
            gap = float("inf")  # bone-dry air has no dew point: no risk
            td = float("-inf")
        else:
            td = dew_point(t[1], rh[1])
            gap = t[1] - td
        was = self._active.get(key, False)
        active = gap <= rule.margin or (was and gap <= rule.margin + rule.hysteresis)
        self._active[key] = active
        limit = f"温度高于露点 {fmt(rule.margin)} °C 以上"
        summary = (
            f"{self.room_name(ref.room)} 温度 {fmt(t[1])} °C、湿度 {fmt(rh[1])} %RH，"
            f"露点 {fmt(td)} °C，仅差 {fmt(gap)} °C，有结露风险"
            if active
            else f"{self.room_name(ref.room)} 温度 {fmt(t[1])} °C，露点 {fmt(td)} °C"
        )
        return [
            self.condition(
                self.labels(ref, reading.drill_id, per_sensor=False),
                active=active,
                at_ns=reading.ts_ns,
                value=gap,
                summary=summary,
                limit=limit,
                annotations={"dew_point": f"{td:.2f}"},
            )
        ]
