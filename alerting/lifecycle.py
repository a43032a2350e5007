"""The alert lifecycle: one alert per fingerprint, pending -> firing -> acknowledged -> resolved.

Rules of the road (each a test in tests/test_lifecycle.py):

- A condition that turns active opens a *pending* alert (or a *firing* one when its rule has
  no ``for``). It fires once it has been active for ``for_s``, counted from the first active
  condition. A gap in data does not reset ``for``: the condition is taken to still hold until
  an *inactive* condition says otherwise (the sensor-health rules report missing data). An
  inactive condition while pending closes the alert quietly: nobody was ever told.
- Firing and acknowledged alerts resolve when the condition has been inactive for
  ``keep_firing_for_s`` (0: at the first inactive condition). A new active condition in that
  time cancels the countdown. ``tick`` applies both timers without new conditions, so an
  alert resolves or fires on time even if the evaluator falls silent.
- Acknowledged (who, note, when) lasts until resolution. A person may resolve by hand too.
- Resolved is final: a later activation opens a new alert, with a new id.
- Drill conditions (label ``drill_id``) have their own fingerprints, hence their own alerts,
  flagged ``drill``.
- "Unknown" is no condition at all: an evaluator that cannot vouch for an inactive verdict
  (its history could not be rebuilt after a restart) says nothing, and an alert restored by
  :meth:`Lifecycle.resumed` stays as it is until a verdict comes (alerting.evaluators.base).

Pure and synchronous: the engine persists what :class:`Transition` reports.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from alerting.model import AlertState, Condition, Severity

SYSTEM_ACTOR = "system:alerting"
_OPEN = (AlertState.PENDING, AlertState.FIRING, AlertState.ACKNOWLEDGED)


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


@dataclass(slots=True)
class Alert:
    """One alert, from the first active condition to its resolution."""

    id: str
    fingerprint: str
    rule_id: str
    rule_kind: str
    severity: Severity
    labels: dict[str, str]
    state: AlertState
    started_at_ns: int
    last_active_ns: int
    value: float | None = None
    summary: str = ""
    limit: str = ""
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    fired_at_ns: int | None = None
    inactive_since_ns: int | None = None
    acked_by: str | None = None
    acked_note: str | None = None
    acked_at_ns: int | None = None
    resolved_by: str | None = None
    resolved_note: str | None = None
    resolved_at_ns: int | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def drill_id(self) -> str | None:
        return self.labels.get("drill_id")

    @property
    def drill(self) -> bool:
        return self.drill_id is not None

    @property
    def is_open(self) -> bool:
        return self.state in _OPEN

    @property
    def was_firing(self) -> bool:
        """Whether it ever fired (a quietly closed pending alert did not)."""
        return self.fired_at_ns is not None

    def match_labels(self) -> dict[str, str]:
        """Labels silences and inhibit rules match on: scope plus rule id, kind, severity."""
        return {
            **self.labels,
            "rule_id": self.rule_id,
            "rule_kind": self.rule_kind,
            "severity": self.severity.value,
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert changed state (``before`` None: it was just opened)."""

    alert: Alert
    before: AlertState | None
    after: AlertState
    actor: str = SYSTEM_ACTOR
    note: str = ""


class AlertError(Exception):
    """An operator action that does not apply (unknown alert, already resolved...)."""


