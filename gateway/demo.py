"""``archwatch demo``: the demo building simulated on loopback, run through the real gateway.

Modbus devices are pymodbus servers on free loopback ports; MQTT devices publish to an
embedded broker (amqtt) unless a broker URL is given; the climate has a day-night cycle
(compressed to ten minutes so a short run shows it), noise, and the first room's HVAC
failing ten seconds in. Everything else (collectors, pipeline, spool, store, state
database) is the production code path, in the data directory the user chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from amqtt.broker import Broker

from gateway.app import Gateway
from gateway.clock import SystemClock
from gateway.configfile import read_yaml
from gateway.net import free_port
from gateway.resources import demo_site_path
from gateway.settings import Settings
from gateway.simulation import (
    ModbusDeviceSimulator,
    MqttPublisher,
    RoomClimate,
    demo_climates,
    mqtt_payload,
    sensor_value,
)
from gateway.site import ModbusTcpDevice, MqttDevice, Site, SiteFile, load_site
from gateway.store.base import ReadingFilter


class JsonReceiver:
    """The demo's notification receiver: apprise's ``json://`` posts land here, on loopback,
    and are appended to ``notifications.jsonl`` in the data directory for the user to read."""

    def __init__(self, log_path: Path) -> None:
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    message = json.loads(body.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    message = {"raw": body.decode("utf-8", "replace")}
                if not isinstance(message, dict):
                    message = {"raw": message}
                message["path"] = self.path
                with receiver._lock:
                    receiver.messages.append(message)
                    with log_path.open("a", encoding="utf-8") as f:
                        f.write(json.dumps(message, ensure_ascii=False) + "\n")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


PUBLISH_INTERVAL_S = 2.0
SIM_TICK_S = 0.5
DRAIN_TIMEOUT_S = 30.0


async def start_broker(port: int) -> Broker:
    """An embedded MQTT broker on loopback (amqtt), for a demo with nothing installed."""
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    return broker


def _with_ports(site: Site, ports: dict[str, int]) -> Site:
    """The same site with its Modbus devices pointed at the simulators' loopback ports."""
    data, _ = read_yaml(site.path)
    for building in data["buildings"]:
        for room in [{"devices": building.get("outdoor", [])}, *building["rooms"]]:
            for dev in room.get("devices", []):
                if dev["id"] in ports:
                    dev["host"] = "127.0.0.1"
                    dev["port"] = ports[dev["id"]]
    return Site(site.path, SiteFile.model_validate(data), site.standards, site.profiles)


class DemoDevices:
    """Every device of a site, simulated: Modbus servers and MQTT publishers."""

    def __init__(self, site: Site, t0_s: float) -> None:
        self.site = site
        self.climates = demo_climates(site, t0_s)
        self.modbus: dict[str, ModbusDeviceSimulator] = {}
        self.publisher: MqttPublisher | None = None

    def _climate(self, building: str, room: str) -> RoomClimate:
        return self.climates[f"{building}/{room}"]

    async def start_modbus(self) -> dict[str, int]:
        ports = {}
        for placement in self.site.placements():
            dev = placement.device
            if isinstance(dev, ModbusTcpDevice):
                sim = ModbusDeviceSimulator(self.site.profiles.get(dev.profile), dev.unit_id)
                ports[dev.id] = await sim.start()
                self.modbus[dev.id] = sim
        self.update_modbus(time.time())
        return ports

    def update_modbus(self, now_s: float) -> None:
        for dev_id, sim in self.modbus.items():
            for ref in self.site.device_sensors(dev_id):
                value = sensor_value(ref, self._climate(ref.building, ref.room), now_s)
                assert ref.spec.point is not None
                sim.set(ref.spec.point, value)

    def publish_mqtt(self, now_s: float) -> None:
        assert self.publisher is not None
        for placement in self.site.placements():
            dev = placement.device
            if not isinstance(dev, MqttDevice):
                continue
            values = {
                ref.sensor: sensor_value(ref, self._climate(ref.building, ref.room), now_s)
                for ref in self.site.device_sensors(dev.id)
            }
            by_topic: dict[str, list[str]] = {}
            for spec in dev.sensors:
                by_topic.setdefault(dev.sensor_topic(spec), []).append(spec.id)
            for topic, sensor_ids in by_topic.items():
                specs = [s for s in dev.sensors if s.id in sensor_ids]
                if all(s.json_path for s in specs):
                    payload: dict[str, Any] | str = mqtt_payload(
                        dev, {k: values[k] for k in sensor_ids}, int(now_s * 1000)
                    )
                else:
                    payload = f"{values[sensor_ids[0]]:g}"
                self.publisher.publish(topic, payload, readings=len(sensor_ids))

    async def stop(self) -> None:
        for sim in self.modbus.values():
            await sim.stop()
        if self.publisher is not None:
            self.publisher.stop()


