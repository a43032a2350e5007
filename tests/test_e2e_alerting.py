"""Alerting end to end on the real Mosquitto: a smoke detector's MQTT message through the
production Gateway (pipeline, rules, engine, outbox, delivery worker) to a loopback
``json://`` receiver; the receiver down and failing over; the gateway killed with SIGKILL
between firing and delivery; and ``archwatch demo``.

Checks are on what the receiver got (messages, their order and counts), never on elapsed
time. Where a test asserts that nothing *more* arrives, it lets the gateway run a few more
engine ticks and worker polls first (``SETTLE_S``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerting.dispatch import DispatchConfig
from alerting.outbox import OutboxMessage
from gateway.app import Gateway
from gateway.settings import Settings
from gateway.simulation import MqttPublisher
from gateway.site import load_site
from tests.e2e import wait_for
from tests.receiver import RecordingServer
from tests.servers import REPO, MosquittoServer

ROOM = "三号档案库"
CONTACT = "王保管员"
# A short group wait: smoke is announced right away instead of after the production 10 s.
DISPATCH = DispatchConfig(group_wait_s=0.2)
SETTLE_S = 3.0  # three engine ticks and more worker polls: long enough for a duplicate


@dataclass
class SiteFiles:
    """A written site (site, rules and contacts files) with one MQTT smoke detector."""

    site: Path
    topic: str
    client_id: str


def write_alerting_site(
    folder: Path,
    urls: list[str],
    *,
    attempts_per_url: int = 3,
    backoff_s: float = 0.2,
) -> SiteFiles:
    """One room with an MQTT smoke detector, the ``smoke`` rule (resolved 1 s after smoke
    clears) and one contact whose ``urls`` are tried in order, backoff fixed at ``backoff_s``."""
    tag = uuid.uuid4().hex[:8]
    topic = f"e2e-alert/{tag}/smoke-1"
    rules = [{"id": "smoke", "kind": "smoke", "description": "烟感报警", "keep_firing_for": "1s"}]
    contacts = {
        "language": "zh",
        "delivery": {
            "attempts_per_url": attempts_per_url,
            "backoff_initial_s": backoff_s,
            "backoff_factor": 1,
            "backoff_max_s": backoff_s,
        },
        "contacts": [{"id": "keeper", "name": CONTACT, "urls": urls}],
    }
    site = {
        "site": {"id": "e2e-alert", "name": "测试档案馆", "timezone": "Asia/Shanghai"},
        "rules": "rules.yaml",
        "contacts": "contacts.yaml",
        "buildings": [
            {
                "id": "b1",
                "name": "一号楼",
                "rooms": [
                    {
                        "id": "r3",
                        "name": ROOM,
                        "storage_class": "paper",
                        "devices": [
                            {
                                "id": "smoke-1",
                                "name": "三号库烟感",
                                "protocol": "mqtt",
                                "topic": topic,
                                "expected_interval": 86_400,
                                "sensors": [
                                    {
                                        "id": "r3-smoke",
                                        "name": "三号库烟感",
                                        "kind": "smoke",
                                        "json_path": "smoke",
                                    }
                                ],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, doc in [("rules.yaml", rules), ("contacts.yaml", contacts), ("site.yaml", site)]:
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        (folder / name).write_text(text, encoding="utf-8")
    return SiteFiles(folder / "site.yaml", topic, f"e2e-alert-gw-{tag}")


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    server = RecordingServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def publisher(mosquitto: MosquittoServer) -> Iterator[MqttPublisher]:
    pub = MqttPublisher("127.0.0.1", mosquitto.port, client_id=f"e2e-alert-pub-{uuid.uuid4().hex}")
    pub.start()
    yield pub
    pub.stop()


def assert_firing_message(message: dict[str, Any]) -> None:
    assert ROOM in message["title"] and "紧急" in message["title"] and "告警" in message["title"]
    assert f"{ROOM}（r3）：" in message["message"] and "检测到烟雾" in message["message"]
    assert re.search(r"自 \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} 起", message["message"])


# --- in process: the production Gateway --------------------------------------------------


async def start_gateway(tmp_path: Path, files: SiteFiles, mosquitto: MosquittoServer) -> Gateway:
    settings = Settings(
        data_dir=tmp_path / "data", broker_url=mosquitto.url, mqtt_client_id=files.client_id
    )
    gateway = Gateway(settings, load_site(files.site), dispatch=DISPATCH)
    await gateway.start()

    async def subscribed() -> bool:
        return all(getattr(c, "connected", True) for c in gateway.collectors)

    await wait_for(subscribed, timeout=60, what="MQTT subscription")
    return gateway


async def outbox_rows(gateway: Gateway) -> list[OutboxMessage]:
    assert gateway.alerting is not None
    return await asyncio.to_thread(gateway.alerting.outbox.all)


async def test_smoke_reaches_the_receiver_once_and_its_resolution_once(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    receiver: RecordingServer,
    publisher: MqttPublisher,
) -> None:
    files = write_alerting_site(tmp_path / "site", [receiver.url("/keeper")])
    gateway = await start_gateway(tmp_path, files, mosquitto)
    try:
        # The detector keeps reporting smoke: still one alert, one message.
        for _ in range(3):
            publisher.publish(files.topic, {"smoke": 1}, readings=1)

        async def told() -> bool:
            return len(receiver.requests) >= 1

        await wait_for(told, timeout=60, what="the smoke notification")
        publisher.publish(files.topic, {"smoke": 0}, readings=1)

        async def resolved() -> bool:
            return len(receiver.requests) >= 2

        await wait_for(resolved, timeout=60, what="the resolution notice")
        await asyncio.sleep(SETTLE_S)
        rows = await outbox_rows(gateway)
    finally:
        await gateway.stop()
    assert receiver.paths() == ["/keeper", "/keeper"]
    firing, resolution = receiver.payloads()
    assert_firing_message(firing)
    assert ROOM in resolution["title"] and "已恢复" in resolution["title"]
    assert "已于" in resolution["message"] and "恢复" in resolution["message"]
    assert [(r.kind, r.status) for r in rows] == [
        ("firing", "delivered"),
        ("resolved", "delivered"),
    ]


async def test_receiver_down_then_back_gets_the_message(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    receiver: RecordingServer,
    publisher: MqttPublisher,
) -> None:
    port = receiver.port
    receiver.stop()  # connection refused
    files = write_alerting_site(
        tmp_path / "site", [f"json://127.0.0.1:{port}/keeper"], attempts_per_url=100
    )
    gateway = await start_gateway(tmp_path, files, mosquitto)
    try:
        publisher.publish(files.topic, {"smoke": 1}, readings=1)

        async def failed_twice() -> bool:
            rows = await outbox_rows(gateway)
            return bool(rows) and rows[0].attempts_total >= 2

        await wait_for(failed_twice, timeout=60, what="two refused attempts")
        receiver.port = port
        receiver.start()

        async def delivered() -> bool:
            return [r.status for r in await outbox_rows(gateway)] == ["delivered"]

        await wait_for(delivered, timeout=60, what="delivery after the receiver returned")
        await asyncio.sleep(SETTLE_S)
        (row,) = await outbox_rows(gateway)
    finally:
        await gateway.stop()
    assert receiver.paths() == ["/keeper"]
    assert_firing_message(receiver.payloads()[0])
    assert row.attempts_total >= 3 and row.url_index == 0


async def test_failover_to_the_second_url_after_the_configured_attempts(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    receiver: RecordingServer,
    publisher: MqttPublisher,
) -> None:
    receiver.statuses["/first"] = [503]
    files = write_alerting_site(
        tmp_path / "site",
        [receiver.url("/first"), receiver.url("/second")],
        attempts_per_url=2,
    )
    gateway = await start_gateway(tmp_path, files, mosquitto)
    try:
        publisher.publish(files.topic, {"smoke": 1}, readings=1)

        async def delivered() -> bool:
            return [r.status for r in await outbox_rows(gateway)] == ["delivered"]

        await wait_for(delivered, timeout=60, what="delivery through the second URL")
        await asyncio.sleep(SETTLE_S)
        (row,) = await outbox_rows(gateway)
    finally:
        await gateway.stop()
    assert receiver.paths() == ["/first", "/first", "/second"]
    assert_firing_message(receiver.payloads()[2])
    assert row.url_index == 1 and row.attempts_total == 3


# --- a gateway process killed with SIGKILL -----------------------------------------------


def query(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the gateway's state database as it is on disk ([] before it exists)."""
    path = data_dir / "state.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            return list(conn.execute(sql))
    except sqlite3.OperationalError:  # not migrated yet
        return []