class Lifecycle:
    """The open alerts, keyed by fingerprint, and the rules that move them."""

    def __init__(self, alerts: Iterable[Alert] = ()) -> None:
        self._open: dict[str, Alert] = {}
        # Open alerts whose keep-firing-for countdown started or stopped: worth persisting
        # so that a restart resumes the countdown (value updates are not).
        self._dirty: dict[str, Alert] = {}
        for alert in alerts:
            if alert.is_open:
                self._open[alert.fingerprint] = alert

    @classmethod
    def resumed(cls, alerts: Iterable[Alert]) -> Lifecycle:
        """The lifecycle after a restart. A pending alert waits for a fresh active
        condition before its ``for`` can fire it: the condition may have cleared while
        nothing was evaluated, and a first tick must not page anyone for a room that is
        back in band (Prometheus likewise fires a restored alert only at an evaluation
        that finds its condition still true)."""
        alerts = list(alerts)
        for alert in alerts:
            if alert.state == AlertState.PENDING and alert.inactive_since_ns is None:
                alert.inactive_since_ns = alert.last_active_ns
        return cls(alerts)

    def open_alerts(self) -> list[Alert]:
        return sorted(self._open.values(), key=lambda a: (a.started_at_ns, a.id))

    def get(self, alert_id: str) -> Alert | None:
        return next((a for a in self._open.values() if a.id == alert_id), None)

    def apply(self, cond: Condition) -> list[Transition]:
        """Feed one condition; return what changed."""
        alert = self._open.get(cond.fingerprint)
        if cond.active:
            if alert is None:
                return self._open_alert(cond)
            alert.last_active_ns = max(alert.last_active_ns, cond.at_ns)
            if alert.inactive_since_ns is not None:
                alert.inactive_since_ns = None
                self._dirty[alert.id] = alert
            alert.value, alert.summary, alert.limit = cond.value, cond.summary, cond.limit
            alert.for_s, alert.keep_firing_for_s = cond.for_s, cond.keep_firing_for_s
            return self._timers(alert, cond.at_ns)
        if alert is None:
            return []
        if alert.state == AlertState.PENDING:
            return [self._close(alert, cond.at_ns, SYSTEM_ACTOR, "")]
        if alert.inactive_since_ns is None:
            alert.inactive_since_ns = cond.at_ns
            self._dirty[alert.id] = alert
        alert.value = cond.value
        return self._timers(alert, cond.at_ns)

    def take_dirty(self) -> list[Alert]:
        """Alerts changed without a state change since the last call (for persistence)."""
        dirty, self._dirty = list(self._dirty.values()), {}
        return dirty

    def tick(self, now_ns: int) -> list[Transition]:
        """Apply ``for`` and ``keep_firing_for`` at ``now_ns`` without a new condition."""
        changes: list[Transition] = []
        for alert in self.open_alerts():
            changes.extend(self._timers(alert, now_ns))
        return changes

    def acknowledge(self, alert_id: str, user: str, note: str, now_ns: int) -> Transition:
        alert = self._require(alert_id)
        if alert.state != AlertState.FIRING:
            raise AlertError(f"alert {alert_id} is {alert.state.value}, not firing")
        alert.state = AlertState.ACKNOWLEDGED
        alert.acked_by, alert.acked_note, alert.acked_at_ns = user, note, now_ns
        return Transition(alert, AlertState.FIRING, AlertState.ACKNOWLEDGED, user, note)

    def resolve(self, alert_id: str, user: str, note: str, now_ns: int) -> Transition:
        return self._close(self._require(alert_id), now_ns, user, note)

    def _require(self, alert_id: str) -> Alert:
        alert = self.get(alert_id)
        if alert is None:
            raise AlertError(f"no open alert {alert_id}")
        return alert

    def _open_alert(self, cond: Condition) -> list[Transition]:
        alert = Alert(
            id=uuid.uuid4().hex,
            fingerprint=cond.fingerprint,
            rule_id=cond.rule_id,
            rule_kind=cond.rule_kind,
            severity=cond.severity,
            labels=dict(cond.labels),
            state=AlertState.PENDING,
            started_at_ns=cond.at_ns,
            last_active_ns=cond.at_ns,
            value=cond.value,
            summary=cond.summary,
            limit=cond.limit,
            for_s=cond.for_s,
            keep_firing_for_s=cond.keep_firing_for_s,
            annotations=dict(cond.annotations),
        )
        self._open[alert.fingerprint] = alert
        return [Transition(alert, None, AlertState.PENDING), *self._timers(alert, cond.at_ns)]

    def _timers(self, alert: Alert, now_ns: int) -> list[Transition]:
        if alert.state == AlertState.PENDING:
            if alert.inactive_since_ns is None and now_ns - alert.started_at_ns >= _ns(alert.for_s):
                alert.state = AlertState.FIRING
                alert.fired_at_ns = now_ns
                return [Transition(alert, AlertState.PENDING, AlertState.FIRING)]
            return []
        since = alert.inactive_since_ns
        if since is not None and now_ns - since >= _ns(alert.keep_firing_for_s):
            return [self._close(alert, now_ns, SYSTEM_ACTOR, "")]
        return []

    def _close(self, alert: Alert, now_ns: int, actor: str, note: str) -> Transition:
        before = alert.state
        alert.state = AlertState.RESOLVED
        alert.resolved_at_ns, alert.resolved_by = now_ns, actor
        alert.resolved_note = note or None
        del self._open[alert.fingerprint]
        return Transition(alert, before, AlertState.RESOLVED, actor, note)
