"""Shared logic of the immediate binary rules (smoke, water leak): value 1 is active."""

from __future__ import annotations

from typing import ClassVar

from alerting.evaluators.base import BaseEvaluator, R
from alerting.model import Condition
from gateway.reading import Reading


class BinaryEvaluator(BaseEvaluator[R]):
    """Per sensor (and drill): active exactly while the sensor reports 1."""

    active_text: ClassVar[str] = "报警"
    clear_text: ClassVar[str] = "正常"

    def on_reading(self, reading: Reading) -> list[Condition]:
        if not self.wants(reading):
            return []
        ref = self.refs[reading.sensor]
        active = reading.value == 1
        text = self.active_text if active else self.clear_text
        return [
            self.condition(
                self.labels(ref, reading.drill_id),
                active=active,
                at_ns=reading.ts_ns,
                value=reading.value,
                summary=f"{self.room_name(ref.room)} {self.sensor_name(ref)}：{text}",
                limit=self.clear_text,
            )
        ]
