"""Network faults between the gateway and its servers, on real Mosquitto and InfluxDB.

A FaultProxy (tests/fault_proxy.py) sits either between the gateway and the broker or between
the gateway and InfluxDB, while a device publishes readings continuously (QoS 1, source
timestamps in the payload). For every fault mode: once the fault clears, every reading is in
InfluxDB exactly once, the gateway reconnected by itself (attempts seen at the proxy, spaced
by a growing backoff where the link keeps failing), and the backlog waited on disk (the spool)
or at the broker, never in the gateway's memory. Then the broker itself is stopped and
restarted under load with a backlog queued for the gateway: no QoS 1 reading is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import collectors.mqtt as mqtt_collector
from collectors.mqtt import MqttCollector
from gateway.app import Gateway
from gateway.forwarder import Forwarder
from gateway.settings import Settings
from gateway.simulation import MqttPublisher
from gateway.store.influx import InfluxStore
from tests.e2e import mqtt_values, wait_for, write_site
from tests.fault_proxy import Direction, FaultProxy, Mode
from tests.fixtures_mosquitto import GATEWAY_USER, SecureMosquitto
from tests.servers import InfluxServer, MosquittoServer

HOUR_NS = 3_600 * 10**9
KEEPALIVE_S = 2  # MQTT: a dead link is noticed after about two keepalives
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 2
STORE_TIMEOUT_S = 2.0  # InfluxDB: a request without an answer fails after this
STORE_BACKOFF_S = (0.25, 1.0)  # the forwarder's first and longest wait between attempts
BURST, BURST_EVERY_S = 2, 0.005  # messages published per tick: a few hundred a second
# What the gateway may hold in memory at once, whatever the backlog. The broker sends only
# what the gateway has not acknowledged yet, and the gateway acknowledges once a batch is
# spooled, so its queue follows the publish rate times one spool commit. (Not the broker's
# max_inflight_messages: Mosquitto 2.0 refills that window as acknowledgements arrive, and
# a few hundred messages were seen queued at this test's rate.) The pipeline holds at most
# one collector batch of readings.
MAX_QUEUED_MESSAGES = 4 * mqtt_collector.MAX_BATCH
MAX_PIPELINE_READINGS = 2 * mqtt_collector.MAX_BATCH


@pytest.fixture(autouse=True)
def _quick_mqtt_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production keeps a 30 s keepalive and up to 60 s between reconnects; the same code with
    shorter timers lets a test see several detections and attempts in a few seconds."""
    monkeypatch.setattr(mqtt_collector, "KEEPALIVE_S", KEEPALIVE_S)
    monkeypatch.setattr(mqtt_collector, "RECONNECT_MIN_S", RECONNECT_MIN_S)
    monkeypatch.setattr(mqtt_collector, "RECONNECT_MAX_S", RECONNECT_MAX_S)


@pytest.fixture
def proxies() -> Iterator[Callable[[int], FaultProxy]]:
    """Makes FaultProxies to 127.0.0.1:<port>; all are stopped when the test ends."""
    made: list[FaultProxy] = []

    def make(port: int) -> FaultProxy:
        proxy = FaultProxy("127.0.0.1", port, max_lifetime_s=300).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()


@dataclass
class Peaks:
    """The largest in-memory queues and spool depth seen while sampling."""

    queued_messages: int = 0
    pipeline_readings: int = 0
    spool_depth: int = 0


@dataclass
class Rig:
    """A gateway with one MQTT device, a publisher for it, and what was published."""

    gateway: Gateway
    publisher: MqttPublisher
    influx: InfluxServer
    topic: str
    start_ms: int
    published_messages: int = 0
    peaks: Peaks = field(default_factory=Peaks)

    @property
    def collector(self) -> MqttCollector:
        found = [c for c in self.gateway.collectors if isinstance(c, MqttCollector)]
        assert len(found) == 1
        return found[0]

    @property
    def published_readings(self) -> int:
        return 2 * self.published_messages

    def publish(self, n: int) -> None:
        for _ in range(n):
            k = self.published_messages
            t, h = mqtt_values(k)
            # 10 ms apart, all in the past: each message has its own source time.
            body = {"temperature": t, "humidity": h, "ts": self.start_ms + 10 * k}
            self.publisher.publish(self.topic, body, readings=2)
            self.published_messages += 1

    async def sample(self) -> None:
        """Record the gateway's in-memory queues and spool depth (read from the objects:
        process RSS would be too noisy to bound)."""
        queue = self.collector._queue
        peaks = self.peaks
        peaks.queued_messages = max(peaks.queued_messages, queue.qsize() if queue else 0)
        peaks.pipeline_readings = max(
            peaks.pipeline_readings, self.gateway.pipeline._queued_readings
        )
        peaks.spool_depth = max(peaks.spool_depth, await self.gateway.spool.depth())

    async def stored(self) -> int:
        return await asyncio.to_thread(_influx_count, self.influx)


