"""End to end on real servers: Modbus simulators and Mosquitto in, InfluxDB or the embedded
store out, through the production Gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.clock import ScaledClock
from gateway.reading import SensorKind
from gateway.settings import Settings
from gateway.simulation import ModbusDeviceSimulator, MqttPublisher
from gateway.store.base import ReadingFilter, Store
from tests.e2e import TH_PROFILE, mqtt_values, wait_for, write_site
from tests.recording_proxy import RecordingProxy
from tests.servers import InfluxServer, MosquittoServer

HOUR_NS = 3_600 * 10**9
MESSAGES_PER_HOUR = 360  # one every 10 s


@pytest.fixture(params=["embedded", "influxdb"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _settings(data_dir: Path, broker: MosquittoServer, client_id: str, **extra: object) -> Settings:
    return Settings(
        data_dir=data_dir,
        broker_url=broker.url,
        mqtt_client_id=client_id,
        batch_size=200,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def modbus_sims() -> AsyncIterator[list[ModbusDeviceSimulator]]:
    from collectors.modbus_profile import ProfileLibrary

    profile = ProfileLibrary.load().get(TH_PROFILE)
    sims = [ModbusDeviceSimulator(profile) for _ in range(2)]
    for sim in sims:
        await sim.start()
    yield sims
    for sim in sims:
        await sim.stop()


async def test_a_simulated_hour_is_stored_with_right_tags_and_values(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    mosquitto: MosquittoServer,
    modbus_sims: list[ModbusDeviceSimulator],
    backend: str,
) -> None:
    extra: dict[str, object] = {}
    if backend == "influxdb":
        influx: InfluxServer = request.getfixturevalue("influx")
        extra = {"influx_url": influx.url}
    site = write_site(
        tmp_path / "site.yaml",
        modbus_ports=[s.port for s in modbus_sims],
        mqtt_devices=2,
        topic_prefix=f"e2e/{backend}/hour",
    )
    # 600x: a 0.1 s poll is a minute of device time, so an hour passes in about 6 s.
    clock = ScaledClock(600.0)
    t0_ns = clock.now_ns()
    gateway = Gateway(
        _settings(tmp_path / "data", mosquitto, f"e2e-hour-{backend}", **extra), site, clock=clock
    )
    served: dict[str, set[float]] = {"temperature": set(), "humidity": set()}

    async def serve_modbus() -> None:
        k = 0
        while True:
            t, h = round(18.0 + (k % 60) / 10, 1), round(50.0 + (k % 40) / 10, 1)
            served["temperature"].add(t)
            served["humidity"].add(h)
            for sim in modbus_sims:
                sim.set("temperature", t)
                sim.set("humidity", h)
            k += 1
            await asyncio.sleep(0.03)

    await gateway.start()
    feeder = asyncio.create_task(serve_modbus())
    await wait_for(lambda: _subscribed(gateway), what="MQTT subscription")
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, client_id=f"e2e-pub-{backend}")
    publisher.start()
    published: dict[tuple[str, int], float] = {}
    # an hour of MQTT readings, all in the past, on whole seconds (payloads carry ms)
    start_ns = (t0_ns - HOUR_NS) // 10**9 * 10**9
    for k in range(MESSAGES_PER_HOUR):
        ts_ns = start_ns + k * 10 * 10**9
        for dev in range(2):
            t, h = mqtt_values(k + dev)
            published[(f"mq-{dev}-t", ts_ns)] = t
            published[(f"mq-{dev}-h", ts_ns)] = h
            publisher.publish(
                f"e2e/{backend}/hour/mq-{dev}",
                {"temperature": t, "humidity": h, "ts": ts_ns // 10**6},
                readings=2,
            )
    try:
        # Let the Modbus side run for an hour of device time.
        await wait_for(lambda: _later_than(clock, t0_ns + HOUR_NS), what="an hour of device time")
        await wait_for(
            lambda: _mqtt_stored(gateway.store, start_ns, len(published)),
            what="every MQTT reading stored",
        )
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
        await gateway.stop_collectors()
        publisher.stop()
    assert await gateway.drain(60)

    # MQTT: every reading, exact value and timestamp, with the site's tags.
    raw = await gateway.store.raw(ReadingFilter(room="r2"), start_ns, t0_ns, limit=100_000)
    assert {(r.sensor, r.ts_ns): r.value for r in raw} == published
    for r in raw:
        assert (r.site, r.building, r.room, r.storage_class) == ("e2e", "b1", "r2", "film_master")
        assert r.device == r.sensor.rsplit("-", 1)[0]
        expected_kind = SensorKind.TEMPERATURE if r.sensor.endswith("-t") else SensorKind.HUMIDITY
        assert r.kind is expected_kind

    # Modbus: one stored reading per successful poll, values the simulator served, tags right.
    polls = {s.device: s.polls for s in gateway.device_statuses() if s.device.startswith("mb-")}
    mb = await gateway.store.raw(
        ReadingFilter(room="r1"), t0_ns - HOUR_NS, clock.now_ns() + HOUR_NS, limit=100_000
    )
    await gateway.stop()
    for dev, n in polls.items():
        assert n >= 50  # about 60 polls in the simulated hour
        for sensor, kind in ((f"{dev}-t", "temperature"), (f"{dev}-h", "humidity")):
            rows = [r for r in mb if r.sensor == sensor]
            assert len(rows) == n, f"{sensor}: {len(rows)} stored for {n} polls"
            assert {r.value for r in rows} <= served[kind]
            assert all(r.storage_class == "paper" and r.device == dev for r in rows)
            span_s = (max(r.ts_ns for r in rows) - min(r.ts_ns for r in rows)) / 1e9
            assert span_s >= 3_000  # the readings cover the simulated hour


async def _subscribed(gateway: Gateway) -> bool:
    return all(getattr(c, "connected", True) for c in gateway.collectors)


async def _later_than(clock: ScaledClock, ts_ns: int) -> bool:
    return clock.now_ns() >= ts_ns


async def _mqtt_stored(store: Store, start_ns: int, n: int) -> bool:
    return await store.count(ReadingFilter(room="r2"), start_ns, start_ns + 2 * HOUR_NS) >= n


async def test_influxdb_outage_under_load_loses_nothing_and_keeps_time_order(
    tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer
) -> None:
    proxy = RecordingProxy(influx.url).start()
    site = write_site(
        tmp_path / "site.yaml", modbus_ports=[], mqtt_devices=2, topic_prefix="e2e/outage"
    )
    gateway = Gateway(
        _settings(tmp_path / "data", mosquitto, "e2e-outage", influx_url=proxy.url), site
    )
    await gateway.start()
    await wait_for(lambda: _subscribed(gateway), what="MQTT subscription")
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, client_id="e2e-outage-pub")
    publisher.start()
    start_ns = (time.time_ns() - HOUR_NS) // 10**9 * 10**9
    total = 600

    def publish(k: int) -> None:
        t, h = mqtt_values(k)
        ts_ms = (start_ns + k * 5 * 10**9) // 10**6
        publisher.publish(
            f"e2e/outage/mq-{k % 2}", {"temperature": t, "humidity": h, "ts": ts_ms}, readings=2
        )

    try:
        for k in range(200):
            publish(k)
            await asyncio.sleep(0.002)
        await wait_for(lambda: _influx_count(influx, 1), what="first readings in InfluxDB")
        influx.stop()  # outage while readings keep coming
        for k in range(200, total):
            publish(k)
            await asyncio.sleep(0.002)
        await wait_for(
            lambda: _received(gateway, total * 2), what="all readings received during the outage"
        )
        assert await gateway.spool.depth() > 0  # they wait in the spool, not in memory
        influx.start()
        await wait_for(lambda: _influx_count(influx, total * 2), what="spool drained after restart")
    finally:
        publisher.stop()
        await gateway.stop()
        proxy.stop()

    result = influx.query("SELECT count(value) FROM readings")
    assert _count_of(result) == total * 2
    # Time order: per sensor, the timestamps were sent in non-decreasing order.
    last: dict[str, int] = {}
    for line in proxy.accepted_lines():
        tags = line.split(" ")[0].split(",")
        sensor = next(p.split("=", 1)[1] for p in tags if p.startswith("sensor="))
        ts = int(line.rsplit(" ", 1)[1])
        assert ts >= last.get(sensor, 0), f"{sensor} sent out of time order"
        last[sensor] = ts
    assert (
        any(w.status != 204 for w in proxy.writes)
        or gateway.metrics.total("store_write_errors") > 0
    ), "the outage was not seen by the gateway"


async def _received(gateway: Gateway, n: int) -> bool:
    return gateway.metrics.total("readings_received") >= n


async def _influx_count(influx: InfluxServer, n: int) -> bool:
    try:
        return _count_of(influx.query("SELECT count(value) FROM readings")) >= n
    except Exception:
        return False


def _count_of(result: dict[str, object]) -> int:
    results = result.get("results")
    assert isinstance(results, list)
    series = results[0].get("series")
    if not series:
        return 0
    return int(series[0]["values"][0][1])
