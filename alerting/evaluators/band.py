"""``band``: the room's standards-profile band for temperature and humidity, with hysteresis.

Edges: the band is inclusive (a value equal to min or max is in band). An alert becomes
active outside [min, max] and clears only once the value is back inside by the hysteresis
margin, i.e. within [min + h, max - h] (inclusive); in between, the previous state holds.
"""

from __future__ import annotations

from alerting.evaluators.base import KIND_ZH, BaseEvaluator, fmt, register_evaluator
from alerting.model import Condition
from alerting.rules import BandRule, RuleBase
from gateway.reading import Reading, SensorKind
from gateway.site import Site


@register_evaluator("band")
class BandEvaluator(BaseEvaluator[BandRule]):
    """Per sensor (and drill): outside the profile band of the sensor's room."""

    rule_type = BandRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._active: dict[tuple[str, str], bool] = {}

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        ref = self.refs[reading.sensor]
        rule = self.rule_for(ref.room)
        profile = self.site.standards.get(ref.storage_class)
        band = profile.temperature if ref.kind is SensorKind.TEMPERATURE else profile.humidity
        margin = rule.hysteresis.for_kind(ref.kind)
        key = (reading.sensor, reading.drill_id or "")
        value = reading.value
        outside = value < band.min or value > band.max
        well_inside = band.min + margin <= value <= band.max - margin
        active = outside or (self._active.get(key, False) and not well_inside)
        self._active[key] = active
        unit = reading.unit
        limit = f"{fmt(band.min)}–{fmt(band.max)} {unit}"
        what = f"{self.room_name(ref.room)} {KIND_ZH[ref.kind]} {fmt(value)} {unit}"
        if value > band.max:
            summary = f"{what}，超出 {limit}"
        elif value < band.min:
            summary = f"{what}，低于 {limit}"
        elif active:
            summary = f"{what}，已回到 {limit} 内但未超过回差 {fmt(margin)} {unit}"
        else:
            summary = f"{what}，在 {limit} 内"
        return [
            self.condition(
                self.labels(ref, reading.drill_id),
                active=active,
                at_ns=reading.ts_ns,
                value=value,
                summary=summary,
                limit=limit,
            )
        ]
