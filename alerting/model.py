"""The alerting vocabulary shared by rules, lifecycle, dispatch and delivery."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    """How urgent: ``critical`` wakes people (smoke, leak, forced door)."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    """pending -> firing -> acknowledged -> resolved (resolved is final for an alert)."""

    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def fingerprint(rule_id: str, labels: dict[str, str]) -> str:
    """Identity of an alert: its rule and the scope labels it fired for (one alert each)."""
    body = json.dumps([rule_id, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Condition:
    """What one rule says about one scope at one instant: active (bad) or not.

    Evaluators produce these from readings (and from clock ticks, for offline, held-open
    door, stuck sensor and calibration rules). ``for_s`` and ``keep_firing_for_s`` come from
    the rule; the lifecycle applies them. ``labels`` always include site, building and room
    where known, the sensor when the rule is per sensor, and ``drill_id`` for drill readings.
    """

    rule_id: str
    rule_kind: str
    severity: Severity
    labels: dict[str, str]
    active: bool
    at_ns: int
    value: float | None = None
    # Human text, Chinese by default: what is wrong and against what limit.
    summary: str = ""
    limit: str = ""
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule_id, self.labels)

    @property
    def drill_id(self) -> str | None:
        return self.labels.get("drill_id")