class GatewayProcess:
    """``tests.gateway_proc`` for one site file and data directory."""

    def __init__(self, files: SiteFiles, data_dir: Path, mosquitto: MosquittoServer) -> None:
        self.files = files
        self.data_dir = data_dir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ARCHWATCH_")},
            "ARCHWATCH_BROKER_URL": mosquitto.url,
            "ARCHWATCH_MQTT_CLIENT_ID": files.client_id,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        cmd = [
            sys.executable,
            "-m",
            "tests.gateway_proc",
            str(self.files.site),
            "--data-dir",
            str(self.data_dir),
            "--group-wait",
            str(DISPATCH.group_wait_s),
            *extra,
        ]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env)
        return self.proc

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


async def smoke_until(
    publisher: MqttPublisher, topic: str, condition: Callable[[], bool], what: str
) -> None:
    """Report smoke every half second until ``condition()``: the first reports may come
    before the gateway's first subscription, which the broker does not keep for it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        publisher.publish(topic, {"smoke": 1}, readings=1)
        await asyncio.sleep(0.5)


OUTBOX = "SELECT kind, status, attempts_total FROM outbox"
NFLOG_BATCHES = "SELECT kind, enqueued FROM alert_nflog_batches"


@pytest.mark.parametrize("kill_at", ["before-delivery", "before-outbox", "after-outbox"])
async def test_sigkill_between_firing_and_delivery_delivers_exactly_once(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    receiver: RecordingServer,
    publisher: MqttPublisher,
    kill_at: str,
) -> None:
    """before-delivery: the outbox row exists, delivery failed (receiver refusing) when the
    process dies. before-outbox / after-outbox: the process kills itself (SIGKILL) inside the
    outbox commit of the firing batch, just before or just after it, which is after the
    batch was written to the notification log and before it was marked handed over."""
    port = receiver.port
    if kill_at == "before-delivery":
        receiver.stop()
    files = write_alerting_site(
        tmp_path / "site", [f"json://127.0.0.1:{port}/keeper"], attempts_per_url=100
    )
    data_dir = tmp_path / "data"
    gw = GatewayProcess(files, data_dir, mosquitto)
    try:
        if kill_at == "before-delivery":
            gw.spawn()
            # The delivery worker may try the new row before the dispatcher has marked the
            # batch handed over (the next statement): wait for both, not only the attempt.
            await smoke_until(
                publisher,
                files.topic,
                lambda: (
                    any(n >= 1 for _, _, n in query(data_dir, OUTBOX))
                    and query(data_dir, NFLOG_BATCHES) == [("firing", 1)]
                ),
                "a refused delivery attempt",
            )
            gw.kill()
            assert [(k, s) for k, s, _ in query(data_dir, OUTBOX)] == [("firing", "pending")]
            assert query(data_dir, NFLOG_BATCHES) == [("firing", 1)]
            receiver.port = port
            receiver.start()
        else:
            proc = gw.spawn("--kill-at", kill_at)
            await smoke_until(
                publisher, files.topic, lambda: proc.poll() is not None, "the planned SIGKILL"
            )
            assert proc.returncode == -signal.SIGKILL
            expected = [] if kill_at == "before-outbox" else [("firing", "pending", 0)]
            assert query(data_dir, OUTBOX) == expected
            # Written to the notification log, not marked handed over: the restart hands the
            # same batch (same id) to the outbox again.
            assert query(data_dir, NFLOG_BATCHES) == [("firing", 0)]
        assert receiver.paths() == []
        assert query(data_dir, "SELECT state FROM alerts") == [("firing",)]

        gw.spawn()
        await wait_for(_true(lambda: len(receiver.requests) >= 1), timeout=90, what="delivery")
        await wait_for(
            _true(lambda: [s for _, s, _ in query(data_dir, OUTBOX)] == ["delivered"]),
            timeout=60,
            what="the outbox row marked delivered",
        )
        await asyncio.sleep(SETTLE_S)
    finally:
        gw.stop()
    assert receiver.paths() == ["/keeper"]
    assert_firing_message(receiver.payloads()[0])
    assert query(data_dir, NFLOG_BATCHES) == [("firing", 1)]
    assert query(data_dir, "SELECT state FROM alerts") == [("firing",)]


def _true(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """``condition`` as the coroutine function ``wait_for`` polls."""

    async def check() -> bool:
        return condition()

    return check


# --- archwatch demo ------------------------------------------------------------------------


def test_demo_fires_and_notifies_with_a_chinese_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHWATCH_")}
    # The installed console script, as a user runs it (the one of this interpreter).
    script = Path(sys.executable).with_name("archwatch")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]
    done = subprocess.run(
        [*command, "demo", "--for", "90"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["alerts_fired"] >= 1
    assert summary["notifications_sent"] >= 1
    assert summary["readings_lost"] == 0
    log = tmp_path / "archwatch-data" / "notifications.jsonl"
    received = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    humidity = [
        m
        for m in received
        if "101 纸质档案库" in m["title"] and "45–60 %RH" in m.get("message", "")
    ]
    assert humidity, received
    text = humidity[0]["message"]
    assert re.search(r"当前值 \d+(\.\d)?", text)
    assert re.search(r"自 \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} 起", text)
