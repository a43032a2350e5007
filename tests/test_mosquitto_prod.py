"""The production Mosquitto configuration (deploy/mosquitto/), run by a real Mosquitto:
logins, per-device ACL, the TLS listener, and the gateway reading through it."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.app import Gateway
from gateway.reading import SensorKind
from gateway.settings import Settings
from gateway.store.base import ReadingFilter
from tests.e2e import wait_for, write_site
from tests.fixtures_mosquitto import GATEWAY_USER, SecureMosquitto
from tests.servers import ServerStartError

TIMEOUT = 30.0


class Client:
    """A paho client run from a test: connects, records the CONNACK and what it receives."""

    def __init__(self, client_id: str) -> None:
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.connack: ReasonCode | None = None
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.granted: list[ReasonCode] = []
        self.subscribed = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.paho.on_connect = self._on_connect
        self.paho.on_subscribe = self._on_subscribe
        self.paho.on_message = self._on_message

    def _on_connect(
        self, client: mqtt.Client, ud: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        self.connack = rc
        self.answered.set()
        if not rc.is_failure:
            self.connected.set()

    def _on_subscribe(
        self, client: mqtt.Client, ud: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        self.granted = rcs
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, ud: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def received(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)


@contextmanager
def connect(
    port: int,
    client_id: str,
    user: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
) -> Iterator[Client]:
    """A client connected (or refused: see ``connack``) to 127.0.0.1:port."""
    c = Client(client_id)
    if user is not None:
        c.paho.username_pw_set(user, password)
    if ca_file is not None:
        c.paho.tls_set(ca_certs=str(ca_file))
    c.paho.connect("127.0.0.1", port, keepalive=30)
    c.paho.loop_start()
    try:
        assert c.answered.wait(TIMEOUT), "no CONNACK"
        yield c
    finally:
        c.paho.disconnect()
        c.paho.loop_stop()


def _subscribe_all(c: Client) -> None:
    c.paho.subscribe("#", qos=1)
    assert c.subscribed.wait(TIMEOUT)


def _wait_until(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(
    ("user", "password"),
    [
        pytest.param(None, None, id="anonymous"),
        pytest.param(GATEWAY_USER, "not-the-password", id="wrong-password"),
        pytest.param("dev-unknown", "whatever", id="unknown-user"),
    ],
)
def test_clients_without_valid_credentials_are_refused(
    secure_mosquitto: SecureMosquitto, user: str | None, password: str | None
) -> None:
    with connect(secure_mosquitto.port, "refused-client", user, password) as c:
        assert c.connack is not None and c.connack.is_failure
        assert not c.connected.is_set()


def test_a_device_publishes_only_on_its_own_topic_and_the_gateway_reads_all(
    secure_mosquitto: SecureMosquitto,
) -> None:
    s = secure_mosquitto
    with (
        connect(s.port, "acl-gateway", GATEWAY_USER, s.gateway_password) as gw,
        connect(s.port, "acl-dev-a", "dev-a", s.password_of("dev-a")) as a,
        connect(s.port, "acl-dev-b", "dev-b", s.password_of("dev-b")) as b,
    ):
        assert gw.connected.is_set() and a.connected.is_set() and b.connected.is_set()
        _subscribe_all(gw)
        assert [rc.value for rc in gw.granted] == [1]  # '#' granted at QoS 1
        own_a, own_b = "archwatch/s1/b1/r1/dev-a", "archwatch/s1/b1/r1/dev-b"
        # dev-a first tries dev-b's topic, then its own; the broker handles one client's
        # messages in order, so once the second is delivered the first would have been.
        a.paho.publish(own_b, b"forged by dev-a", qos=1).wait_for_publish(TIMEOUT)
        a.paho.publish(own_a, b"from dev-a", qos=1).wait_for_publish(TIMEOUT)
        b.paho.publish(own_b, b"from dev-b", qos=1).wait_for_publish(TIMEOUT)
        b.paho.publish("tele/dev-b/SENSOR", b"tasmota dev-b", qos=1).wait_for_publish(TIMEOUT)
        _wait_until(lambda: len(gw.received()) >= 3, "the devices' own messages")
        time.sleep(0.2)  # a late forged message would show now
        got = sorted(gw.received())
    assert got == [
        (own_a, b"from dev-a"),
        (own_b, b"from dev-b"),
        ("tele/dev-b/SENSOR", b"tasmota dev-b"),
    ]


def test_a_device_cannot_read_other_devices(secure_mosquitto: SecureMosquitto) -> None:
    s = secure_mosquitto
    with (
        connect(s.port, "acl-spy", "dev-a", s.password_of("dev-a")) as spy,
        connect(s.port, "acl-dev-b2", "dev-b", s.password_of("dev-b")) as b,
    ):
        _subscribe_all(spy)
        b.paho.publish("archwatch/s1/b1/r1/dev-b", b"private", qos=1).wait_for_publish(TIMEOUT)
        # Positive control: its own ESPHome-style tree is readable to it.
        spy.paho.publish("dev-a/status", b"own", qos=1).wait_for_publish(TIMEOUT)
        _wait_until(lambda: len(spy.received()) >= 1, "its own message")
        time.sleep(0.2)
        assert spy.received() == [("dev-a/status", b"own")]


def test_the_tls_listener_accepts_a_client_trusting_the_site_ca(
    secure_mosquitto: SecureMosquitto,
) -> None:
    s = secure_mosquitto
    with (
        connect(s.port, "tls-gateway", GATEWAY_USER, s.gateway_password) as gw,
        connect(s.tls_port, "tls-dev", "dev-a", s.password_of("dev-a"), s.ca_file) as dev,
    ):
        assert dev.connected.is_set()
        _subscribe_all(gw)
        dev.paho.publish("archwatch/s1/b1/r1/dev-a", b"over tls", qos=1).wait_for_publish(TIMEOUT)
        _wait_until(lambda: gw.received(), "the TLS client's message")
    assert gw.received() == [("archwatch/s1/b1/r1/dev-a", b"over tls")]


def test_the_tls_listener_is_refused_by_a_client_without_the_site_ca(
    secure_mosquitto: SecureMosquitto,
) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="tls-untrusting")
    c.tls_set()  # the system's CAs only: the site's private CA is not among them
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect("127.0.0.1", secure_mosquitto.tls_port, keepalive=30)


async def test_the_gateway_stores_a_devices_readings_and_not_a_forgery(
    tmp_path: Path, secure_mosquitto: SecureMosquitto
) -> None:
    s = secure_mosquitto
    site = write_site(
        tmp_path / "site.yaml", modbus_ports=[], mqtt_devices=1, topic_prefix="archwatch/e2e/b1/r2"
    )
    topic = "archwatch/e2e/b1/r2/mq-0"  # the ACL's layout, ending in the device's id
    gateway = Gateway(
        Settings(data_dir=tmp_path / "data", broker_url=s.url(), mqtt_client_id="prod-gateway"),
        site,
    )
    await gateway.start()
    ts_ns = (time.time_ns() - 60 * 10**9) // 10**9 * 10**9
    try:
        await wait_for(lambda: _connected(gateway), timeout=TIMEOUT, what="gateway subscribed")
        forged = {"temperature": 30.0, "humidity": 90.0, "ts": ts_ns // 10**6 - 1000}
        real = {"temperature": 18.5, "humidity": 45.0, "ts": ts_ns // 10**6}
        # dev-a may not speak for mq-0; mq-0 itself may. In this order on one connection
        # each, so when the real one is stored the forged one would have been too.
        with connect(s.port, "prod-dev-a", "dev-a", s.password_of("dev-a")) as a:
            a.paho.publish(topic, json.dumps(forged), qos=1).wait_for_publish(TIMEOUT)
        with connect(s.port, "prod-mq-0", "mq-0", s.password_of("mq-0")) as dev:
            dev.paho.publish(topic, json.dumps(real), qos=1).wait_for_publish(TIMEOUT)
        window = (ts_ns - 10 * 10**9, ts_ns + 10 * 10**9)
        await wait_for(
            lambda: _count_at_least(gateway, window, 2), timeout=TIMEOUT, what="the reading"
        )
        await asyncio.sleep(0.3)
        stored = await gateway.store.raw(ReadingFilter(device="mq-0"), *window)
    finally:
        await gateway.stop()
    assert sorted((r.kind, r.value, r.ts_ns) for r in stored) == [
        (SensorKind.HUMIDITY, 45.0, ts_ns),
        (SensorKind.TEMPERATURE, 18.5, ts_ns),
    ]


async def _connected(gateway: Gateway) -> bool:
    return all(getattr(c, "connected", True) for c in gateway.collectors)


async def _count_at_least(gateway: Gateway, window: tuple[int, int], n: int) -> bool:
    return await gateway.store.count(ReadingFilter(device="mq-0"), *window) >= n


@pytest.mark.parametrize("login", ["tele", "stat", "shellies", "archwatch", GATEWAY_USER])
def test_a_device_login_that_could_forge_other_devices_cannot_be_provisioned(
    tmp_path: Path, login: str
) -> None:
    """The audit's case: a device logging in as 'tele' could publish tele/dev-b/SENSOR under
    the ACL's '%u/#' (and one logging in as the gateway would replace its password). The
    production entry point refuses to make such a login, so Mosquitto never starts with one."""
    with pytest.raises(ServerStartError, match=f"MQTT device id '{login}' is reserved"):
        SecureMosquitto(tmp_path / "broker", devices=("dev-b", login))
    assert not (tmp_path / "broker" / "run" / "passwd").exists()
