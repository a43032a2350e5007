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


# --- what dispatch hands to delivery (alerting.dispatch.NotificationSink) ---------------------

NOTIFICATION_KINDS = ("firing", "repeat", "resolved", "acknowledged")


@dataclass(frozen=True, slots=True)
class AlertSnapshot:
    """An alert as it was when a notification was made (times in ns since the epoch)."""

    id: str
    fingerprint: str
    rule_id: str
    rule_kind: str
    severity: Severity
    labels: dict[str, str]
    state: AlertState
    value: float | None
    summary: str
    limit: str
    started_at_ns: int
    fired_at_ns: int | None = None
    resolved_at_ns: int | None = None
    acked_by: str | None = None
    acked_note: str | None = None
    drill_id: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "fingerprint": self.fingerprint,
            "rule_id": self.rule_id,
            "rule_kind": self.rule_kind,
            "severity": self.severity.value,
            "labels": dict(self.labels),
            "state": self.state.value,
            "value": self.value,
            "summary": self.summary,
            "limit": self.limit,
            "started_at_ns": self.started_at_ns,
            "fired_at_ns": self.fired_at_ns,
            "resolved_at_ns": self.resolved_at_ns,
            "acked_by": self.acked_by,
            "acked_note": self.acked_note,
            "drill_id": self.drill_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> AlertSnapshot:
        def opt_int(key: str) -> int | None:
            got = data.get(key)
            return None if got is None else int(str(got))

        def opt_str(key: str) -> str | None:
            got = data.get(key)
            return None if got is None else str(got)

        value = data.get("value")
        labels = data.get("labels")
        assert isinstance(labels, dict)
        return cls(
            id=str(data["id"]),
            fingerprint=str(data["fingerprint"]),
            rule_id=str(data["rule_id"]),
            rule_kind=str(data["rule_kind"]),
            severity=Severity(str(data["severity"])),
            labels={str(k): str(v) for k, v in labels.items()},
            state=AlertState(str(data["state"])),
            value=None if value is None else float(str(value)),
            summary=str(data["summary"]),
            limit=str(data["limit"]),
            started_at_ns=int(str(data["started_at_ns"])),
            fired_at_ns=opt_int("fired_at_ns"),
            resolved_at_ns=opt_int("resolved_at_ns"),
            acked_by=opt_str("acked_by"),
            acked_note=opt_str("acked_note"),
            drill_id=opt_str("drill_id"),
        )


@dataclass(frozen=True, slots=True)
class NotificationBatch:
    """One notification to make: a kind, a group, its alerts and (for resolved) recipients.

    ``id`` is stable: after a crash the same batch may be enqueued again with the same id, so
    the sink must ignore an id it already holds. ``recipients`` is None for ``firing``,
    ``repeat`` and ``acknowledged`` (delivery routes to contacts) and, for ``resolved``,
    exactly the contacts delivery reported as told of these alerts.
    """

    id: str
    kind: str  # one of NOTIFICATION_KINDS
    group_key: str
    group_labels: dict[str, str]
    severity: Severity
    alerts: tuple[AlertSnapshot, ...]
    created_at_ns: int
    recipients: tuple[str, ...] | None = None
    drill_id: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "group_key": self.group_key,
            "group_labels": dict(self.group_labels),
            "severity": self.severity.value,
            "alerts": [a.to_json() for a in self.alerts],
            "created_at_ns": self.created_at_ns,
            "recipients": None if self.recipients is None else list(self.recipients),
            "drill_id": self.drill_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> NotificationBatch:
        alerts = data["alerts"]
        labels = data["group_labels"]
        recipients = data.get("recipients")
        drill = data.get("drill_id")
        assert isinstance(alerts, list) and isinstance(labels, dict)
        assert recipients is None or isinstance(recipients, list)
        return cls(
            id=str(data["id"]),
            kind=str(data["kind"]),
            group_key=str(data["group_key"]),
            group_labels={str(k): str(v) for k, v in labels.items()},
            severity=Severity(str(data["severity"])),
            alerts=tuple(AlertSnapshot.from_json(a) for a in alerts),
            created_at_ns=int(str(data["created_at_ns"])),
            recipients=None if recipients is None else tuple(str(r) for r in recipients),
            drill_id=None if drill is None else str(drill),
        )