def _influx_count(influx: InfluxServer) -> int:
    try:
        result = influx.query("SELECT count(value) FROM readings")
    except Exception:  # InfluxDB restarting: not yet
        return -1
    results = result.get("results")
    assert isinstance(results, list)
    series = results[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    *,
    name: str,
    influx: InfluxServer,
    broker_url: str,
    influx_url: str,
    publish_port: int,
    device: str = "mq-0",
    publisher_login: tuple[str, str] | None = None,
) -> AsyncIterator[Rig]:
    prefix = f"archwatch/faults/{name}/room"  # the production ACL's layout
    site = write_site(tmp_path / "site.yaml", modbus_ports=[], mqtt_devices=1, topic_prefix=prefix)
    settings = Settings(
        data_dir=tmp_path / "data",
        broker_url=broker_url,
        mqtt_client_id=f"faults-{name}",
        batch_size=1000,
    )
    store = InfluxStore(
        influx_url,
        token=None,
        org="-",
        bucket=influx.database,
        database=influx.database,
        timeout_s=STORE_TIMEOUT_S,
    )
    gateway = Gateway(settings, site, store=store)
    # The production forwarder, waiting at most 1 s between attempts instead of 30 s.
    gateway.forwarder = Forwarder(
        gateway.spool,
        gateway.store,
        clock=gateway.clock,
        metrics=gateway.metrics,
        batch_size=settings.batch_size,
        backoff_initial=STORE_BACKOFF_S[0],
        backoff_max=STORE_BACKOFF_S[1],
    )
    publisher = MqttPublisher("127.0.0.1", publish_port, client_id=f"faults-{name}-device")
    if publisher_login is not None:
        publisher.client.username_pw_set(*publisher_login)
    start_ms = (time.time_ns() - HOUR_NS) // 10**6
    r = Rig(gateway, publisher, influx, f"{prefix}/{device}", start_ms)
    await gateway.start()
    try:
        await wait_for(lambda: _subscribed(r), what="the gateway's MQTT subscription")
        publisher.start()
        yield r
    finally:
        publisher.stop()
        await gateway.stop()


async def _subscribed(r: Rig) -> bool:
    return r.collector.connected


