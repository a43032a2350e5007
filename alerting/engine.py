"""The alert engine: conditions in, notification batches out, every change recorded.

Wires the lifecycle (one alert per fingerprint), silences, inhibition and dispatch to a
:class:`~alerting.dispatch.NotificationSink`, persists every state change in the state
database, appends it to the audit log and emits it as an Event (Grafana annotations). The
lead connects evaluators -> :meth:`AlertEngine.process` and the outbox as the sink; delivery
reports who it told with :meth:`AlertEngine.record_recipients`.

Drill alerts (label ``drill_id``) are tracked, shown and notified like real ones but flagged
``drill``; :meth:`AlertEngine.counts`, :meth:`AlertEngine.stats` and the metrics count real
alerts only (drills separately).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from alerting import state_models as store
from alerting.dispatch import Candidate, DispatchConfig, Dispatcher, NotificationSink, snapshot
from alerting.inhibit import DEFAULT_INHIBIT_RULES, Inhibitor, InhibitRule, Labelled
from alerting.lifecycle import SYSTEM_ACTOR, Alert, AlertError, Lifecycle, Transition
from alerting.model import AlertSnapshot, AlertState, Condition, NotificationBatch, Severity
from alerting.nflog import NotificationLog
from alerting.silence import Matcher, Silence, Silencer
from alerting.ticker import tick_forever
from collectors.base import EventSink
from gateway import audit
from gateway.clock import Clock
from gateway.metrics import Metrics
from gateway.reading import Event, datetime_from_ns
from gateway.statedb import StateDB

log = logging.getLogger(__name__)

_EVENT_TAGS = ("site", "building", "room", "device", "sensor")
# Audit action and Event kind per state reached; pending is not news to anyone.
_REPORTED = {
    AlertState.FIRING: ("alert.fired", "alert_fired"),
    AlertState.ACKNOWLEDGED: ("alert.acknowledged", "alert_acknowledged"),
    AlertState.RESOLVED: ("alert.resolved", "alert_resolved"),
}
_S = 1_000_000_000
MAX_SILENCE_S = 30 * 24 * 3600
"""The longest a silence may last, and how far ahead it may start: a forgotten silence
must not mute a building for good."""
MAX_MATCHERS = 20


def new_silence(
    matchers: Sequence[str | Matcher],
    *,
    author: str,
    reason: str,
    now_ns: int,
    ends_at_ns: int,
    starts_at_ns: int | None = None,
) -> Silence:
    """A new, validated silence: the one set of rules for the engine and the API.

    Raises ValueError saying what is wrong (a bad matcher is named): no matcher or more
    than :data:`MAX_MATCHERS`, matchers that all match an empty label (they would mute
    every alert, as Alertmanager refuses too), no author or reason, an end not after the
    start or in the past, a start more than :data:`MAX_SILENCE_S` ahead, a silence longer
    than that. A start in the past means now.
    """
    parsed = tuple(m if isinstance(m, Matcher) else Matcher.parse(m) for m in matchers)
    if not parsed:
        raise ValueError("a silence needs at least one matcher")
    if len(parsed) > MAX_MATCHERS:
        raise ValueError(f"a silence takes at most {MAX_MATCHERS} matchers")
    if all(m.matches({}) for m in parsed):
        shown = ", ".join(str(m) for m in parsed)
        raise ValueError(
            f"matchers {shown}: at least one must not match an empty label, "
            "or the silence would mute every alert"
        )
    if not author.strip() or not reason.strip():
        raise ValueError("a silence needs an author and a reason")
    start = now_ns if starts_at_ns is None else max(starts_at_ns, now_ns)
    days = MAX_SILENCE_S // 86400
    if ends_at_ns <= now_ns:
        raise ValueError("a silence must end in the future")
    if ends_at_ns <= start:
        raise ValueError("a silence must end after it starts")
    if start - now_ns > MAX_SILENCE_S * _S:
        raise ValueError(f"a silence may start at most {days} days ahead")
    if ends_at_ns - start > MAX_SILENCE_S * _S:
        raise ValueError(f"a silence may last at most {days} days")
    return Silence(uuid.uuid4().hex, parsed, start, ends_at_ns, author, reason, now_ns)


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert as shown to people: its snapshot, drill flag and why it is muted."""

    alert: AlertSnapshot
    drill: bool
    inhibited_by: str | None = None
    silenced_by: tuple[str, ...] = ()

    @property
    def muted(self) -> bool:
        return self.inhibited_by is not None or bool(self.silenced_by)


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts to list. ``drill``: False real only (default), True drills, None both."""

    states: tuple[AlertState, ...] | None = (
        AlertState.PENDING,
        AlertState.FIRING,
        AlertState.ACKNOWLEDGED,
    )
    drill: bool | None = False
    room: str | None = None
    severity: Severity | None = None
    limit: int = 100


class AlertEngine:
    """The alerting core behind one object; see the module docstring."""

    def __init__(
        self,
        db: StateDB,
        sink: NotificationSink,
        events: EventSink,
        clock: Clock,
        *,
        dispatch: DispatchConfig | None = None,
        inhibit_rules: Sequence[InhibitRule] = DEFAULT_INHIBIT_RULES,
        metrics: Metrics | None = None,
        tick_s: float = 1.0,
    ) -> None:
        self.db = db
        self.events = events
        self.clock = clock
        self.metrics = metrics
        self.tick_s = tick_s
        self.nflog = NotificationLog(db)
        self.dispatcher = Dispatcher(self.nflog, sink, dispatch)
        self.inhibitor = Inhibitor(inhibit_rules)
        self.silencer = Silencer()
        self.lifecycle = Lifecycle()
        self._resolved: dict[str, Alert] = {}  # resolved, resolution notice still due
        self._lock = asyncio.Lock()
        self._started = False
        self._events_failing = False
        self._silences_failing = False
        self._fired = {"real": 0, "drill": 0}
        self._notifications = {"real": 0, "drill": 0}
        if metrics is not None:
            # Metrics adds the archwatch_ prefix itself.
            for prefix in ("alerts", "drill_alerts"):
                what = "drill alerts" if "drill" in prefix else "alerts (drills not counted)"
                metrics.describe(f"{prefix}_fired_total", "counter", f"{what} fired")
                metrics.describe(
                    f"{prefix}_notifications_total", "counter", f"batches about {what} sent"
                )
            metrics.describe("alerts_open", "gauge", "open real alerts by state")

    # --- start-up ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load alerts, silences and the notification log (idempotent; called lazily)."""
        async with self._lock:
            await self._start()

    async def _start(self) -> None:
        if self._started:
            return
        alerts = await asyncio.to_thread(store.load_live_alerts, self.db)
        self.lifecycle = Lifecycle.resumed(a for a in alerts if a.is_open)
        self._resolved = {a.id: a for a in alerts if not a.is_open}
        silences = await asyncio.to_thread(store.load_silences, self.db, self.clock.now_ns())
        self.silencer = Silencer(silences)
        await asyncio.to_thread(self.nflog.load, [a.id for a in alerts])
        await self.dispatcher.start()
        self._started = True
        if alerts:
            log.info("alert engine resumed %d alert(s) from the state database", len(alerts))

    def holding(self) -> list[Alert]:
        """Open alerts whose condition held at their last evaluation (not counting down to
        resolution); after a restart, those whose evaluators' state must be rebuilt."""
        return [a for a in self.lifecycle.open_alerts() if a.inactive_since_ns is None]

    # --- conditions and time -------------------------------------------------------------

    async def process(self, conditions: Iterable[Condition]) -> list[Transition]:
        """Apply evaluator output; persist and report every state change."""
        async with self._lock:
            await self._start()
            changes: list[Transition] = []
            for cond in conditions:
                changes.extend(self.lifecycle.apply(cond))
            await self._record(changes)
            return changes

    async def tick(self, now_ns: int | None = None) -> list[NotificationBatch]:
        """Run the lifecycle timers and dispatch at ``now_ns`` (default: the clock).

        Returns the batches handed to the sink in this tick.
        """
        now = self.clock.now_ns() if now_ns is None else now_ns
        async with self._lock:
            await self._start()
            await self._reload_silences(now)
            await self._record(self.lifecycle.tick(now))
            candidates = self._candidates(now)
            batches = await self.dispatcher.tick(now, candidates)
            for batch in batches:
                kind = "drill" if batch.drill_id else "real"
                self._notifications[kind] += 1
                if self.metrics is not None:
                    self.metrics.inc(_metric("notifications_total", kind), kind=batch.kind)
            for alert_id, alert in list(self._resolved.items()):
                if self.dispatcher.finished(alert):
                    del self._resolved[alert_id]
                    self.nflog.forget(alert_id)
            return batches

    async def run(self) -> None:
        """Tick every ``tick_s`` seconds until cancelled; a failing tick is logged, not fatal."""
        await tick_forever(self.tick, self.tick_s, "alert engine", log)

    # --- operator actions ----------------------------------------------------------------

    async def acknowledge(
        self,
        alert_id: str,
        user: str,
        note: str = "",
        *,
        via: str | None = None,
        actor: str | None = None,
    ) -> AlertView:
        """Stop repeats of a firing alert; raises AlertError when it is not firing.

        ``via`` (link, code, api, console) goes into the audit entry's detail; ``actor``
        names the person in the audit log when it differs from ``user`` (``user:<name>``
        for someone logged in to the API or console, as the API's own entries name them)."""
        return await self._by_hand(
            self.lifecycle.acknowledge, alert_id, user, note, via=via, actor=actor
        )

    async def resolve(
        self,
        alert_id: str,
        user: str,
        note: str = "",
        *,
        via: str | None = None,
        actor: str | None = None,
    ) -> AlertView:
        """Resolve an open alert by hand; raises AlertError when there is none (``via`` and
        ``actor`` as for :meth:`acknowledge`)."""
        return await self._by_hand(
            self.lifecycle.resolve, alert_id, user, note, via=via, actor=actor
        )

    async def _by_hand(
        self,
        action: Callable[[str, str, str, int], Transition],
        alert_id: str,
        user: str,
        note: str,
        *,
        via: str | None,
        actor: str | None,
    ) -> AlertView:
        """Apply an operator's lifecycle ``action`` now, record it and show the alert."""
        async with self._lock:
            await self._start()
            change = action(alert_id, user, note, self.clock.now_ns())
            await self._record([change], via=via, actor=actor)
            return self._view(change.alert, self.clock.now_ns())

    async def record_recipients(self, batch_id: str, recipients: Sequence[str]) -> None:
        """Delivery told ``recipients`` of batch ``batch_id`` (they get resolution notices)."""
        told = list(recipients)
        alert_ids = await asyncio.to_thread(
            self.nflog.write_recipients, batch_id, told, self.clock.now_ns()
        )
        # The cache is updated here, on the event loop, where dispatch reads it.
        self.nflog.note_recipients(alert_ids, told)

    async def alerts(self, where: AlertFilter | None = None) -> list[AlertView]:
        """Alerts from the state database, newest first, with their mute reasons."""
        where = where or AlertFilter()
        async with self._lock:
            await self._start()
            found = await asyncio.to_thread(
                store.query_alerts,
                self.db,
                states=where.states,
                drill=where.drill,
                room=where.room,
                severity=where.severity,
                limit=where.limit,
            )
            now = self.clock.now_ns()
            live = {a.id: a for a in self.lifecycle.open_alerts()}
            return [self._view(live.get(a.id, a), now) for a in found]

    def counts(self, *, drill: bool = False) -> dict[str, int]:
        """Open alerts per state: real ones (default) or drill ones, never mixed."""
        out = {s.value: 0 for s in (AlertState.PENDING, AlertState.FIRING)}
        out[AlertState.ACKNOWLEDGED.value] = 0
        for alert in self.lifecycle.open_alerts():
            if alert.drill == drill:
                out[alert.state.value] += 1
        return out

    def stats(self) -> dict[str, int]:
        """Since start: alerts fired and batches handed to delivery, real and drill apart."""
        return {
            "alerts_fired": self._fired["real"],
            "notifications_sent": self._notifications["real"],
            "drill_alerts_fired": self._fired["drill"],
            "drill_notifications_sent": self._notifications["drill"],
        }

    # --- silences ------------------------------------------------------------------------

    async def create_silence(
        self,
        matchers: Sequence[str | Matcher],
        *,
        author: str,
        reason: str,
        ends_at_ns: int,
        starts_at_ns: int | None = None,
    ) -> Silence:
        """Silence alerts matching every matcher (``label=value``, ``label=~regex``...);
        raises ValueError as :func:`new_silence` does."""
        now = self.clock.now_ns()
        silence = new_silence(
            matchers,
            author=author,
            reason=reason,
            now_ns=now,
            ends_at_ns=ends_at_ns,
            starts_at_ns=starts_at_ns,
        )
        async with self._lock:
            await self._start()
            await asyncio.to_thread(store.save_silence, self.db, silence)
            self.silencer.put(silence)
        await self._report_silence(silence, "created", author, now)
        return silence

    async def expire_silence(self, silence_id: str, user: str) -> Silence:
        """End a silence now; raises KeyError for an unknown id. A silence that has ended
        already is returned as it is (nothing to record)."""
        now = self.clock.now_ns()
        async with self._lock:
            await self._start()
            try:
                silence = await asyncio.to_thread(
                    store.expire_silence, self.db, silence_id, user, now
                )
            except store.SilenceEnded as exc:
                return exc.silence
            self.silencer.put(silence)
        await self._report_silence(silence, "expired", user, now)
        return silence

    def silences(self, *, active_only: bool = False) -> list[Silence]:
        """The silences that had not ended at the last tick (or only the active ones)."""
        return self.silencer.all(self.clock.now_ns() if active_only else None)

    async def _reload_silences(self, now_ns: int) -> None:
        """Re-read the silences from the state database (each tick): the API process
        creates and expires them there. On failure the previous set stays in force."""
        try:
            silences = await asyncio.to_thread(store.load_silences, self.db, now_ns)
        except Exception:
            if not self._silences_failing:
                log.exception("could not re-read silences; keeping the last ones read")
                self._silences_failing = True
            return
        if self._silences_failing:
            log.info("silences are read again")
            self._silences_failing = False
        self.silencer = Silencer(silences)

    # --- internals -----------------------------------------------------------------------

    def _inhibited(self) -> dict[str, str]:
        return self.inhibitor.inhibited(
            Labelled(a.id, a.state, a.match_labels()) for a in self.lifecycle.open_alerts()
        )

    def _candidates(self, now_ns: int) -> list[Candidate]:
        inhibited = self._inhibited()
        out = []
        for alert in [*self.lifecycle.open_alerts(), *self._resolved.values()]:
            muted = alert.id in inhibited or bool(
                self.silencer.silenced_by(alert.match_labels(), now_ns)
            )
            out.append(Candidate(alert, muted))
        return out

    def _view(self, alert: Alert, now_ns: int) -> AlertView:
        if not alert.is_open:
            return AlertView(snapshot(alert), alert.drill)
        return AlertView(
            snapshot(alert),
            alert.drill,
            inhibited_by=self._inhibited().get(alert.id),
            silenced_by=tuple(self.silencer.silenced_by(alert.match_labels(), now_ns)),
        )

    async def _record(
        self, changes: Sequence[Transition], *, via: str | None = None, actor: str | None = None
    ) -> None:
        latest = {a.id: a for a in self.lifecycle.take_dirty()}
        latest.update((c.alert.id, c.alert) for c in changes)
        if not latest:
            return
        await asyncio.to_thread(store.save_alerts, self.db, list(latest.values()))
        for change in changes:
            alert = change.alert
            if change.after == AlertState.RESOLVED and alert.was_firing:
                self._resolved[alert.id] = alert
            if change.after not in _REPORTED or (
                change.after == AlertState.RESOLVED and not alert.was_firing
            ):
                continue  # a pending alert that closed quietly: nobody heard of it
            if change.after == AlertState.FIRING:
                kind = "drill" if alert.drill else "real"
                self._fired[kind] += 1
                if self.metrics is not None:
                    self.metrics.inc(_metric("fired_total", kind), severity=alert.severity.value)
            await self._report(change, via=via, actor=actor)
        if self.metrics is not None:
            for state, n in self.counts().items():
                self.metrics.set("alerts_open", n, state=state)

    async def _report(
        self, change: Transition, *, via: str | None = None, actor: str | None = None
    ) -> None:
        alert = change.alert
        action, event_kind = _REPORTED[change.after]
        at_ns = {
            AlertState.FIRING: alert.fired_at_ns,
            AlertState.ACKNOWLEDGED: alert.acked_at_ns,
            AlertState.RESOLVED: alert.resolved_at_ns,
        }[change.after] or self.clock.now_ns()
        detail: dict[str, Any] = {
            "alert_id": alert.id,
            "rule_id": alert.rule_id,
            "rule_kind": alert.rule_kind,
            "severity": alert.severity.value,
            "labels": alert.labels,
            # The audit log refuses NaN; a non-finite value is recorded as null.
            "value": alert.value if alert.value is None or math.isfinite(alert.value) else None,
            "summary": alert.summary,
            "drill": alert.drill,
        }
        if change.note:
            detail["note"] = change.note
        if via is not None:
            detail["via"] = via
        await audit.append_async(
            self.db,
            actor=actor or change.actor,
            action=action,
            target=alert.id,
            detail=detail,
            now=datetime_from_ns(at_ns),
        )
        tags = {k: alert.labels[k] for k in _EVENT_TAGS if k in alert.labels}
        tags.update(alert_id=alert.id, rule_id=alert.rule_id)
        text = alert.summary
        if change.after != AlertState.FIRING:
            text = f"{change.actor}: {change.note}" if change.note else change.actor
        await self._emit(
            Event(
                ts_ns=at_ns,
                kind=event_kind,
                title=alert.summary or alert.rule_id,
                text=text,
                severity=alert.severity.value,
                tags=tags,
                drill_id=alert.drill_id,
            )
        )

    async def _report_silence(self, silence: Silence, what: str, actor: str, now: int) -> None:
        await audit.append_async(
            self.db,
            actor=actor,
            action=f"silence.{what}",
            target=silence.id,
            detail=silence.to_json(),
            now=datetime_from_ns(now),
        )
        await self._emit(
            Event(
                ts_ns=now,
                kind=f"silence_{what}",
                title=f"silence {what}: {', '.join(str(m) for m in silence.matchers)}",
                text=f"{actor}: {silence.reason}",
                tags={"silence_id": silence.id},
            )
        )

    async def _emit(self, event: Event) -> None:
        try:
            await self.events.emit(event)
        except Exception:
            # The audit log already holds the change; the annotation is a convenience.
            if not self._events_failing:
                log.exception("could not emit %s event; further failures at DEBUG", event.kind)
                self._events_failing = True
            else:
                log.debug("could not emit %s event", event.kind, exc_info=True)
            return
        if self._events_failing:
            log.info("events are emitted again")
            self._events_failing = False


def _metric(name: str, kind: str) -> str:
    return f"{'drill_' if kind == 'drill' else ''}alerts_{name}"


__all__ = [
    "MAX_SILENCE_S",
    "SYSTEM_ACTOR",
    "AlertEngine",
    "AlertError",
    "AlertFilter",
    "AlertView",
    "new_silence",
]
