"""Escalation: an unacknowledged alert climbs its policy's tiers until someone answers.

For each firing alert whose severity has a policy (see :mod:`alerting.roster`), once its first
notice has been handed to the outbox, :meth:`EscalationManager.tick`:

1. tells tier 1 at once (the people on duty who did not already get that first notice);
2. when a tier has been told and nobody acknowledged within its ``after``, tells the next
   tier, each person on duty *at the moment the tier fell due* (so a tier due at 07:59
   goes to the night shift, even if the tick that sends it runs after the 08:00 hand-over);
3. stops at acknowledgement or resolution, and after the last tier.

**Muted alerts are held.** An alert the engine mutes (a silence matches it, or an inhibit
rule does: a confirmed fire mutes its room's climate alerts) tells no tier, whether it was
muted before its first notice (then it never started escalating) or after some tier was told.
The manager decides this with the engine's own rules (:class:`alerting.silence.Silencer` over
the silences in the state database, :class:`alerting.inhibit.Inhibitor` over the open
alerts), so the API's silences take effect within a tick, also right after a restart. While
muted, the escalation's status is ``held``; its place on the policy is kept. When the mute
ends and the alert still fires unacknowledged, escalation **resumes where it was**: the tier
told last gets its full ``after`` again, counted from the end of the mute (never less than
what it had left), and only then is the next tier told. Tiers that would have fallen due
during the mute are not made up all at once, and tier 1 is not told again. (If tier 1 was
still to be told, it is told when the mute ends.) Holding and resuming are audited as
``alert.escalation_held`` and ``alert.escalation_resumed``.

Drill alerts escalate like real ones, with the drill mark in every message.

Each step goes: messages into the outbox (keys ``esc:<alert>:<tier>:<contact>``, so a
repeat is ignored) -> recipients recorded with the engine (they get the resolution notice)
-> the escalation row advanced in one transaction -> an ``alert.escalated`` audit entry.
A crash anywhere in between repeats the step harmlessly at restart; a tier that fell due
while the gateway was down is told once, at the first tick after restart. The next tier's
``after`` counts from when its predecessor was actually told, so every tier gets its full
time to answer.

Only one manager per state database runs at a time (one gateway), like the delivery worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select

from alerting.contacts import Contacts
from alerting.dispatch import snapshot
from alerting.escalation_models import EscalationRow, EscalationStepRow
from alerting.inhibit import DEFAULT_INHIBIT_RULES, Inhibitor, InhibitRule, Labelled
from alerting.model import AlertSnapshot, AlertState
from alerting.outbox import Outbox
from alerting.roster import EscalationConfig, Tier
from alerting.silence import Silencer
from alerting.state_models import (
    AlertRow,
    NflogBatchRow,
    NflogEntryRow,
    NflogRecipientRow,
    alert_from_row,
    load_silences,
)
from alerting.templates import SEVERITY, alert_line, room_label
from alerting.ticker import tick_forever
from gateway import audit
from gateway.clock import Clock
from gateway.reading import datetime_from_ns
from gateway.statedb import StateDB

log = logging.getLogger(__name__)
ACTOR = "system:escalation"
TICK_S = 1.0
# Statuses whose escalation is still under way (climbing, or held while the alert is muted).
_LIVE = ("active", "held")
_OPEN_STATES = (AlertState.PENDING.value, AlertState.FIRING.value, AlertState.ACKNOWLEDGED.value)

_TEXT = {
    "zh": {
        "drill": "【演练】",
        "first": "{drill}[{sev}] {room} 告警（值班通知）",
        "next": "{drill}[{sev}] {room} 告警升级（第 {tier} 级）",
        "lead_first": "值班人员请处理并确认：",
        "lead_next": "告警已 {minutes} 分钟无人确认，升级通知第 {tier} 级：",
    },
    "en": {
        "drill": "[DRILL] ",
        "first": "{drill}[{sev}] {room} alert (on duty)",
        "next": "{drill}[{sev}] {room} escalated (tier {tier})",
        "lead_first": "On duty: please handle and acknowledge:",
        "lead_next": "Unacknowledged for {minutes} min; escalated to tier {tier}:",
    },
}

RecordRecipients = Callable[[str, Sequence[str]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Firing:
    alert: AlertSnapshot
    first_batch_id: str
    first_notice_ns: int
    told: frozenset[str]


@dataclass(frozen=True, slots=True)
class _State:
    alert_id: str
    tiers_notified: int
    next_due_ns: int | None
    started_at_ns: int
    first_batch_id: str
    status: str = "active"


@dataclass(frozen=True, slots=True)
class Step:
    """A tier told of an alert in one tick (what :meth:`EscalationManager.tick` returns)."""

    alert_id: str
    tier: int  # 1-based
    due_at_ns: int
    recipients: tuple[str, ...]
    drill: bool


def render_step(
    alert: AlertSnapshot,
    tier: int,
    *,
    since_ns: int,
    now_ns: int,
    names: Mapping[str, str],
    language: str,
    timezone: str,
) -> tuple[str, str, str]:
    """``(subject, body, short body)`` of tier ``tier``'s message about ``alert``."""
    lang = language if language in _TEXT else "zh"
    text = _TEXT[lang]
    tz = ZoneInfo(timezone)
    fields = {
        "drill": text["drill"] if alert.drill_id else "",
        "sev": SEVERITY[lang].get(alert.severity.value, alert.severity.value),
        "room": room_label(alert.labels, names),
        "tier": tier,
        "minutes": max(0, round((now_ns - since_ns) / 60e9)),
    }
    subject = text["first" if tier == 1 else "next"].format(**fields)
    lead = text["lead_first" if tier == 1 else "lead_next"].format(**fields)
    line = alert_line(alert, "firing", language=lang, tz=tz, names=names, short=False)
    short = alert_line(alert, "firing", language=lang, tz=tz, names=names, short=True)
    return subject, f"{lead}\n{line}", f"{subject} {short}"