async def publish_for(r: Rig, seconds: float) -> None:
    """Publish continuously for ``seconds``, sampling the gateway's memory as it goes."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        r.publish(BURST)
        await r.sample()
        await asyncio.sleep(BURST_EVERY_S)


async def all_stored(r: Rig) -> None:
    async def done() -> bool:
        await r.sample()
        return r.publisher.unacked == 0 and await r.stored() >= r.published_readings

    await wait_for(done, timeout=120, what=f"all {r.published_readings} readings stored")
    # Exactly: each published reading has its own source time, so a count above the number
    # published would mean readings that were never sent.
    assert await r.stored() == r.published_readings


def assert_memory_bounded(r: Rig) -> None:
    assert r.peaks.queued_messages <= MAX_QUEUED_MESSAGES, r.peaks
    assert r.peaks.pipeline_readings <= MAX_PIPELINE_READINGS, r.peaks


def assert_backoff(attempts: list[float], min_delay: float) -> None:
    """Attempts while the link kept failing: several, never in a tight loop, spacing grown."""
    assert len(attempts) >= 3, f"only {len(attempts)} connection attempts during the fault"
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert min(gaps) >= 0.5 * min_delay, f"retried without waiting: {gaps}"
    assert max(gaps) >= 1.5 * min_delay, f"the wait never grew: {gaps}"


# A stall must outlast keepalive detection (PINGREQ after one keepalive, no answer within
# another) to count as a dead link; resets must last long enough to see the wait grow.
BROKER_FAULT_S = {Mode.STALL: 2.5 * KEEPALIVE_S, Mode.RESET: 5.0}

FAULTS = [
    pytest.param(Mode.LATENCY, Direction.TO_CLIENT, id="latency"),
    pytest.param(Mode.STALL, Direction.TO_CLIENT, id="stall"),
    pytest.param(Mode.RESET, Direction.TO_CLIENT, id="reset"),
    pytest.param(Mode.HALF_OPEN, Direction.TO_CLIENT, id="half-open-to-gateway"),
    pytest.param(Mode.HALF_OPEN, Direction.TO_SERVER, id="half-open-from-gateway"),
    pytest.param(Mode.DROP_NEW, Direction.TO_CLIENT, id="drop-new"),
]


@pytest.mark.parametrize(("mode", "direction"), FAULTS)
async def test_broker_link_fault_loses_nothing(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    influx: InfluxServer,
    proxies: Callable[[int], FaultProxy],
    mode: Mode,
    direction: Direction,
) -> None:
    proxy = proxies(mosquitto.port)
    async with rig(
        tmp_path,
        name=f"broker-{mode.value}-{direction.value}",
        influx=influx,
        broker_url=proxy.url("mqtt"),
        influx_url=influx.url,
        publish_port=mosquitto.port,
    ) as r:
        await publish_for(r, 0.5)
        await wait_for(lambda: _some_stored(r), what="readings flowing before the fault")
        mark = time.monotonic()
        await proxy.aset_mode(mode, direction=direction)
        if mode is Mode.DROP_NEW:
            await asyncio.to_thread(
                proxy.kill_connections
            )  # the gateway must reconnect, and is refused
        await publish_for(r, BROKER_FAULT_S.get(mode, 2.5))
        received_during_fault = r.gateway.metrics.total("readings_received")
        cleared = time.monotonic()
        await proxy.aset_mode(Mode.PASS)
        await publish_for(r, 0.5)
        await all_stored(r)
        during = [t for t in proxy.attempts if mark <= t < cleared]
        connections = r.collector.connections

    assert_memory_bounded(r)
    if mode is Mode.LATENCY:
        assert connections == 1  # slow is not dead: the session was kept
        return
    # The link died: the gateway connected again by itself (the first connection is one).
    assert connections >= 2
    assert len(proxy.attempts) >= 2
    # Messages published during the fault waited at the broker, not in the gateway.
    assert received_during_fault < r.published_readings
    if mode is Mode.RESET:
        assert_backoff([mark, *during], RECONNECT_MIN_S)


@pytest.mark.parametrize(("mode", "direction"), FAULTS)
async def test_influxdb_link_fault_loses_nothing(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    influx: InfluxServer,
    proxies: Callable[[int], FaultProxy],
    mode: Mode,
    direction: Direction,
) -> None:
    proxy = proxies(influx.port)
    async with rig(
        tmp_path,
        name=f"influx-{mode.value}-{direction.value}",
        influx=influx,
        broker_url=mosquitto.url,
        influx_url=proxy.url("http"),
        publish_port=mosquitto.port,
    ) as r:
        await publish_for(r, 0.5)
        await wait_for(lambda: _some_stored(r), what="readings flowing before the fault")
        r.peaks = Peaks()  # what happens from the fault on
        mark = time.monotonic()
        await proxy.aset_mode(mode, direction=direction)
        if mode is Mode.DROP_NEW:
            await asyncio.to_thread(proxy.kill_connections)
        await publish_for(r, 3.0)
        cleared = time.monotonic()
        await proxy.aset_mode(Mode.PASS)
        await publish_for(r, 0.5)
        await all_stored(r)
        errors = r.gateway.metrics.total("store_write_errors")
        reconciled = r.gateway.metrics.total("readings_reconciled")
        during = [t for t in proxy.attempts if mark <= t < cleared]

    assert_memory_bounded(r)
    if mode is Mode.LATENCY:
        assert errors == 0  # slow is not down: no write failed
        return
    assert errors >= 1  # the gateway saw the fault and retried
    # The backlog waited on disk: the spool held far more than the memory ever did.
    in_memory = r.peaks.queued_messages * 2 + r.peaks.pipeline_readings
    assert r.peaks.spool_depth > in_memory, r.peaks
    if mode is Mode.RESET:
        assert_backoff(during, STORE_BACKOFF_S[0])
    if mode is Mode.HALF_OPEN and direction is Direction.TO_CLIENT:
        # InfluxDB applied writes whose answers never came back: the gateway found them
        # stored when it asked, instead of sending them again.
        assert reconciled >= 1
    if mode is Mode.DROP_NEW:
        # Refused attempts never reach the proxy; the error count shows they were spaced:
        # at most one per first wait, over the fault and its end.
        assert errors <= (cleared - mark) / STORE_BACKOFF_S[0] + 2


async def _some_stored(r: Rig) -> bool:
    return await r.stored() > 0


def _production_broker_rig(
    tmp_path: Path, name: str, broker: SecureMosquitto, influx: InfluxServer, proxy: FaultProxy
) -> AbstractAsyncContextManager[Rig]:
    """A rig on the production Mosquitto configuration: the gateway through ``proxy`` with
    its own login, one device publishing straight to the broker with its own."""
    gateway_url = f"mqtt://{GATEWAY_USER}:{broker.gateway_password}@127.0.0.1:{proxy.port}"
    return rig(
        tmp_path,
        name=name,
        influx=influx,
        broker_url=gateway_url,
        influx_url=influx.url,
        publish_port=broker.port,
        publisher_login=("mq-0", broker.password_of("mq-0")),
    )


async def _queue_a_backlog_for_the_offline_gateway(
    r: Rig, proxy: FaultProxy, seconds: float
) -> None:
    """Readings flow; then the gateway goes offline and the broker queues ``seconds`` of
    readings in its persistent session, every one acknowledged to the device (which so
    holds no copy to send again: the broker's queue is the only one)."""
    await publish_for(r, 0.5)
    await wait_for(lambda: _some_stored(r), what="readings flowing")
    await proxy.aset_mode(Mode.DROP_NEW)
    await asyncio.to_thread(proxy.kill_connections)
    await publish_for(r, seconds)
    await wait_for(lambda: _all_acked(r), what="the broker took every message")
    queued = r.published_readings - int(r.gateway.metrics.total("readings_received"))
    assert queued > 0


async def test_broker_restart_under_load_with_a_queued_backlog_loses_nothing(
    tmp_path: Path,
    secure_mosquitto: SecureMosquitto,
    influx: InfluxServer,
    proxies: Callable[[int], FaultProxy],
) -> None:
    """The production Mosquitto configuration (persistence on), stopped and started while a
    device publishes and while readings are queued for the offline gateway."""
    broker = secure_mosquitto
    proxy = proxies(broker.port)
    async with _production_broker_rig(tmp_path, "broker-restart", broker, influx, proxy) as r:
        await _queue_a_backlog_for_the_offline_gateway(r, proxy, 1.5)
        # Restart the broker with that backlog, while the device keeps publishing (its
        # client holds the messages the broker did not acknowledge, and sends them again).
        await asyncio.to_thread(broker.stop)
        await publish_for(r, 1.0)
        await asyncio.to_thread(broker.start)
        await publish_for(r, 1.0)
        await proxy.aset_mode(Mode.PASS)
        await publish_for(r, 0.5)
        await all_stored(r)
        assert r.collector.connections >= 2
    assert_memory_bounded(r)


async def _all_acked(r: Rig) -> bool:
    return r.publisher.unacked == 0


def _broker_setting(broker: SecureMosquitto, key: str) -> str:
    """A setting of the production configuration the broker runs (paths rewritten)."""
    for line in broker.config.read_text(encoding="utf-8").splitlines():
        words = line.split(maxsplit=1)
        if len(words) == 2 and words[0] == key:
            return words[1].strip()
    raise AssertionError(f"{broker.config} sets no {key}")


def _file_state(path: Path) -> tuple[int, int, int] | None:
    """Identity of the persistence file: Mosquitto writes a new file and renames it over the
    old one, so each save changes the inode (and the mtime)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


async def test_broker_killed_after_an_autosave_keeps_the_offline_gateways_backlog(
    tmp_path: Path,
    secure_mosquitto: SecureMosquitto,
    influx: InfluxServer,
    proxies: Callable[[int], FaultProxy],
) -> None:
    """SIGTERM makes Mosquitto save on the way out, so the restart above never needs the
    periodic save. SIGKILL leaves only what the autosave (``autosave_interval`` of
    deploy/mosquitto/mosquitto.conf) wrote: the backlog queued for the offline gateway's
    persistent session must be in it, and reach InfluxDB once the gateway is back."""
    broker = secure_mosquitto
    autosave_s = float(_broker_setting(broker, "autosave_interval"))
    db = Path(_broker_setting(broker, "persistence_location")) / "mosquitto.db"
    proxy = proxies(broker.port)
    async with _production_broker_rig(tmp_path, "broker-sigkill", broker, influx, proxy) as r:
        await _queue_a_backlog_for_the_offline_gateway(r, proxy, 1.0)
        # A save that ends after this point began after the last message was queued (the
        # broker queues a message before it acknowledges it, and saves between messages).
        before = _file_state(db)

        async def saved() -> bool:
            now = _file_state(db)
            return now is not None and now != before

        await wait_for(saved, timeout=3 * autosave_s + 10, what="an autosave of the backlog")
        await asyncio.to_thread(broker.stop, signal.SIGKILL)
        assert r.publisher.unacked == 0
        await asyncio.to_thread(broker.start)  # the same configuration and persistence file
        await proxy.aset_mode(Mode.PASS)
        await all_stored(r)
        assert r.collector.connections >= 2
    assert_memory_bounded(r)
