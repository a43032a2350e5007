"""The delivery worker: takes due outbox messages and hands them to apprise, URL by URL.

apprise's ``notify()`` gives one verdict for all the URLs it holds, so each attempt builds an
``apprise.Apprise()`` with exactly one URL. Per message:

* success: the row is marked delivered, ``notifications_sent{channel}`` counts it, the audit
  log gets ``notification.sent`` and the store's ``events`` a ``notification_sent`` event
  (who, through which channel kind, about which alerts; never the URL), then the optional
  ``on_delivered`` hook is called (tests use it; the gateway does not). Who gets an alert's
  resolution notice is *not* decided here: :mod:`alerting.service` records each recipient
  when their message is stored in the outbox, so someone whose firing message is still
  being retried when the alert resolves is not forgotten. The consequence, on purpose: a
  contact whose every channel failed (an ERROR line and a ``notification_failed`` event
  already say so) still gets the resolution notice, which may reach them once the channel
  is back;
* recoverable failure (see :class:`alerting.notifiers.Notifier`): retried on the same URL
  after ``backoff_initial_s * backoff_factor ** (attempt - 1)`` (capped), up to
  ``attempts_per_url`` attempts, then the contact's next URL;
* unrecoverable failure: the next URL at once;
* every URL exhausted: one ERROR log line, an ``notification_failed`` event, the
  ``notifications_failed`` metric and a ``notification.failed`` audit entry.

Retry state lives in the outbox row, so a restarted worker resumes each message where it
was (at least once: see :mod:`alerting.outbox`). Time comes from a :class:`Clock` and waiting
from an injectable ``sleep``, so tests run backoff in simulated time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import select

from alerting.contacts import Contacts, DeliverySettings
from alerting.notifiers import Attempt, Notifier, notifier_for
from alerting.outbox import Outbox, OutboxMessage
from alerting.ratelimit import ChannelLimiter, fit_summary
from alerting.redact import install_scrubber, redact_text
from alerting.state_models import AlertRow
from collectors.base import EventSink
from gateway import audit
from gateway.clock import Clock
from gateway.metrics import Metrics
from gateway.reading import Event
from gateway.statedb import StateDB

log = logging.getLogger(__name__)
ACTOR = "system:delivery"


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Retry and failover settings (default: the contacts file's ``delivery:``)."""

    attempts_per_url: int = 3
    backoff_initial_s: float = 5.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 300.0
    # How often to look for due messages when nothing wakes the worker.
    idle_poll_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: DeliverySettings) -> DeliveryPolicy:
        """The policy the contacts file's ``delivery:`` section asks for."""
        return cls(
            attempts_per_url=settings.attempts_per_url,
            backoff_initial_s=settings.backoff_initial_s,
            backoff_factor=settings.backoff_factor,
            backoff_max_s=settings.backoff_max_s,
        )

    def __post_init__(self) -> None:
        # A zero backoff would make run_once retry the same message without end.
        if self.attempts_per_url < 1 or self.backoff_initial_s <= 0 or self.idle_poll_s <= 0:
            raise ValueError("attempts_per_url >= 1, backoff_initial_s > 0, idle_poll_s > 0")

    def backoff_s(self, attempt: int) -> float:
        """Wait after the ``attempt``-th failed attempt on a URL (1-based)."""
        return float(
            min(self.backoff_max_s, self.backoff_initial_s * self.backoff_factor ** (attempt - 1))
        )


def send_once(notifier: Notifier, title: str, body: str) -> Attempt:
    """One apprise call with one URL; blocking. Never raises; all text comes back redacted."""
    import apprise  # deferred: importing apprise loads its whole plugin table

    install_scrubber()
    app = apprise.Apprise()
    if not app.add(notifier.url):
        return Attempt(ok=False, invalid=True, detail="apprise refused the URL")
    try:
        result = app.notify(body=body, title=title)
    except Exception as exc:  # a plugin bug must not kill the worker
        detail = redact_text(f"{type(exc).__name__}: {exc}", notifier.secrets)
        return Attempt(ok=False, detail=detail)
    lines = [entry.message for service in result for att in service.attempts for entry in att]
    if bool(result):
        return Attempt(ok=True)
    detail = redact_text(" | ".join(lines)[-500:], notifier.secrets) or "failed"
    return Attempt(ok=False, status=notifier.status_from_logs(lines), detail=detail)


Sender = Callable[[Notifier, str, str], Attempt]


