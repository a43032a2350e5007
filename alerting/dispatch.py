"""Dispatch: alerts become notifications, grouped, spaced out and repeated.

Timing model (for the people who carry the phones)
--------------------------------------------------
Alerts are grouped by room and severity: a failing air handler that pushes three sensors of
one room out of band gives one message listing three alerts, not three messages.

- **for** (per rule): how long a condition must last before it becomes an alert anyone hears
  of. Until then the alert is *pending* and nobody is told. A short gap in data does not
  restart this count; only a reading back within limits does.
- **group wait** (default 10 s): when the first alert of a room and severity fires, archwatch
  waits this long before sending, so that related alerts arriving at almost the same moment go
  out in the same message. Smoke and leaks are therefore announced at most 10 s after they
  fire.
- **group interval** (default 1 min): once a group has been announced, a new alert joining it
  is sent at the earliest one group interval after the group's previous message, again
  collecting whatever else fired meanwhile.
- **repeat interval** (default 30 min): an alert that is still firing and that *nobody has
  acknowledged* is announced again every repeat interval. Acknowledging it stops the repeats
  (the others in the room are told who acknowledged it, once).
- **keep firing for** (per rule): after the condition clears, the alert stays open this long
  before it is resolved, so a value hovering at the limit does not open and close alerts every
  minute. If the condition returns meanwhile, it is the same alert.
- **resolution**: when an alert resolves, everyone who was told of it (and only they) gets
  one resolution notice, even if the alert has since been silenced.
- **silences and inhibition**: a silenced alert, or a climate alert of a room where a fire is
  confirmed (inhibited), is still shown on screen but not sent. If the silence ends while the
  alert still fires, it is sent then.
- **restart**: what was sent is written down before it is handed over for delivery, so after
  a restart nothing that was already sent is sent again, and nothing half-sent is lost.

Group wait, group interval and repeat interval are set by the operator in the rules file's
``timing:`` section (:class:`alerting.rules.Timing`, validated there); the numbers above are
the defaults. A silenced or inhibited alert does not escalate either (:mod:`alerting.escalation`).

Everything here is driven by :meth:`Dispatcher.tick` with an explicit time, so tests move a
manual clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from alerting.lifecycle import Alert
from alerting.model import AlertSnapshot, AlertState, NotificationBatch
from alerting.nflog import NotificationLog

log = logging.getLogger(__name__)

_ANNOUNCED = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


class NotificationSink(Protocol):
    """Delivery (the outbox): takes a batch durably; must ignore a batch id it already has."""

    async def enqueue(self, batch: NotificationBatch) -> None: ...


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    """Grouping labels (besides severity) and the timing described in the module docstring
    (built from the rules file's ``timing:`` by :meth:`alerting.rules.Timing.dispatch`)."""

    group_by: tuple[str, ...] = ("room",)
    group_wait_s: float = 10.0
    group_interval_s: float = 60.0
    repeat_interval_s: float = 1800.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """An alert as dispatch sees it: ``muted`` when silenced or inhibited."""

    alert: Alert
    muted: bool = False


@dataclass(slots=True)
class _Group:
    key: str
    labels: dict[str, str]
    members: list[Candidate] = field(default_factory=list)


def snapshot(alert: Alert) -> AlertSnapshot:
    """The alert's fields a notification carries."""
    return AlertSnapshot(
        id=alert.id,
        fingerprint=alert.fingerprint,
        rule_id=alert.rule_id,
        rule_kind=alert.rule_kind,
        severity=alert.severity,
        labels=dict(alert.labels),
        state=alert.state,
        value=alert.value,
        summary=alert.summary,
        limit=alert.limit,
        started_at_ns=alert.started_at_ns,
        fired_at_ns=alert.fired_at_ns,
        resolved_at_ns=alert.resolved_at_ns,
        acked_by=alert.acked_by,
        acked_note=alert.acked_note,
        drill_id=alert.drill_id,
    )


class Dispatcher:
    """Plans notification batches from alert states and the notification log; sends them."""

    def __init__(
        self,
        nflog: NotificationLog,
        sink: NotificationSink,
        config: DispatchConfig | None = None,
    ) -> None:
        self.nflog = nflog
        self.sink = sink
        self.config = config or DispatchConfig()
        self._unsent: list[NotificationBatch] = []
        self._sink_failing = False

    async def start(self) -> None:
        """Pick up batches written but not handed over before a crash."""
        self._unsent = await asyncio.to_thread(self.nflog.unenqueued)
        for batch in self._unsent:
            self.nflog.note_batch(batch)

    def group_labels(self, alert: Alert) -> dict[str, str]:
        labels = {name: alert.labels.get(name, "") for name in self.config.group_by}
        labels["severity"] = alert.severity.value
        if alert.drill_id is not None:
            # Drill and real alerts never share a message.
            labels["drill_id"] = alert.drill_id
        return labels

    def finished(self, alert: Alert) -> bool:
        """A resolved alert with nothing left to send (never told, or resolution noticed)."""
        if alert.is_open:
            return False
        return not self.nflog.told(alert.id) or self.nflog.has(alert.id, "resolved")

    def plan(self, now_ns: int, candidates: Sequence[Candidate]) -> list[NotificationBatch]:
        """The batches due at ``now_ns`` (pure: nothing is recorded)."""
        groups: dict[str, _Group] = {}
        for cand in candidates:
            labels = self.group_labels(cand.alert)
            key = ",".join(f"{k}={v}" for k, v in labels.items())
            groups.setdefault(key, _Group(key, labels)).members.append(cand)
        batches: list[NotificationBatch] = []
        for group in groups.values():
            batches.extend(self._plan_group(now_ns, group))
        return batches

    def _plan_group(self, now_ns: int, group: _Group) -> list[NotificationBatch]:
        cfg, nflog = self.config, self.nflog
        out: list[NotificationBatch] = []
        told_open = [c.alert for c in group.members if c.alert.is_open and nflog.told(c.alert.id)]
        new = [
            c.alert
            for c in group.members
            if c.alert.state in _ANNOUNCED and not c.muted and not nflog.told(c.alert.id)
        ]
        if new:
            if told_open:
                last = max(nflog.last_notice_ns(a.id) or 0 for a in told_open)
                due = last + _ns(cfg.group_interval_s)
            else:
                due = min(a.fired_at_ns or now_ns for a in new) + _ns(cfg.group_wait_s)
            if now_ns >= due:
                out.append(self._batch("firing", group, new, now_ns))
        repeat = [
            c.alert
            for c in group.members
            if c.alert.state == AlertState.FIRING
            and not c.muted
            and (seen := nflog.last_notice_ns(c.alert.id)) is not None
            and now_ns - seen >= _ns(cfg.repeat_interval_s)
        ]
        if repeat:
            out.append(self._batch("repeat", group, repeat, now_ns))
        acked = [
            c.alert
            for c in group.members
            if c.alert.state == AlertState.ACKNOWLEDGED
            and not c.muted
            and nflog.told(c.alert.id)
            and not nflog.has(c.alert.id, "acknowledged")
        ]
        if acked:
            out.append(self._batch("acknowledged", group, acked, now_ns))
        by_recipients: dict[tuple[str, ...], list[Alert]] = defaultdict(list)
        for cand in group.members:
            if not self.finished(cand.alert) and not cand.alert.is_open:
                by_recipients[nflog.recipients(cand.alert.id)].append(cand.alert)
        for recipients, alerts in by_recipients.items():
            out.append(self._batch("resolved", group, alerts, now_ns, recipients))
        return out

    def _batch(
        self,
        kind: str,
        group: _Group,
        alerts: list[Alert],
        now_ns: int,
        recipients: tuple[str, ...] | None = None,
    ) -> NotificationBatch:
        first = alerts[0]
        return NotificationBatch(
            id=uuid.uuid4().hex,
            kind=kind,
            group_key=group.key,
            group_labels=dict(group.labels),
            severity=first.severity,
            alerts=tuple(snapshot(a) for a in sorted(alerts, key=lambda a: a.started_at_ns)),
            created_at_ns=now_ns,
            recipients=recipients,
            drill_id=first.drill_id,
        )

    async def tick(self, now_ns: int, candidates: Sequence[Candidate]) -> list[NotificationBatch]:
        """Hand over what is due at ``now_ns``; return the batches handed over in this tick.

        A batch is recorded in the notification log before the sink sees it. When the sink
        fails, the batch stays unsent and is handed over again (same id) at the next tick;
        nothing new is planned meanwhile, so batches reach the sink in order.
        """
        sent: list[NotificationBatch] = []
        if not await self._flush_unsent(sent):
            return sent
        for batch in self.plan(now_ns, candidates):
            await asyncio.to_thread(self.nflog.write_batch, batch)
            self.nflog.note_batch(batch)
            self._unsent.append(batch)
        await self._flush_unsent(sent)
        return sent

    async def _flush_unsent(self, sent: list[NotificationBatch]) -> bool:
        while self._unsent:
            batch = self._unsent[0]
            handed_over = not (batch.kind == "resolved" and not batch.recipients)
            if not handed_over:
                log.info("alert resolution %s: nobody was told, nothing to send", batch.id)
            else:
                try:
                    await self.sink.enqueue(batch)
                except Exception:
                    if not self._sink_failing:
                        log.exception("notification sink refused batch %s; will retry", batch.id)
                        self._sink_failing = True
                    return False
                if self._sink_failing:
                    log.info("notification sink accepts batches again")
                    self._sink_failing = False
            await asyncio.to_thread(self.nflog.mark_enqueued, batch.id)
            self._unsent.pop(0)
            if handed_over:
                sent.append(batch)
        return True
