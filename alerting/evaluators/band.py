"""``band``: the room's standards-profile band for temperature and humidity, with hysteresis.

Edges: the band is inclusive (a value equal to min or max is in band). An alert becomes
active outside [min, max] and clears only once the value is back inside by the hysteresis
margin, i.e. within [min + h, max - h] (inclusive); in between, the previous state holds.
"""

from __future__ import annotations

from alerting.evaluators.base import KIND_ZH, Verdict, fmt, register_evaluator
from alerting.evaluators.hysteresis import HysteresisEvaluator
from alerting.rules import BandRule
from gateway.reading import Reading, SensorKind
from gateway.site import SensorRef


@register_evaluator("band")
class BandEvaluator(HysteresisEvaluator[BandRule]):
    """Per sensor (and drill): outside the profile band of the sensor's room."""

    rule_type = BandRule

    def judge(self, reading: Reading, ref: SensorRef, rule: BandRule) -> Verdict:
        profile = self.site.standards.get(ref.storage_class)
        band = profile.temperature if ref.kind is SensorKind.TEMPERATURE else profile.humidity
        margin = rule.hysteresis.for_kind(ref.kind)
        value = reading.value
        outside = value < band.min or value > band.max
        well_inside = band.min + margin <= value <= band.max - margin
        active = self.latch(reading, trip=outside, clear=well_inside)
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
        return Verdict(active, value, summary, limit)
