"""The gateway killed with SIGKILL mid-stream and restarted: nothing lost, and no line sent
twice in the write requests, not even the batch InfluxDB was accepting as the process died
(the restarted forwarder asks InfluxDB which readings of a batch left in flight it already
holds, and sends only the rest). It is killed twice per run, at one of two kinds of point:
in a flowing stream, or the instant the recording proxy has seen InfluxDB accept a write
(its answer on the way to the process, or the spool not yet told). A negative control that
acknowledges MQTT messages on receipt must show the loss, or this test could not see one;
tests/test_forwarder_reconcile_crash.py has the control that shows a blind re-send, and
kill points chosen inside the forwarder.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.simulation import MqttPublisher
from tests.e2e import mqtt_values, write_site
from tests.recording_proxy import RecordingProxy
from tests.servers import REPO, InfluxServer, MosquittoServer

MESSAGES = 2400
# The gateway is killed twice, each time in the flowing stream after the running process
# wrote to InfluxDB: one kill can fall between two spool commits and see nothing to lose.
KILL_AFTER = (700, 1500)
# Messages published after the gateway's first write and before the kill: waiting for that
# write pauses the stream and lets the gateway catch up, so the kill must fall back into a
# flowing stream (messages received, not yet spooled) or the negative control sees no loss.
KILL_BURST = 200
HOUR_NS = 3_600 * 10**9
SPOOL_DELAY_S = 0.2


@dataclass
class Outcome:
    published_readings: int
    stored: int
    proxy: RecordingProxy
    # When the second process was started: every write the proxy received before then came
    # from the first one. (Not the instant of the SIGKILL: a request the dying process had
    # already sent can be read by the proxy's thread a little after it.)
    respawned_at: float


def _count(influx: InfluxServer) -> int:
    results = influx.query("SELECT count(value) FROM readings")["results"]
    assert isinstance(results, list)
    series = results[0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def _wrote_since(proxy: RecordingProxy, since: float) -> bool:
    return any(w.received_at > since for w in proxy.writes)


def _persistent_session(port: int, client_id: str, topic: str) -> None:
    """Create the gateway's broker session before it first runs, as a deployed site has."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    subscribed = threading.Event()
    c.on_subscribe = lambda *_args: subscribed.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    info = c.subscribe(topic, qos=1)
    assert info[0] == mqtt.MQTT_ERR_SUCCESS
    assert subscribed.wait(60), "no SUBACK for the gateway's session"
    c.disconnect()
    c.loop_stop()


