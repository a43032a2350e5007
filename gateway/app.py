"""Process wiring: collectors -> pipeline -> spool -> forwarder -> store, in one process.

The path is deliberately short and visible: every collector hands Readings to the
``Pipeline``, which validates them and returns once they are durable in the ``Spool``; the
``Forwarder`` drains the spool into the ``Store`` in time order. Alerting subscribes to the
pipeline (``Gateway.pipeline.subscribe()``); the API reads the store and the state database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import collectors.all  # noqa: F401  (registers every collector)
from alerting.acklink import AckLinks, AckSigner
from alerting.dispatch import DispatchConfig
from alerting.service import AlertingService
from collectors.base import COLLECTORS, Collector, CollectorContext, DeviceStatus
from gateway import audit
from gateway.clock import Clock, SystemClock
from gateway.datadir import DataDir
from gateway.eventlog import EventWriter
from gateway.forwarder import Forwarder
from gateway.heartbeat import HEARTBEAT_INTERVAL_S, HeartbeatWriter
from gateway.logs import redact
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.reading import Reading
from gateway.settings import Settings
from gateway.single import GatewayLock, GatewayLockError
from gateway.site import DevicePlacement, Site
from gateway.spool import Spool
from gateway.statedb import StateDB
from gateway.store.base import Store
from gateway.store.factory import make_store

log = logging.getLogger(__name__)
# How often the gateway makes sure it still holds its lock (a PostgreSQL connection may drop).
LOCK_CHECK_S = 5.0


@dataclass(frozen=True)
class GatewayStatus:
    """A snapshot for the status line and the demo's summary."""

    readings_received: int
    readings_accepted: int
    readings_rejected: int
    readings_stored: int
    spool_depth: int
    devices_online: int
    devices_total: int


def describe_metrics(metrics: Metrics) -> None:
    for name, kind, text in [
        ("readings_received", "counter", "Readings handed to the pipeline by collectors"),
        ("readings_accepted", "counter", "Valid readings written to the spool"),
        ("readings_duplicate", "counter", "Readings ignored as already spooled"),
        ("readings_rejected", "counter", "Readings refused by validation, by reason"),
        ("readings_stored", "counter", "Readings accepted by the store"),
        ("spool_depth", "gauge", "Readings in the spool waiting for the store"),
        ("devices_online", "gauge", "Devices currently online"),
        ("devices_total", "gauge", "Devices configured"),
        ("devices_offline", "gauge", "Devices configured but currently offline"),
    ]:
        metrics.describe(name, kind, text)


