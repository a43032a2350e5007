"""``door_schedule``: a door open outside its room's opening hours (site timezone).

A span covers ``start`` inclusive to ``end`` exclusive on the listed weekdays; a span whose
end is not after its start runs past midnight into the next day. Rooms with no schedule
are not watched by this rule (there is nothing to be outside of). Open doors are re-checked
on every tick, so a door left open past closing time becomes active at closing time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from alerting.evaluators.base import BaseEvaluator, register_evaluator
from alerting.model import Condition
from alerting.rules import DoorScheduleRule, RuleBase
from gateway.reading import Reading
from gateway.site import OpeningHours, Site

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def within(schedule: list[OpeningHours], local: datetime) -> bool:
    """Whether the local time falls in one of the spans (start inclusive, end exclusive)."""
    t = local.time().replace(tzinfo=None)
    today = _DAYS[local.weekday()]
    yesterday = _DAYS[(local - timedelta(days=1)).weekday()]
    for span in schedule:
        if span.start < span.end:
            if today in span.days and span.start <= t < span.end:
                return True
        elif (today in span.days and t >= span.start) or (yesterday in span.days and t < span.end):
            return True
    return False


@register_evaluator("door_schedule")
class DoorScheduleEvaluator(BaseEvaluator[DoorScheduleRule]):
    """Per door (and drill): open at a time outside the room's schedule."""

    rule_type = DoorScheduleRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._schedules = {room.id: room.schedule for _, room in site.rooms() if room.schedule}
        self.refs = {k: r for k, r in self.refs.items() if r.room in self._schedules}
        self._open: set[tuple[str, str]] = set()

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        key = (reading.sensor, reading.drill_id or "")
        if reading.value == 1:
            self._open.add(key)
        else:
            self._open.discard(key)
        return [self._check(key, reading.ts_ns, is_open=reading.value == 1)]

    def on_tick(self, now_ns: int) -> list[Condition]:
        return [self._check(key, now_ns, is_open=True) for key in sorted(self._open)]

    def _check(self, key: tuple[str, str], at_ns: int, *, is_open: bool) -> Condition:
        sensor, drill = key
        ref = self.refs[sensor]
        local = self.local(at_ns)
        outside = not within(self._schedules[ref.room], local)
        spans = "；".join(
            f"{'/'.join(s.days)} {s.start:%H:%M}–{s.end:%H:%M}" for s in self._schedules[ref.room]
        )
        state = "开启" if is_open else "关闭"
        return self.condition(
            self.labels(ref, drill or None),
            active=is_open and outside,
            at_ns=at_ns,
            value=1.0 if is_open else 0.0,
            summary=f"{self.room_name(ref.room)} {self.sensor_name(ref)} 于 {local:%H:%M} "
            f"{state}{'，不在开放时间内' if is_open and outside else ''}",
            limit=f"开放时间 {spans}",
        )