async def _scenario(
    tmp_path: Path,
    mosquitto: MosquittoServer,
    influx: InfluxServer,
    *,
    ack_on_receipt: bool,
    kill_on_write: bool = False,
) -> Outcome:
    variant = "ackreceipt" if ack_on_receipt else "ackspooled"
    if kill_on_write:
        variant += "-onwrite"
    prefix = f"crash/{variant}"
    site_path = tmp_path / "site.yaml"
    write_site(site_path, modbus_ports=[], mqtt_devices=2, topic_prefix=prefix)
    client_id = f"crash-gw-{variant}"
    _persistent_session(mosquitto.port, client_id, f"{prefix}/#")
    proxy = RecordingProxy(influx.url).start()
    env = {
        **os.environ,
        "ARCHWATCH_INFLUX_URL": proxy.url,
        "ARCHWATCH_BROKER_URL": mosquitto.url,
        "ARCHWATCH_MQTT_CLIENT_ID": client_id,
        "ARCHWATCH_BATCH_SIZE": "100",
    }
    # The same slow spool commit for both runs widens the window a crash can fall into.
    cmd = [
        sys.executable,
        "-m",
        "tests.gateway_proc",
        str(site_path),
        "--data-dir",
        str(tmp_path / "data"),
        "--spool-delay",
        str(SPOOL_DELAY_S),
    ]
    if ack_on_receipt:
        cmd.append("--ack-on-receipt")

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, cwd=REPO, env=env)

    proc = spawn()
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, client_id=f"crash-pub-{variant}")
    publisher.start()
    start_ns = (time.time_ns() - HOUR_NS) // 10**9 * 10**9
    respawned_at = 0.0
    kill_at = -1
    writes_at_kill_at = -1
    kills = 0
    try:
        for k in range(MESSAGES):
            t, h = mqtt_values(k)
            publisher.publish(
                f"{prefix}/mq-{k % 2}",
                {"temperature": t, "humidity": h, "ts": (start_ns + k * 10**9) // 10**6},
                readings=2,
            )
            await asyncio.sleep(0.003)
            if k in KILL_AFTER:
                # Wait for a write of the running process (after the last restart, if any).
                deadline = time.monotonic() + 60
                while not _wrote_since(proxy, respawned_at) and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert _wrote_since(proxy, respawned_at), "the gateway never wrote before the kill"
                kill_at = k + KILL_BURST
            if k == kill_at:
                writes_at_kill_at = len(proxy.writes)
            # In the flowing stream, or (kill_on_write) as soon as InfluxDB accepted a write
            # after that point: the proxy records a write once InfluxDB answered it.
            if (
                kill_at >= 0
                and k >= kill_at
                and (not kill_on_write or len(proxy.writes) > writes_at_kill_at)
            ):
                kill_at = -1
                kills += 1
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                await asyncio.sleep(0.5)
                respawned_at = time.monotonic()
                proc = spawn()
        assert kills == len(KILL_AFTER), "the stream ended before a kill point"
        deadline = time.monotonic() + 60
        while publisher.unacked and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert publisher.unacked == 0
        # Wait until everything is stored, or (negative control only) until nothing moves for
        # 5 s. The run that must lose nothing waits the whole limit: a restarted gateway on a
        # loaded machine may pause longer than 5 s without having lost anything.
        last, last_change = -1, time.monotonic()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            n = _count(influx)
            if n >= MESSAGES * 2:
                break
            if n != last:
                last, last_change = n, time.monotonic()
            elif ack_on_receipt and time.monotonic() - last_change > 5:
                break
            await asyncio.sleep(0.2)
    finally:
        publisher.stop()
        proc.terminate()
        proc.wait(timeout=30)
        proxy.stop()
    return Outcome(publisher.acked_readings, _count(influx), proxy, respawned_at)


@pytest.mark.parametrize(
    "kill_on_write",
    [pytest.param(False, id="in-the-stream"), pytest.param(True, id="as-influxdb-accepts")],
)
async def test_sigkill_mid_batch_loses_nothing_and_sends_no_line_twice(
    tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer, kill_on_write: bool
) -> None:
    out = await _scenario(
        tmp_path, mosquitto, influx, ack_on_receipt=False, kill_on_write=kill_on_write
    )
    assert out.published_readings == MESSAGES * 2
    assert out.stored == MESSAGES * 2, f"lost {MESSAGES * 2 - out.stored} readings"
    # InfluxDB overwrites duplicates silently, so count what was sent: every line of every
    # write request the proxy passed on, whatever InfluxDB answered.
    sent = collections.Counter(line for w in out.proxy.writes for line in w.lines)
    assert len(sent) == MESSAGES * 2
    twice = {line for line, n in sent.items() if n > 1}
    before = sum(1 for w in out.proxy.writes if w.received_at < out.respawned_at)
    holders = [i for i, w in enumerate(out.proxy.writes) if twice & set(w.lines)]
    assert not twice, (
        f"{len(twice)} readings sent twice, in requests {holders} "
        f"of {len(out.proxy.writes)} ({before} before the restart)"
    )
    assert all(w.status == 204 for w in out.proxy.writes)


async def test_negative_control_ack_on_receipt_shows_the_loss(
    tmp_path: Path, mosquitto: MosquittoServer, influx: InfluxServer
) -> None:
    out = await _scenario(tmp_path, mosquitto, influx, ack_on_receipt=True)
    assert out.published_readings == MESSAGES * 2
    assert out.stored < MESSAGES * 2, "acknowledging on receipt lost nothing: the test is blind"