async def _wait_subscribed(gateway: Gateway, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if all(getattr(c, "connected", True) for c in gateway.collectors):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the gateway did not subscribe to the demo broker in time")


def _modbus_readings_read(gateway: Gateway) -> int:
    n_sensors = {
        p.device.id: len(p.device.sensors)
        for p in gateway.site.placements()
        if isinstance(p.device, ModbusTcpDevice)
    }
    return sum(
        s.polls * n_sensors[s.device] for s in gateway.device_statuses() if s.device in n_sensors
    )


async def run_demo(
    settings: Settings, *, site_file: Path | None = None, duration: float | None = None
) -> dict[str, Any]:
    """Run the demo; return the summary printed as the last line of JSON."""
    clock = SystemClock()
    base_site = load_site(site_file or demo_site_path())
    t0 = time.time()
    devices = DemoDevices(base_site, t0)
    ports = await devices.start_modbus()
    site = _with_ports(base_site, ports)
    devices.site = site

    broker: Broker | None = None
    if settings.broker_url is None:
        port = free_port()
        broker = await start_broker(port)
        settings = settings.model_copy(update={"broker_url": f"mqtt://127.0.0.1:{port}"})
    assert settings.broker_url is not None
    url = urlsplit(settings.broker_url)
    devices.publisher = MqttPublisher(url.hostname or "127.0.0.1", url.port or 1883)
    devices.publisher.start()

    # Contacts in the demo site point at ${ARCHWATCH_DEMO_RECEIVER}: a receiver of our own.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    receiver = JsonReceiver(settings.data_dir / "notifications.jsonl")
    os.environ.setdefault("ARCHWATCH_DEMO_RECEIVER", receiver.url)
    gateway = Gateway(settings, site, clock=clock)
    start_ns = clock.now_ns()  # readings of earlier runs in this data dir are older
    await gateway.start()
    interactive = sys.stderr.isatty()
    sys.stderr.write(
        f"archwatch demo: site {site.id}, {sum(1 for _ in site.placements())} devices, "
        f"data in {settings.data_dir}, store: "
        f"{'InfluxDB ' + (settings.influx_url or '') if settings.influx_url else 'embedded'}"
        f"{'' if duration else '; Ctrl-C to stop'}\n"
    )

    async def simulate() -> None:
        next_pub = 0.0
        while True:
            now = time.time()
            devices.update_modbus(now)
            if now >= next_pub:
                devices.publish_mqtt(now)
                next_pub = now + PUBLISH_INTERVAL_S
            await asyncio.sleep(SIM_TICK_S)

    async def status_line() -> None:
        last_received, last_t, last_print = 0, time.monotonic(), 0.0
        while True:
            await asyncio.sleep(1.0)
            st = await gateway.status()
            now = time.monotonic()
            rate = (st.readings_received - last_received) / max(now - last_t, 1e-6)
            last_received, last_t = st.readings_received, now
            line = (
                f"[{(clock.now_ns() - start_ns) / 1e9:5.0f}s] {rate:5.1f} readings/s  "
                f"devices {st.devices_online}/{st.devices_total} online  "
                f"spool {st.spool_depth}  stored {st.readings_stored}  "
                f"rejected {st.readings_rejected}"
            )
            if gateway.alerting is not None:
                fired = gateway.alerting.engine.stats().get("alerts_fired", 0)
                sent = int(gateway.metrics.total("notifications_sent"))
                line += f"  alerts {fired}  notified {sent}"
            if interactive:
                sys.stderr.write("\r" + line)
                sys.stderr.flush()
            elif now - last_print >= 5:
                sys.stderr.write(line + "\n")
                last_print = now

    # Devices publish only once the gateway has subscribed: a first-ever session has no
    # queue at the broker yet, so earlier messages would be dropped by design of MQTT.
    await _wait_subscribed(gateway)
    sim_task = asyncio.create_task(simulate())
    status_task = asyncio.create_task(status_line())
    try:
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    except asyncio.CancelledError:
        pass
    finally:
        sim_task.cancel()
        status_task.cancel()
        await asyncio.gather(sim_task, status_task, return_exceptions=True)
        if interactive:
            sys.stderr.write("\n")

    # Let every published message reach the gateway and the spool reach the store.
    final_status = await gateway.status()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_TIMEOUT_S
    while devices.publisher.unacked and loop.time() < deadline:  # noqa: ASYNC110 (paho thread)
        await asyncio.sleep(0.1)
    published_mqtt = devices.publisher.acked_readings
    # Wait for the gateway to take in what the broker acknowledged; give up only when
    # nothing has moved for a few seconds (a loss, which the summary then reports).
    best, last_move = -1, loop.time()
    while loop.time() < deadline:
        mqtt_received = int(gateway.metrics.total("readings_received")) - _modbus_readings_read(
            gateway
        )
        if mqtt_received >= published_mqtt or loop.time() - last_move > 3.0:
            break
        if mqtt_received > best:
            best, last_move = mqtt_received, loop.time()
        await asyncio.sleep(0.1)
    await gateway.stop_collectors()
    await gateway.drain(max(deadline - loop.time(), 1.0))
    published = published_mqtt + _modbus_readings_read(gateway)
    stored = await gateway.store.count(
        ReadingFilter(site=site.id), start_ns, clock.now_ns() + 3_600 * 10**9
    )
    st = await gateway.status()
    rejected = st.readings_rejected
    if gateway.alerting is not None:
        await gateway.alerting.drain(15.0)
    alert_stats = gateway.alerting.engine.stats() if gateway.alerting else {}
    notifications_sent = int(gateway.metrics.total("notifications_sent"))
    await gateway.stop()
    receiver.stop()
    await devices.stop()
    if broker is not None:
        with contextlib.suppress(Exception):
            await broker.shutdown()
    return {
        "site": site.id,
        "seconds": round((clock.now_ns() - start_ns) / 1e9, 1),
        "store": "influxdb" if settings.influx_url else "embedded",
        "data_dir": str(settings.data_dir),
        "readings_published": published,
        "readings_stored": stored,
        "readings_rejected": rejected,
        "readings_lost": max(0, published - rejected - stored),
        "devices_online": final_status.devices_online,
        "devices_total": final_status.devices_total,
        "alerts_fired": alert_stats.get("alerts_fired", 0),
        "notifications_sent": notifications_sent,
        "notifications_received": len(receiver.messages),
    }
