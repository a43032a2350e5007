"""``offline``: no reading from a sensor for ``intervals`` × its device's interval.

The interval is the device's ``poll_interval`` (Modbus) or ``expected_interval`` (MQTT);
``intervals`` defaults to the device's ``offline_after``. Checked on ticks: active when the
time since the newest reading (its source timestamp) is greater than the limit (exactly the
limit is not yet offline). A sensor never heard from counts from the first tick. Drill
readings prove nothing about a real sensor's health and are ignored.

After a restart (``resume``) "counted from the first tick" says nothing: a sensor silent
since before the restart would look online and its restored alert would resolve. So after a
restart a sensor not yet heard from gets no inactive verdict (unknown) until its limit has
passed, when it is offline. The store is not asked: it may lag behind the spool.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerting.evaluators.base import (
    BaseEvaluator,
    device_interval_s,
    fmt,
    ns_of,
    register_evaluator,
)
from alerting.lifecycle import Alert
from alerting.model import Condition
from alerting.rules import OfflineRule, RuleBase
from gateway.reading import Reading
from gateway.site import Site


@register_evaluator("offline")
class OfflineEvaluator(BaseEvaluator[OfflineRule]):
    """Per sensor: silent for longer than N of its device's intervals."""

    rule_type = OfflineRule

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._limit_s: dict[str, float] = {}
        for placement in site.placements():
            dev = placement.device
            interval = device_interval_s(dev)
            for spec in dev.sensors:
                if spec.id in self.refs:
                    n = self.rule_for(placement.room_id).intervals or dev.offline_after
                    self._limit_s[spec.id] = n * interval
        self._last: dict[str, int] = {}
        self._started: int | None = None
        self._resumed = False

    def resume(self, *, now_ns: int, complete: bool, active: Sequence[Alert]) -> bool:
        self._resumed = True
        return True

    def on_reading(self, reading: Reading) -> list[Condition]:
        if reading.drill_id or not self.wants(reading):
            return []
        self._last[reading.sensor] = max(reading.ts_ns, self._last.get(reading.sensor, 0))
        return [self._check(reading.sensor, reading.ts_ns)]

    def on_tick(self, now_ns: int) -> list[Condition]:
        if self._started is None:
            self._started = now_ns
        out = [self._check(sensor, now_ns) for sensor in sorted(self.refs)]
        if self._resumed:
            out = [c for c in out if c.active or c.labels["sensor"] in self._last]
        return out

    def _check(self, sensor: str, now_ns: int) -> Condition:
        ref = self.refs[sensor]
        last = self._last.get(sensor, self._started if self._started is not None else now_ns)
        silent_s = max(0, now_ns - last) / 1e9
        limit_s = self._limit_s[sensor]
        active = now_ns - last > ns_of(limit_s)
        return self.condition(
            self.labels(ref, None),
            active=active,
            at_ns=now_ns,
            value=silent_s,
            summary=f"{self.room_name(ref.room)} {self.sensor_name(ref)} "
            + (f"已 {fmt(silent_s)} 秒无数据（离线）" if active else "在线"),
            limit=f"{fmt(limit_s)} 秒内须有数据",
        )