class EscalationManager:
    """Runs the escalation policies against the alerts in the state database."""

    def __init__(
        self,
        db: StateDB,
        outbox: Outbox,
        contacts: Contacts,
        config: EscalationConfig,
        clock: Clock,
        *,
        timezone: str = "Asia/Shanghai",
        names: Mapping[str, str] | None = None,
        record_recipients: RecordRecipients | None = None,
        on_enqueue: Callable[[], None] | None = None,
        tick_s: float = TICK_S,
        inhibit_rules: Sequence[InhibitRule] = DEFAULT_INHIBIT_RULES,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._contacts = contacts
        self.config = config
        self._clock = clock
        self._tz = ZoneInfo(timezone)
        self._timezone = timezone
        self._names = dict(names or {})
        self._record = record_recipients
        self._on_enqueue = on_enqueue
        self.tick_s = tick_s
        # The engine's rules (alerting.service builds the engine with the defaults too).
        self._inhibitor = Inhibitor(inhibit_rules)
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"EscalationManager({self._db!r})"

    def on_duty(self, tier: Tier, at_ns: int) -> list[str]:
        """Contact ids a tier tells at ``at_ns`` (roster in the site's time zone), known ones."""
        local = datetime.fromtimestamp(at_ns / 1e9, tz=self._tz)
        return [c for c in self.config.tier_contacts(tier, local) if c in self._contacts]

    async def run(self) -> None:
        """Tick every ``tick_s`` seconds until cancelled; a failing tick is logged once."""
        await tick_forever(self.tick, self.tick_s, "escalation", log)

    async def tick(self, now_ns: int | None = None) -> list[Step]:
        """Tell every tier due at ``now_ns`` (default: the clock); return what was told."""
        now = self._clock.now_ns() if now_ns is None else now_ns
        async with self._lock:
            firing, states, muted = await asyncio.to_thread(self._load, now)
            await asyncio.to_thread(self._stop_finished, set(firing), states, now)
            steps: list[Step] = []
            for alert_id, item in firing.items():
                policy = self.config.policy_for(item.alert.severity.value)
                if policy is None:
                    continue
                state = states.get(alert_id)
                if state is None:
                    state = _State(alert_id, 0, item.first_notice_ns, now, item.first_batch_id)
                    await asyncio.to_thread(self._create, item, now)
                why = muted.get(alert_id)
                if state.status == "active" and why is not None and state.next_due_ns is not None:
                    await self._hold(item, state, why, now)
                    continue
                if state.status == "held":
                    if why is not None:
                        continue
                    resumed = await self._resume(item, state, policy.tiers, now)
                    if resumed is None:
                        continue
                    state = resumed
                if state.status != "active" or state.next_due_ns is None:
                    continue
                if state.next_due_ns > now:
                    continue
                if state.tiers_notified >= len(policy.tiers):
                    continue
                step = await self._escalate(item, state, policy.tiers, now)
                if step is not None:
                    steps.append(step)
            return steps

    async def _hold(self, item: _Firing, state: _State, why: str, now: int) -> None:
        """The alert is muted: no tier is told until the mute ends (module docstring)."""
        if not await asyncio.to_thread(self._set_status, state.alert_id, "active", "held", now):
            return
        log.info("escalation of alert %s held: %s", state.alert_id, why)
        await self._audit_change(item, "alert.escalation_held", state, now, reason=why)

    async def _resume(
        self, item: _Firing, state: _State, tiers: Sequence[Tier], now: int
    ) -> _State | None:
        """The mute ended: the tier told last gets its full wait again, from now."""
        next_due = state.next_due_ns
        if state.tiers_notified and next_due is not None:
            wait = tiers[state.tiers_notified - 1].after_s
            if wait is not None:
                next_due = max(next_due, now + int(wait * 1e9))
        if not await asyncio.to_thread(
            self._set_status, state.alert_id, "held", "active", now, next_due
        ):
            return None
        log.info("escalation of alert %s resumed: it is no longer muted", state.alert_id)
        resumed = _State(
            state.alert_id,
            state.tiers_notified,
            next_due,
            state.started_at_ns,
            state.first_batch_id,
            "active",
        )
        await self._audit_change(item, "alert.escalation_resumed", resumed, now)
        return resumed

    async def _audit_change(
        self, item: _Firing, action: str, state: _State, now: int, **extra: str
    ) -> None:
        detail: dict[str, object] = {
            "alert_id": state.alert_id,
            "tiers_notified": state.tiers_notified,
            "drill": item.alert.drill_id is not None,
            **extra,
        }
        if state.next_due_ns is not None:
            detail["next_due_at"] = datetime_from_ns(state.next_due_ns).isoformat()
        await audit.append_async(
            self._db,
            actor=ACTOR,
            action=action,
            target=state.alert_id,
            detail=detail,
            now=datetime_from_ns(now),
        )

    async def _escalate(
        self, item: _Firing, state: _State, tiers: Sequence[Tier], now: int
    ) -> Step | None:
        index = state.tiers_notified
        tier = tiers[index]
        due = state.next_due_ns if state.next_due_ns is not None else now
        recipients = self.on_duty(tier, due)
        if index == 0:
            # They just got the alert's first notice; the same news twice is noise.
            recipients = [c for c in recipients if c not in item.told]
        number = index + 1
        alert = item.alert
        for cid in recipients:
            contact = self._contacts.get(cid)
            assert contact is not None
            subject, body, short = render_step(
                alert,
                number,
                since_ns=item.first_notice_ns,
                now_ns=now,
                names=self._names,
                language=self._contacts.language_of(contact),
                timezone=self._timezone,
            )
            await self._outbox.enqueue_message(
                cid,
                subject,
                body,
                alert_ids=[alert.id],
                kind="escalation",
                severity=alert.severity.value,
                dedup_key=f"esc:{alert.id}:{number}:{cid}",
                short_body=short,
            )
        if recipients and self._record is not None:
            await self._record(item.first_batch_id, recipients)
        after = tier.after_s
        next_due = None if after is None or index + 1 >= len(tiers) else now + int(after * 1e9)
        advanced = await asyncio.to_thread(
            self._advance, state, number, due, now, next_due, recipients
        )
        if not advanced:
            return None
        if recipients and self._on_enqueue is not None:
            self._on_enqueue()
        who = ", ".join(recipients) or "nobody"
        if index:
            log.warning(
                "alert %s unacknowledged: escalation tier %d told %s", alert.id, number, who
            )
        else:
            log.info("alert %s: escalation tier 1 (on duty) told %s", alert.id, who)
        await audit.append_async(
            self._db,
            actor=ACTOR,
            action="alert.escalated",
            target=alert.id,
            detail={
                "alert_id": alert.id,
                "tier": number,
                "recipients": recipients,
                "due_at": datetime_from_ns(due).isoformat(),
                "drill": alert.drill_id is not None,
            },
            now=datetime_from_ns(now),
        )
        return Step(alert.id, number, due, tuple(recipients), alert.drill_id is not None)

    # --- state database (blocking: called through asyncio.to_thread) ---------------------

    def _load(self, now: int) -> tuple[dict[str, _Firing], dict[str, _State], dict[str, str]]:
        """Firing alerts whose first notice is enqueued, the live escalation rows, and why
        each firing alert is muted now (the engine's silence and inhibit rules)."""
        silencer = Silencer(load_silences(self._db, now))
        with self._db.session() as session:
            rows = session.execute(
                select(AlertRow, NflogEntryRow.batch_id, NflogEntryRow.at_ns)
                .join(NflogEntryRow, NflogEntryRow.alert_id == AlertRow.id)
                .join(NflogBatchRow, NflogBatchRow.id == NflogEntryRow.batch_id)
                .where(
                    AlertRow.state == AlertState.FIRING.value,
                    NflogEntryRow.kind == "firing",
                    NflogBatchRow.enqueued.is_(True),
                )
                .order_by(AlertRow.fired_at_ns, AlertRow.id)
            ).all()
            firing: dict[str, _Firing] = {}
            for alert_row, batch_id, at_ns in rows:
                known = firing.get(alert_row.id)
                if known is None or at_ns < known.first_notice_ns:
                    firing[alert_row.id] = _Firing(
                        snapshot(alert_from_row(alert_row)), batch_id, int(at_ns), frozenset()
                    )
            if firing:
                told: dict[str, set[str]] = {}
                for rcpt in session.execute(
                    select(NflogRecipientRow).where(NflogRecipientRow.alert_id.in_(list(firing)))
                ).scalars():
                    told.setdefault(rcpt.alert_id, set()).add(rcpt.recipient)
                for aid, got in told.items():
                    old = firing[aid]
                    firing[aid] = _Firing(
                        old.alert, old.first_batch_id, old.first_notice_ns, frozenset(got)
                    )
            states = {
                r.alert_id: _State(
                    r.alert_id,
                    r.tiers_notified,
                    r.next_due_ns,
                    r.started_at_ns,
                    r.first_batch_id,
                    r.status,
                )
                for r in session.execute(
                    select(EscalationRow).where(
                        or_(EscalationRow.status.in_(_LIVE), EscalationRow.alert_id.in_(firing))
                    )
                ).scalars()
            }
            muted: dict[str, str] = {}
            if firing:
                open_alerts = [
                    alert_from_row(r)
                    for r in session.execute(
                        select(AlertRow).where(AlertRow.state.in_(_OPEN_STATES))
                    ).scalars()
                ]
                labels = {a.id: a.match_labels() for a in open_alerts}
                inhibited = self._inhibitor.inhibited(
                    Labelled(a.id, a.state, labels[a.id]) for a in open_alerts
                )
                for aid in firing:
                    if aid in inhibited:
                        muted[aid] = f"inhibited by alert {inhibited[aid]}"
                    elif aid in labels and (ids := silencer.silenced_by(labels[aid], now)):
                        muted[aid] = f"silenced by {', '.join(ids)}"
            return firing, states, muted

    def _create(self, item: _Firing, now: int) -> None:
        with self._db.session(write=True) as session:
            if session.get(EscalationRow, item.alert.id) is not None:
                return
            session.add(
                EscalationRow(
                    alert_id=item.alert.id,
                    severity=item.alert.severity.value,
                    drill=item.alert.drill_id is not None,
                    status="active",
                    tiers_notified=0,
                    next_due_ns=item.first_notice_ns,
                    first_batch_id=item.first_batch_id,
                    started_at_ns=now,
                    updated_at_ns=now,
                )
            )

    def _advance(
        self,
        state: _State,
        number: int,
        due: int,
        now: int,
        next_due: int | None,
        recipients: list[str],
    ) -> bool:
        """Record tier ``number`` as told; False when another step got there first."""
        with self._db.session(write=True) as session:
            row = session.get(EscalationRow, state.alert_id)
            if row is None or row.tiers_notified != state.tiers_notified:
                return False
            row.tiers_notified = number
            row.next_due_ns = next_due
            row.status = "active" if next_due is not None else "done"
            row.updated_at_ns = now
            session.add(
                EscalationStepRow(
                    alert_id=state.alert_id,
                    tier=number,
                    due_at_ns=due,
                    sent_at_ns=now,
                    recipients=json.dumps(recipients),
                )
            )
            return True

    def _set_status(
        self,
        alert_id: str,
        before: str,
        after: str,
        now: int,
        next_due: int | None = None,
    ) -> bool:
        """``before`` -> ``after`` (and ``next_due`` when resuming); False if it moved on."""
        with self._db.session(write=True) as session:
            row = session.get(EscalationRow, alert_id)
            if row is None or row.status != before:
                return False
            row.status = after
            if after == "active":
                row.next_due_ns = next_due
            row.updated_at_ns = now
            return True

    def _stop_finished(self, firing: set[str], states: dict[str, _State], now: int) -> None:
        """Active escalations whose alert no longer fires: acknowledged or resolved."""
        gone = [aid for aid, st in states.items() if aid not in firing and st.status in _LIVE]
        if not gone:
            return
        with self._db.session(write=True) as session:
            for aid in gone:
                row = session.get(EscalationRow, aid)
                alert = session.get(AlertRow, aid)
                if row is None or alert is None or alert.state == AlertState.FIRING.value:
                    continue
                row.status = (
                    "acknowledged" if alert.state == AlertState.ACKNOWLEDGED.value else "resolved"
                )
                row.next_due_ns = None
                row.updated_at_ns = now
                log.info("escalation of alert %s stopped: %s", aid, row.status)
        for aid in gone:
            states.pop(aid, None)

    def steps(self, alert_id: str) -> list[tuple[int, list[str]]]:
        """Tiers told of ``alert_id`` and to whom, in order (blocking; for the console)."""
        with self._db.session() as session:
            rows = session.execute(
                select(EscalationStepRow)
                .where(EscalationStepRow.alert_id == alert_id)
                .order_by(EscalationStepRow.tier)
            ).scalars()
            return [(r.tier, list(json.loads(r.recipients))) for r in rows]