class DeliveryWorker:
    """Delivers due outbox messages until cancelled (see the module docstring)."""

    def __init__(
        self,
        outbox: Outbox,
        contacts: Contacts,
        *,
        db: StateDB,
        events: EventSink,
        metrics: Metrics,
        clock: Clock,
        policy: DeliveryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_delivered: Callable[[OutboxMessage], Awaitable[None]] | None = None,
        sender: Sender = send_once,
        limiter: ChannelLimiter | None = None,
    ) -> None:
        self.outbox = outbox
        self.contacts = contacts
        self._db = db
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self.policy = policy or DeliveryPolicy.from_settings(contacts.model.delivery)
        self._sleep = sleep
        self._on_delivered = on_delivered
        self._send = sender
        # Robot send budgets: over budget, pending messages are merged (alerting.ratelimit).
        self.limiter = limiter or ChannelLimiter(db, outbox, contacts, clock)
        self._wake = asyncio.Event()
        metrics.describe("notifications_sent", "counter", "Notifications a channel accepted")
        metrics.describe(
            "notifications_failed", "counter", "Notifications that exhausted every URL"
        )
        install_scrubber()

    def __repr__(self) -> str:
        return f"DeliveryWorker({self.outbox!r})"

    def wake(self) -> None:
        """Look for due messages now (the outbox calls this after each enqueue)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled; a state-database outage is waited out, not fatal."""
        failing = False
        while True:
            try:
                delay = await self.run_once()
            except Exception as exc:  # the worker must outlive a database outage
                if not failing:
                    log.error("delivery worker: %s; retrying", redact_text(str(exc), set()))
                failing = True
                delay = self.policy.idle_poll_s
            else:
                if failing:
                    log.info("delivery worker: recovered")
                failing = False
            if self._wake.is_set():
                self._wake.clear()
                continue
            wait = self.policy.idle_poll_s if delay is None else min(delay, self.policy.idle_poll_s)
            sleeper = asyncio.ensure_future(self._sleep(max(wait, 0.0)))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()
            self._wake.clear()

    async def run_once(self) -> float | None:
        """Work through every message due now; return seconds until the next one is due."""
        while True:
            batch = await asyncio.to_thread(self.outbox.due)
            if not batch:
                break
            for message in await self.limiter.plan(batch):
                await self.deliver(message)
        next_ns = await asyncio.to_thread(self.outbox.next_due_ns)
        if next_ns is None:
            return None
        return max(0.0, (next_ns - self._clock.now_ns()) / 1e9)

    async def deliver(self, message: OutboxMessage) -> None:
        """One attempt on ``message`` at its current URL, and the bookkeeping after it."""
        contact = self.contacts.get(message.contact_id)
        if contact is None:
            await self._fail(message, [], f"contact '{message.contact_id}' is not in the file")
            return
        if message.url_index >= len(contact.urls):
            await self._fail(message, contact.channels, "no URL left")
            return
        notifier = notifier_for(contact.urls[message.url_index])
        body = message.short_body if notifier.short and message.short_body else message.body
        language = self.contacts.language_of(contact)
        title, body = fit_summary(notifier, message.subject, body, language=language)
        attempt = await asyncio.to_thread(self._send, notifier, title, body)
        if attempt.ok:
            await self._delivered(message, notifier)
            return
        recoverable = notifier.classify(attempt)
        tries = message.attempt + 1
        error = f"{notifier.label}: {attempt.detail}"
        if attempt.status is not None:
            error += f" (HTTP {attempt.status})"
        now = self._clock.now_ns()
        if recoverable and tries < self.policy.attempts_per_url:
            backoff = self.policy.backoff_s(tries)
            log.warning(
                "notification %d to %s via %s failed (attempt %d of %d), retrying in %.0f s: %s",
                message.id,
                contact.id,
                notifier.label,
                tries,
                self.policy.attempts_per_url,
                backoff,
                attempt.detail,
            )
            await asyncio.to_thread(
                self.outbox.record_attempt,
                message.id,
                url_index=message.url_index,
                attempt=tries,
                due_at_ns=now + int(backoff * 1e9),
                error=error,
            )
            return
        next_index = message.url_index + 1
        why = f"after {tries} attempts" if recoverable else "unrecoverable"
        if next_index < len(contact.urls):
            log.warning(
                "notification %d to %s: giving up on %s (%s: %s); failing over to %s",
                message.id,
                contact.id,
                notifier.label,
                why,
                attempt.detail,
                notifier_for(contact.urls[next_index]).label,
            )
            await asyncio.to_thread(
                self.outbox.record_attempt,
                message.id,
                url_index=next_index,
                attempt=0,
                due_at_ns=now,
                error=error,
            )
            return
        await self._fail(message, contact.channels, error)

    async def _delivered(self, message: OutboxMessage, notifier: Notifier) -> None:
        await asyncio.to_thread(
            self.outbox.mark_delivered,
            message.id,
            channel=notifier.channel,
            url_index=message.url_index,
        )
        self._metrics.inc("notifications_sent", channel=notifier.channel)
        log.info(
            "notification %d (%s) delivered to %s via %s",
            message.id,
            message.kind,
            message.contact_id,
            notifier.label,
        )
        await audit.append_async(
            self._db,
            actor=ACTOR,
            action="notification.sent",
            target=message.contact_id,
            detail={
                "message_id": message.id,
                "contact": message.contact_id,
                "channel": notifier.scheme,
                "kind": message.kind,
                "alert_ids": list(message.alert_ids),
                "attempts": message.attempts_total + 1,
            },
        )
        await self._emit_sent(message, notifier)
        if self._on_delivered is not None:
            await self._on_delivered(message)

    async def _emit_sent(self, message: OutboxMessage, notifier: Notifier) -> None:
        """The ``notification_sent`` event (Grafana annotations): who, which channel kind,
        which alerts, drill marked. The audit log already holds it, so a store that cannot
        take the event costs a log line, never the delivery's bookkeeping."""
        place, drill_id = await asyncio.to_thread(self._alert_place, message.alert_ids)
        tags = {
            **place,
            "contact": message.contact_id,
            "channel": notifier.scheme,  # the scheme only: URLs carry secrets
            "notification": message.kind,
        }
        if message.alert_ids:
            # Comma-separated when one message summarises several alerts.
            tags["alert_id"] = ",".join(message.alert_ids)
        try:
            await self._events.emit(
                Event(
                    ts_ns=self._clock.now_ns(),
                    kind="notification_sent",
                    title=f"{message.kind} notice to {message.contact_id} via {notifier.scheme}",
                    text=message.subject,
                    severity=message.severity,
                    tags=tags,
                    drill_id=drill_id,
                )
            )
        except Exception as exc:
            log.warning(
                "notification %d: could not write its notification_sent event: %s",
                message.id,
                redact_text(f"{type(exc).__name__}: {exc}", set()),
            )

    def _alert_place(self, alert_ids: tuple[str, ...]) -> tuple[dict[str, str], str | None]:
        """Site, building and room shared by ``alert_ids``, and their drill id (blocking)."""
        if not alert_ids:
            return {}, None
        with self._db.session() as session:
            rows = session.execute(
                select(AlertRow.labels, AlertRow.drill_id).where(AlertRow.id.in_(alert_ids))
            ).all()
        if not rows:
            return {}, None
        labels = [json.loads(text) for text, _ in rows]
        place = {
            key: str(labels[0][key])
            for key in ("site", "building", "room")
            if key in labels[0] and all(lab.get(key) == labels[0][key] for lab in labels)
        }
        drill = next((d for _, d in rows if d), None)
        return place, drill

    async def _fail(self, message: OutboxMessage, channels: list[str], error: str) -> None:
        await asyncio.to_thread(self.outbox.mark_failed, message.id, error=error)
        self._metrics.inc("notifications_failed", severity=message.severity)
        log.error(
            "NOTIFICATION LOST: %s notification %d for alerts %s could not be delivered to %s "
            "through any of its channels (%s); last error: %s",
            message.kind,
            message.id,
            ", ".join(message.alert_ids),
            message.contact_id,
            ", ".join(channels) or "none",
            error,
        )
        schemes = [c.partition("://")[0] for c in channels]
        await self._events.emit(
            Event(
                ts_ns=self._clock.now_ns(),
                kind="notification_failed",
                title=f"notification to {message.contact_id} failed on every channel",
                text=f"{message.subject}\nalerts: {', '.join(message.alert_ids)}\n{error}",
                severity=message.severity,
                tags={"contact": message.contact_id},
            )
        )
        await audit.append_async(
            self._db,
            actor=ACTOR,
            action="notification.failed",
            target=message.contact_id,
            detail={
                "message_id": message.id,
                "contact": message.contact_id,
                "channels": schemes,
                "kind": message.kind,
                "alert_ids": list(message.alert_ids),
                "error": error,
            },
        )