class Gateway:
    """One running gateway for one site."""

    def __init__(
        self,
        settings: Settings,
        site: Site,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        metrics: Metrics | None = None,
        client_factories: dict[str, Callable[..., Any]] | None = None,
        dispatch: DispatchConfig | None = None,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.site = site
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        describe_metrics(self.metrics)
        self.data_dir = DataDir(settings.data_dir).ensure()
        self.store = store or make_store(settings, self.data_dir)
        self.spool = Spool(
            self.data_dir.spool, clock=self.clock, dedup_window_s=settings.dedup_window_hours * 3600
        )
        self.pipeline = Pipeline(
            self.spool,
            clock=self.clock,
            metrics=self.metrics,
            known_sensors={ref.sensor for ref in site.sensors()},
        )
        self.forwarder = Forwarder(
            self.spool,
            self.store,
            clock=self.clock,
            metrics=self.metrics,
            batch_size=settings.batch_size,
            warn_rows=settings.spool_warn_rows,
        )
        self.events = EventWriter(self.store, self.metrics)
        self.statedb = StateDB(self.data_dir.state_db_url(settings.state_db_url))
        self._lock = GatewayLock(self.data_dir.root, self.statedb)
        # The API process serves these metrics from the state database (gateway.heartbeat).
        self.heartbeat = HeartbeatWriter(
            self.statedb,
            site.id,
            self.metrics,
            self.clock,
            collect=self.status,
            interval_s=heartbeat_interval_s,
        )
        # Alerting subscribes to validated, spooled readings; a site without rules has none.
        self.alerting: AlertingService | None = None
        self._alert_feed: asyncio.Queue[Reading] | None = None
        if site.model.rules or site.model.contacts:
            self.alerting = AlertingService(
                site,
                self.statedb,
                self.events,
                self.clock,
                self.metrics,
                timezone=site.model.site.timezone,
                dispatch=dispatch,
                # Window rules (fluctuation, rate of change, doors...) are primed from what
                # the store holds, so a restart neither resolves nor re-fires their alerts.
                store=self.store,
                ack_links=AckLinks(
                    self.statedb,
                    AckSigner(
                        settings.signing_key, self.clock, ttl_s=settings.ack_link_hours * 3600
                    ),
                    public_url=settings.public_url,
                ),
            )
            self._alert_feed = self.pipeline.subscribe()
        ctx = CollectorContext(
            settings=settings,
            site=site,
            sink=self.pipeline,
            events=self.events,
            clock=self.clock,
            client_factories=dict(client_factories or {}),
        )
        by_protocol: dict[str, list[DevicePlacement]] = defaultdict(list)
        for placement in site.placements():
            by_protocol[placement.device.protocol].append(placement)
        self.collectors: list[Collector] = [
            COLLECTORS[protocol](placements, ctx) for protocol, placements in by_protocol.items()
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Take the gateway lock, prepare the state database, then start collecting and
        forwarding. Raises :class:`~gateway.single.GatewayLockError` when another gateway
        runs on this data directory or state database."""
        await asyncio.to_thread(self._lock.acquire)
        try:
            await self._start()
        except BaseException:
            await asyncio.to_thread(self._lock.release)
            raise

    async def _start(self) -> None:
        self.settings.signing_key()  # generated into the data directory on first start
        await asyncio.to_thread(self.statedb.migrate)
        await asyncio.to_thread(
            audit.append,
            self.statedb,
            actor="system:gateway",
            action="gateway.start",
            target=self.site.id,
            detail={"devices": sum(1 for _ in self.site.placements())},
        )
        await self.pipeline.start()
        # Scrapes should see the ingest counters from the start, not once the first reading
        # arrives (a rate over a series that appears late misses its first increase).
        for name in ("readings_received", "readings_accepted", "readings_stored"):
            self.metrics.inc(name, 0)
        self._tasks = [
            asyncio.create_task(self.forwarder.run(), name="forwarder"),
            asyncio.create_task(self.events.run(), name="events"),
            asyncio.create_task(self.heartbeat.run(), name="heartbeat"),
            asyncio.create_task(self._watch_lock(), name="gateway-lock"),
        ]
        if self.alerting is not None and self._alert_feed is not None:
            await self.alerting.start()
            self._tasks.extend(self.alerting.tasks(self._alert_feed))
        for collector in self.collectors:
            self._tasks.append(
                asyncio.create_task(collector.run(), name=f"collector-{collector.protocol}")
            )
        for task in self._tasks:
            task.add_done_callback(self._task_done)

    async def _watch_lock(self, interval_s: float = LOCK_CHECK_S) -> None:
        """Keep the gateway lock (see gateway.single); end the gateway if another took it."""
        failing = False
        while True:
            await asyncio.sleep(interval_s)
            try:
                retaken = await asyncio.to_thread(self._lock.check)
            except GatewayLockError:
                log.critical("the gateway lock was lost and another gateway holds it: stopping")
                raise
            except Exception as exc:  # the state database is away: try again next time
                if not failing:
                    log.warning("cannot check the gateway lock: %s", redact(str(exc)))
                failing = True
                continue
            failing = False
            if retaken:
                log.warning("the gateway lock's connection was lost; the lock is taken again")

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # A collector or the forwarder must never die silently: that is an outage.
            log.critical("task %s stopped: %r", task.get_name(), exc, exc_info=exc)

    async def stop_collectors(self) -> None:
        """Stop reading devices; the forwarder keeps draining the spool."""
        for task in self._tasks:
            if task.get_name().startswith("collector-"):
                task.cancel()
        await asyncio.gather(
            *(t for t in self._tasks if t.get_name().startswith("collector-")),
            return_exceptions=True,
        )

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the spool is empty (True) or ``timeout_s`` passes (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            if await self.spool.depth() == 0 and self.events.pending == 0:
                return True
            await asyncio.sleep(0.1)
        return await self.spool.depth() == 0

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        # The last snapshot: final counters; from here on its age shows the gateway stopped.
        await self.heartbeat.beat()
        with contextlib.suppress(Exception):
            await self.events.flush()
        await self.pipeline.close()
        await self.spool.close()
        await self.store.close()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                audit.append,
                self.statedb,
                actor="system:gateway",
                action="gateway.stop",
                target=self.site.id,
            )
        self.statedb.dispose()
        await asyncio.to_thread(self._lock.release)

    def device_statuses(self) -> list[DeviceStatus]:
        return [s for c in self.collectors for s in c.statuses()]

    async def status(self) -> GatewayStatus:
        statuses = self.device_statuses()
        online = sum(1 for s in statuses if s.online)
        depth = await self.spool.depth()
        self.metrics.set("spool_depth", depth)
        self.metrics.set("devices_online", online)
        self.metrics.set("devices_total", len(statuses))
        self.metrics.set("devices_offline", len(statuses) - online)
        return GatewayStatus(
            readings_received=int(self.metrics.total("readings_received")),
            readings_accepted=int(self.metrics.total("readings_accepted")),
            readings_rejected=int(self.metrics.total("readings_rejected")),
            readings_stored=int(self.metrics.total("readings_stored")),
            spool_depth=depth,
            devices_online=online,
            devices_total=len(statuses),
        )

    async def run_forever(self) -> None:
        await self.start()
        await self.serve()

    async def serve(self) -> None:
        """Run the started gateway until its tasks end or it is cancelled, then stop it."""
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()
