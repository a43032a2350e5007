"""Alerting wired into the gateway: validated readings -> evaluators -> engine -> outbox.

The alert engine subscribes to the pipeline (readings already durable in the spool), so
alerting never slows ingest and never sees a reading that could still be lost. Each batch the
dispatcher hands over is written to the outbox (and who will be told is recorded in the
notification log) before the delivery worker is woken.

At start-up, before the first live reading, the evaluators' history (rolling windows, door
states, flat runs...) is rebuilt from the store, so a restart neither resolves an alert whose
condition still holds nor fires it a second time (alerting.evaluators.base, "Restarts").
That takes at most ``prime_budget_s`` (the gateway starts its collectors only afterwards);
the rules not primed by then start cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from alerting.acklink import AckLinks
from alerting.ackqueue import AckQueue
from alerting.contacts import Contacts, load_contacts
from alerting.delivery import DeliveryWorker
from alerting.dispatch import DispatchConfig
from alerting.engine import AlertEngine
from alerting.escalation import EscalationManager
from alerting.evaluators import PRIME_BUDGET_S, build_evaluators, prime_evaluators
from alerting.evaluators.base import Evaluator
from alerting.model import Condition, NotificationBatch
from alerting.outbox import Outbox
from alerting.rules import site_rules
from collectors.base import EventSink
from gateway.clock import Clock
from gateway.metrics import Metrics
from gateway.reading import Reading
from gateway.site import Site
from gateway.statedb import StateDB
from gateway.store.base import Store

log = logging.getLogger(__name__)
TICK_S = 1.0


def display_names(site: Site) -> dict[str, str]:
    """Ids to the names keepers know (rooms, buildings, devices, sensors), for messages."""
    names: dict[str, str] = {}
    for building in site.model.buildings:
        names[building.id] = building.name or building.id
        for room in building.rooms:
            names[room.id] = room.name or room.id
    for placement in site.placements():
        names[placement.device.id] = placement.device.name or placement.device.id
        for spec in placement.device.sensors:
            names[spec.id] = spec.name or spec.id
    return names


class _RecordingSink:
    """The dispatcher's sink: outbox first, then who was told, then wake the worker."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.engine: AlertEngine | None = None
        self.worker: DeliveryWorker | None = None

    async def enqueue(self, batch: NotificationBatch) -> None:
        recipients = await self.outbox.enqueue_batch(batch)
        if self.engine is not None and recipients:
            # Recorded at enqueue, so a resolution notice reaches whoever was told even if
            # the alert resolves before the first message went out.
            await self.engine.record_recipients(batch.id, recipients)
        if self.worker is not None:
            self.worker.wake()


class AlertingService:
    """Rules, engine, outbox and delivery for one site."""

    def __init__(
        self,
        site: Site,
        db: StateDB,
        events: EventSink,
        clock: Clock,
        metrics: Metrics,
        *,
        timezone: str,
        dispatch: DispatchConfig | None = None,
        ack_links: AckLinks | None = None,
        store: Store | None = None,
        prime_budget_s: float = PRIME_BUDGET_S,
    ) -> None:
        rules = site_rules(site)
        # Where start() reads the evaluators' history from; without one they start cold.
        self.store = store
        # How long start() may spend on that before the rest start cold (collectors wait).
        self.prime_budget_s = prime_budget_s
        self._primed = False
        self.evaluators: list[Evaluator] = build_evaluators(rules, site) if rules else []
        self.contacts: Contacts | None = (
            load_contacts(site.relative(site.model.contacts)) if site.model.contacts else None
        )
        self._clock = clock
        self.outbox = Outbox(
            db,
            clock,
            contacts=self.contacts,
            timezone=timezone,
            names=display_names(site),
            decorate=ack_links.decorate if ack_links is not None else None,
        )
        sink = _RecordingSink(self.outbox)
        if dispatch is None and rules is not None:
            dispatch = rules.timing.dispatch()  # the rules file's timing: section
        self.engine = AlertEngine(db, sink, events, clock, dispatch=dispatch, metrics=metrics)
        sink.engine = self.engine
        self.ack_queue = AckQueue(db, self.engine)
        self.worker: DeliveryWorker | None = None
        if self.contacts is not None:
            self.worker = DeliveryWorker(
                self.outbox, self.contacts, db=db, events=events, metrics=metrics, clock=clock
            )
            sink.worker = self.worker
        self.escalation: EscalationManager | None = None
        if self.contacts is not None and self.contacts.model.escalation is not None:
            self.escalation = EscalationManager(
                db,
                self.outbox,
                self.contacts,
                self.contacts.model.escalation,
                clock,
                timezone=timezone,
                names=display_names(site),
                record_recipients=self.engine.record_recipients,
                on_enqueue=self.worker.wake if self.worker is not None else None,
            )

    async def start(self) -> None:
        """Resume the engine's alerts, then prime the evaluators; call before ``tasks``."""
        await self.engine.start()
        if self._primed:
            return
        self._primed = True
        await prime_evaluators(
            self.evaluators,
            self.store,
            now_ns=self._clock.now_ns(),
            active=self.engine.holding(),
            budget_s=self.prime_budget_s,
        )

    async def _evaluate(self, conditions: list[Condition]) -> None:
        if conditions:
            await self.engine.process(conditions)

    async def evaluate_reading(self, reading: Reading) -> None:
        """Run every rule on one validated reading and apply what they say."""
        conditions: list[Condition] = []
        for evaluator in self.evaluators:
            try:
                conditions.extend(evaluator.on_reading(reading))
            except Exception:  # one broken rule must not silence the others
                log.exception("rule evaluator %r failed on a reading", evaluator)
        await self._evaluate(conditions)

    async def evaluate_tick(self, now_ns: int) -> None:
        """Run the time-driven rules (offline, held-open door, calibration) at ``now_ns``."""
        conditions: list[Condition] = []
        for evaluator in self.evaluators:
            try:
                conditions.extend(evaluator.on_tick(now_ns))
            except Exception:
                log.exception("rule evaluator %r failed on a tick", evaluator)
        await self._evaluate(conditions)

    async def consume(self, queue: asyncio.Queue[Reading]) -> None:
        """Evaluate every validated reading the pipeline hands over."""
        while True:
            await self.evaluate_reading(await queue.get())

    async def tick(self) -> None:
        """Time-driven rules once a second, and acknowledgements queued by the API process."""
        while True:
            await self.evaluate_tick(self._clock.now_ns())
            await self.ack_queue.run_once()
            await asyncio.sleep(TICK_S)

    def tasks(self, queue: asyncio.Queue[Reading]) -> list[asyncio.Task[None]]:
        tasks = [
            asyncio.create_task(self.consume(queue), name="alerting-consume"),
            asyncio.create_task(self.tick(), name="alerting-tick"),
            asyncio.create_task(self.engine.run(), name="alerting-dispatch"),
        ]
        if self.worker is not None:
            tasks.append(asyncio.create_task(self.worker.run(), name="alerting-delivery"))
        if self.escalation is not None:
            tasks.append(asyncio.create_task(self.escalation.run(), name="alerting-escalation"))
        return tasks

    async def drain(self, timeout_s: float) -> None:
        """Give pending notifications a chance to go out (demo end, shutdown)."""
        if self.worker is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        with contextlib.suppress(Exception):
            while loop.time() < deadline:
                counts = await asyncio.to_thread(self.outbox.counts)
                if not counts.get("pending"):
                    return
                self.worker.wake()
                await asyncio.sleep(0.2)
