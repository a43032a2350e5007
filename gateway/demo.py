"""``archwatch demo``: the demo building simulated on loopback, run through the real gateway.

Modbus devices are pymodbus servers on free loopback ports; MQTT devices publish to an
embedded broker (amqtt) unless a broker URL is given; the climate has a day-night cycle
(compressed to ten minutes so a short run shows it), noise, and the first room's HVAC
failing ten seconds in. Everything else (collectors, pipeline, spool, store, state
database) is the production code path, in the data directory the user chose.

The API and the console are served on loopback in the same event loop (uvicorn), as
``archwatch api`` would serve them beside ``archwatch run``. The first demo in a data
directory creates the user ``admin`` with a random password and prints it once to stderr
(never to the JSON summary or a log); later runs keep that account and never print or
reset its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from amqtt.broker import Broker
from sqlalchemy import select

from api.main import create_app
from gateway import audit
from gateway.app import Gateway
from gateway.clock import SystemClock
from gateway.configfile import ConfigError, read_yaml
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
from gateway.statedb import StateDB
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
API_START_TIMEOUT_S = 30.0
ADMIN_USERNAME = "admin"


@dataclass(frozen=True, slots=True)
class DemoAdmin:
    """The outcome of :func:`ensure_admin`. ``password`` is set only when the account was
    created just now: it is printed once and kept nowhere else."""

    created: bool
    message: str
    password: str | None = None


def ensure_admin(db: StateDB, now: datetime) -> DemoAdmin:
    """Create the user ``admin`` with a random password unless an admin exists (blocking)."""
    from api import accounts
    from api.models import Role, UserRow

    with db.session() as session:
        roles = session.execute(select(UserRow.roles)).scalars().all()
    if any(Role.ADMIN.value in (r or []) for r in roles):
        return DemoAdmin(
            created=False,
            message="an admin account already exists in this data directory: kept "
            "(its password is not shown again)",
        )
    password = secrets.token_urlsafe(15)  # 20 characters, 120 bits
    try:
        user = accounts.create_user(
            db, username=ADMIN_USERNAME, password=password, roles=[Role.ADMIN], now=now
        )
    except accounts.UsernameTaken:
        return DemoAdmin(
            created=False,
            message=f"a user named {ADMIN_USERNAME} exists without the admin role: no admin "
            "created (add one with archwatch user add)",
        )
    audit.append(
        db,
        actor="system:demo",
        action="user.create",
        target=f"user:{user.username}",
        detail={"roles": list(user.roles), "buildings": []},
    )
    return DemoAdmin(
        created=True,
        message=f"created user {user.username} with password {password} "
        "(shown once: it is stored only as a hash)",
        password=password,
    )


def bind_api_socket(port: int | None) -> socket.socket:
    """A loopback socket for the demo's API: ``port``, or a free one (bound here, so no other
    program can take it between choosing and serving)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port or 0))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            "--api-port", [f"--api-port: cannot listen on 127.0.0.1:{port}: {exc.strerror}"]
        ) from None
    return sock


class DemoApiServer(uvicorn.Server):
    """uvicorn without its own signal handlers: Ctrl-C stays the demo's, which stops the
    API, drains the gateway and prints the summary."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start_api(
    settings: Settings, site: Site, sock: socket.socket
) -> tuple[DemoApiServer, asyncio.Task[None]]:
    """Serve the API and the console for ``site`` on ``sock``; return once it accepts."""
    app = create_app(settings, site=site)
    # No access log: acknowledgement paths carry tokens.
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = DemoApiServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="demo-api")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + API_START_TIMEOUT_S
    while not server.started:
        if task.done() or loop.time() > deadline:
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await task
            raise RuntimeError("the demo's API did not start")
        await asyncio.sleep(0.05)
    return server, task


async def stop_api(server: DemoApiServer, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await task


async def start_broker(port: int) -> Broker:
    """An embedded MQTT broker on loopback (amqtt), for a demo with nothing installed."""
    # amqtt logs an ERROR for every connection closed before CONNECT, which is what the
    # API's /readyz broker check does: noise in a demo, where the broker is ours.
    logging.getLogger("amqtt.broker").setLevel(logging.CRITICAL)
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
    settings: Settings,
    *,
    site_file: Path | None = None,
    duration: float | None = None,
    api_port: int | None = None,
) -> dict[str, Any]:
    """Run the demo; return the summary printed as the last line of JSON."""
    clock = SystemClock()
    api_sock = bind_api_socket(api_port)
    api_url = f"http://127.0.0.1:{api_sock.getsockname()[1]}"
    if settings.public_url == Settings.model_fields["public_url"].default:
        # Acknowledgement links in the demo's notifications open the demo's own API.
        settings = settings.model_copy(update={"public_url": api_url})
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
    api: tuple[DemoApiServer, asyncio.Task[None]] | None = None
    gateway_started = False
    # Whatever fails from here on (the API not starting, a store error while draining, an
    # interrupt), the API server, the gateway, the receiver, the simulated devices and the
    # broker are stopped before the error leaves: a failed demo leaves nothing running.
    try:
        await gateway.start()
        gateway_started = True
        interactive = sys.stderr.isatty()
        sys.stderr.write(
            f"archwatch demo: site {site.id}, {sum(1 for _ in site.placements())} devices, "
            f"data in {settings.data_dir}, store: "
            f"{'InfluxDB ' + (settings.influx_url or '') if settings.influx_url else 'embedded'}"
            f"{'' if duration else '; Ctrl-C to stop'}\n"
        )
        admin = await asyncio.to_thread(ensure_admin, gateway.statedb, datetime.now(UTC))
        api = await start_api(settings, site, api_sock)
        # Printed once, to the terminal only: the password is in no log and not in the summary.
        sys.stderr.write(
            f"archwatch demo: console on {api_url}/console and API on {api_url}/api/v1/\n"
            f"archwatch demo: {admin.message}\n"
        )
        sys.stderr.flush()

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
    finally:
        if api is not None:
            await stop_api(*api)
        if gateway_started:
            await gateway.stop()
        else:
            # A start that failed half way: release what it opened without hiding its error.
            with contextlib.suppress(Exception):
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
        "api_url": api_url,
        "admin_created": admin.created,
    }
