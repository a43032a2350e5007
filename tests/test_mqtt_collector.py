"""The MQTT collector against the real Mosquitto: what reaches the spool, and what the broker
keeps when the gateway dies, restarts or loses its session."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from collectors.mqtt import parse_broker_url
from gateway.clock import ManualClock
from gateway.reading import SensorKind
from tests.mqtt_helpers import (
    JAN1_NS,
    RecordingEvents,
    RecordingSink,
    make_collector,
    plain_device,
    pub,
    running,
    wait_for,
    write_site,
)
from tests.servers import MosquittoServer

pytestmark = pytest.mark.realserver

SECRET = "s3cret-broker-pw"


async def test_plain_and_json_payloads_become_tagged_readings(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str
) -> None:
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: th-1
          protocol: mqtt
          topic: t/{uid}/th-1
          timestamp_path: ts
          sensors:
            - {{id: r1-t, kind: temperature, json_path: temperature}}
            - {{id: r1-h, kind: humidity, json_path: SHT30.Humidity}}
        - id: door-1
          protocol: mqtt
          sensors:
            - {{id: r1-door, kind: door, topic: t/{uid}/door}}
            - {{id: r1-co2, kind: co2, topic: t/{uid}/co2}}
        """,
    )
    clock = ManualClock(start_ns=JAN1_NS + 3_600 * 10**9)
    sink = RecordingSink()
    collector = make_collector(site, mosquitto.url, f"test-{uid}", sink, clock=clock)
    async with running(collector):
        await pub(
            mosquitto.port,
            (
                f"t/{uid}/th-1",
                '{"temperature": 21.5, "SHT30": {"Humidity": 52}, "ts": 1767225600123}',
            ),
            (
                f"t/{uid}/th-1",
                '{"temperature": 21.75, "SHT30": {"Humidity": 51.5},'
                ' "ts": "2026-01-01T08:00:01+08:00"}',
            ),
            (f"t/{uid}/door", "open"),
            (f"t/{uid}/co2", "612"),
        )
        await wait_for(lambda: len(sink.stored) == 6, "six readings")

    by_key = {(r.sensor, r.value): r for r in sink.stored}
    assert by_key[("r1-t", 21.5)].ts_ns == JAN1_NS + 123_000_000  # the device's epoch ms
    assert by_key[("r1-h", 52.0)].ts_ns == JAN1_NS + 123_000_000
    assert by_key[("r1-t", 21.75)].ts_ns == JAN1_NS + 1_000_000_000  # its ISO 8601 time
    assert by_key[("r1-door", 1.0)].ts_ns == clock.now_ns()  # no source time: receive time
    assert by_key[("r1-co2", 612.0)].ts_ns == clock.now_ns()
    door = by_key[("r1-door", 1.0)]
    assert door.tags() == {
        "site": "s1",
        "building": "b1",
        "room": "r1",
        "device": "door-1",
        "sensor": "r1-door",
        "kind": "door",
        "storage_class": "paper",
    }
    assert by_key[("r1-h", 52.0)].kind is SensorKind.HUMIDITY
    status = {s.device: s for s in collector.statuses()}
    assert status["th-1"].online and status["th-1"].polls == 2
    assert status["door-1"].online and status["door-1"].polls == 2
    assert collector.rejected_payloads == 0


@pytest.mark.parametrize(
    ("ack_on_receipt", "redelivered"),
    [
        (False, True),  # acknowledged only after the spool write: the broker sends it again
        (True, False),  # negative control: acknowledged on receipt, the crash loses it
    ],
)
async def test_message_not_yet_spooled_when_the_gateway_dies_is_redelivered(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str, ack_on_receipt: bool, redelivered: bool
) -> None:
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: th-1
          protocol: mqtt
          topic: t/{uid}/th-1
          timestamp_path: ts
          sensors:
            - {{id: r1-t, kind: temperature, json_path: t}}
        """,
    )
    topic = f"t/{uid}/th-1"
    dying = RecordingSink(block=True)
    first = make_collector(site, mosquitto.url, f"test-{uid}", dying, ack_on_receipt=ack_on_receipt)
    async with running(first):
        await pub(mosquitto.port, (topic, '{"t": 20.5, "ts": 1767225600}'))
        await wait_for(lambda: len(dying.seen) == 1, "the spool write to start")
    assert dying.stored == []  # the gateway "died" inside the spool write

    sink = RecordingSink()
    second = make_collector(site, mosquitto.url, f"test-{uid}", sink)
    async with running(second):
        await pub(mosquitto.port, (topic, '{"t": 22.0, "ts": 1767225660}'))
        await wait_for(lambda: 22.0 in sink.values("r1-t"), "the later message")
    assert (20.5 in sink.values("r1-t")) is redelivered
    if redelivered:
        again = next(r for r in sink.stored if r.value == 20.5)
        assert again.key == dying.seen[0].key  # same identity: the store keeps it once


async def test_a_failing_spool_holds_the_message_until_it_recovers(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str
) -> None:
    site = write_site(tmp_path / "site.yaml", plain_device("co2-1", f"t/{uid}/co2"))
    sink = RecordingSink(fail=True)
    collector = make_collector(site, mosquitto.url, f"test-{uid}", sink)
    async with running(collector):
        await pub(mosquitto.port, (f"t/{uid}/co2", "700"))
        await wait_for(lambda: len(sink.seen) >= 1, "a failed spool write")
        sink.fail = False
        await wait_for(lambda: sink.values("r1-co2") == [700.0], "the retried write")


async def test_broker_restart_mid_stream_loses_no_message(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="collectors.mqtt")
    site = write_site(tmp_path / "site.yaml", plain_device("co2-1", f"t/{uid}/co2"))
    topic = f"t/{uid}/co2"
    url = f"mqtt://archwatch:{SECRET}@127.0.0.1:{mosquitto.port}"
    sink = RecordingSink()
    collector = make_collector(site, url, f"test-{uid}", sink)
    async with running(collector):
        await pub(mosquitto.port, *[(topic, str(400 + i)) for i in range(5)])
        await wait_for(lambda: len(sink.stored) == 5, "the first five messages")

        await asyncio.to_thread(mosquitto.stop)
        await wait_for(lambda: not collector.connected, "the collector to notice")
        await asyncio.to_thread(mosquitto.start)
        # Published before the collector is back: the persistent session queues them.
        await pub(mosquitto.port, *[(topic, str(500 + i)) for i in range(5)])
        await wait_for(lambda: collector.connections >= 2, "the reconnection")
        await pub(mosquitto.port, *[(topic, str(600 + i)) for i in range(5)])
        await wait_for(lambda: len(set(sink.values("r1-co2"))) == 15, "all fifteen messages")

    assert sorted(set(sink.values("r1-co2"))) == [
        float(v) for v in [*range(400, 405), *range(500, 505), *range(600, 605)]
    ]
    text = [r.getMessage() for r in caplog.records if r.name == "collectors.mqtt"]
    assert sum("connection to" in t and "lost" in t for t in text) == 1
    assert sum("restored" in t for t in text) == 1
    assert all(SECRET not in t for t in text)
    assert any("archwatch:***@127.0.0.1" in t for t in text)


async def test_resubscribes_on_reconnect_when_the_broker_lost_the_session(
    tmp_path: Path, uid: str
) -> None:
    """A broker restarted without its persistence knows no subscriptions: only subscribing in
    on_connect on every connection brings the messages back."""
    broker = MosquittoServer(tmp_path / "broker")
    broker.start()
    try:
        site = write_site(tmp_path / "site.yaml", plain_device("co2-1", f"t/{uid}/co2"))
        sink = RecordingSink()
        collector = make_collector(site, broker.url, f"test-{uid}", sink)
        async with running(collector):
            await pub(broker.port, (f"t/{uid}/co2", "450"))
            await wait_for(lambda: sink.values("r1-co2") == [450.0], "the first message")

            await asyncio.to_thread(broker.stop)
            for f in (broker.workdir / "persist").iterdir():
                f.unlink()  # the broker forgets every session and subscription
            await asyncio.to_thread(broker.start)
            await wait_for(
                lambda: collector.connections == 2 and collector.connected, "resubscribe"
            )
            await pub(broker.port, (f"t/{uid}/co2", "460"))
            await wait_for(lambda: sink.values("r1-co2") == [450.0, 460.0], "the new message")
    finally:
        broker.stop()


async def test_changed_topics_are_heard_although_the_session_persists(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str
) -> None:
    """telegraf#16038: the same client id with a changed site file must subscribe anew; the
    session's old subscription still delivers, and is ignored (and acknowledged)."""
    old_site = write_site(tmp_path / "old.yaml", plain_device("co2-1", f"t/{uid}/old"))
    new_site = write_site(tmp_path / "new.yaml", plain_device("co2-1", f"t/{uid}/new"))
    async with running(make_collector(old_site, mosquitto.url, f"test-{uid}", RecordingSink())):
        pass
    sink = RecordingSink()
    collector = make_collector(new_site, mosquitto.url, f"test-{uid}", sink)
    async with running(collector):
        await pub(mosquitto.port, (f"t/{uid}/old", "1"), (f"t/{uid}/new", "800"))
        await wait_for(lambda: sink.values("r1-co2") == [800.0], "the new topic")
    assert [r.value for r in sink.stored] == [800.0]
    assert collector.rejected_payloads == 0


async def test_silent_device_goes_offline_once_and_comes_back(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collectors.mqtt")
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: door-1
          name: 101 库门
          protocol: mqtt
          topic: t/{uid}/door
          expected_interval: 0.2
          offline_after: 3
          sensors:
            - {{id: r1-door, kind: door}}
        """,
    )
    clock = ManualClock()
    events = RecordingEvents()
    sink = RecordingSink()
    collector = make_collector(
        site, mosquitto.url, f"test-{uid}", sink, events, clock, check_interval=0.01
    )
    async with running(collector):
        await pub(mosquitto.port, (f"t/{uid}/door", "closed"))
        await wait_for(lambda: collector.statuses()[0].online, "the device to be online")

        clock.advance(0.5)  # within 0.2 s × 3
        await asyncio.sleep(0.2)  # many watchdog rounds
        assert events.events == []

        clock.advance(0.2)  # 0.7 s silent: past the window
        await wait_for(lambda: events.kinds() == ["device_offline"], "the offline event")
        clock.advance(5)
        await asyncio.sleep(0.2)
        assert events.kinds() == ["device_offline"]  # one event per change, not per check
        assert not collector.statuses()[0].online

        await pub(mosquitto.port, (f"t/{uid}/door", "open"))
        await wait_for(lambda: events.kinds() == ["device_offline", "device_online"], "online")

    offline = events.events[0]
    assert offline.tags == {"site": "s1", "building": "b1", "room": "r1", "device": "door-1"}
    assert offline.severity == "warning" and "库门" in offline.title
    assert offline.ts_ns == JAN1_NS + 700_000_000
    offline_logs = [
        r for r in caplog.records if r.name == "collectors.mqtt" and "offline" in r.getMessage()
    ]
    assert len(offline_logs) == 1


async def test_device_never_heard_from_goes_offline(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str
) -> None:
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: leak-1
          protocol: mqtt
          topic: t/{uid}/leak
          expected_interval: 1
          offline_after: 2
          sensors:
            - {{id: r1-leak, kind: water_leak}}
        """,
    )
    clock = ManualClock()
    events = RecordingEvents()
    collector = make_collector(
        site, mosquitto.url, f"test-{uid}", RecordingSink(), events, clock, check_interval=0.01
    )
    async with running(collector):
        clock.advance(2.5)
        await wait_for(lambda: events.kinds() == ["device_offline"], "the offline event")
    assert events.events[0].tags["device"] == "leak-1"


async def test_poison_payload_is_acknowledged_counted_and_logged_once(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="collectors.mqtt")
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: th-1
          protocol: mqtt
          topic: t/{uid}/th-1
          sensors:
            - {{id: r1-t, kind: temperature, json_path: t}}
            - {{id: r1-h, kind: humidity, json_path: h}}
        """,
    )
    topic = f"t/{uid}/th-1"
    sink = RecordingSink()
    collector = make_collector(site, mosquitto.url, f"test-{uid}", sink)
    async with running(collector):
        await pub(
            mosquitto.port,
            (topic, b"\xff\xfe garbage"),
            (topic, b"\xff\xfe garbage"),
            (topic, "not json"),
            (topic, '{"t": 21.0}'),  # h missing: t is still stored
            (topic, '{"t": 21.5, "h": 50}'),
        )
        await wait_for(lambda: 50.0 in sink.values("r1-h"), "the good message")
    assert sink.values("r1-t") == [21.0, 21.5]
    assert collector.rejected_payloads == 4
    assert collector.rejects_by_reason == {"invalid UTF-8": 2, "not JSON": 1, "path missing": 1}
    status = collector.statuses()[0]
    assert status.errors == 4 and status.misses == 0 and status.online
    mine = [r for r in caplog.records if r.name == "collectors.mqtt"]
    warnings = [r.getMessage() for r in mine if r.levelno == logging.WARNING]
    # One line per change of problem (UTF-8 -> JSON -> path), not one per message.
    assert len(warnings) == 3
    assert all(topic in w for w in warnings)
    assert any("decode again" in r.getMessage() for r in mine)

    # Acknowledged: a new instance with the same session gets none of them again.
    sink2 = RecordingSink()
    again = make_collector(site, mosquitto.url, f"test-{uid}", sink2)
    async with running(again):
        await pub(mosquitto.port, (topic, '{"t": 22.0, "h": 51}'))
        await wait_for(lambda: sink2.values("r1-t") == [22.0], "the next message")
    assert again.rejected_payloads == 0
    assert sink2.values("r1-t") == [22.0]


async def test_retained_replay_is_not_a_live_device(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str
) -> None:
    """A retained value replayed on subscribe is old: it must not make a dead device look
    online, nor be stamped with today's time; with a source timestamp it is kept."""
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: plain-1
          protocol: mqtt
          topic: t/{uid}/plain
          sensors:
            - {{id: r1-co2, kind: co2}}
        - id: th-1
          protocol: mqtt
          topic: t/{uid}/th
          timestamp_path: ts
          sensors:
            - {{id: r1-t, kind: temperature, json_path: t}}
        - id: live-1
          protocol: mqtt
          topic: t/{uid}/live
          sensors:
            - {{id: r1-light, kind: light}}
        """,
    )
    retained = [
        (f"t/{uid}/plain", "900", True),
        (f"t/{uid}/th", '{"t": 19.0, "ts": 1767225600}', True),
    ]
    await pub(mosquitto.port, *retained)
    try:
        sink = RecordingSink()
        collector = make_collector(site, mosquitto.url, f"test-{uid}", sink)
        async with running(collector):
            await pub(mosquitto.port, (f"t/{uid}/live", "120"))
            await wait_for(lambda: sink.values("r1-light") == [120.0], "the live message")
        assert sink.values("r1-co2") == []
        assert [(r.value, r.ts_ns) for r in sink.stored if r.sensor == "r1-t"] == [(19.0, JAN1_NS)]
        status = {s.device: s for s in collector.statuses()}
        assert not status["plain-1"].online and status["plain-1"].polls == 0
        assert not status["th-1"].online
        assert status["live-1"].online
    finally:
        await pub(mosquitto.port, *[(t, b"", True) for t, _, _ in retained])


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "user", "password"),
    [
        ("mqtt://broker.local", "broker.local", 1883, False, None, None),
        ("mqtt://10.0.0.5:1884", "10.0.0.5", 1884, False, None, None),
        ("mqtts://gw:p%40ss@broker.local", "broker.local", 8883, True, "gw", "p@ss"),
        ("mqtts://gw:pw@broker.local:8884", "broker.local", 8884, True, "gw", "pw"),
    ],
)
def test_broker_urls(
    url: str, host: str, port: int, tls: bool, user: str | None, password: str | None
) -> None:
    addr = parse_broker_url(url)
    assert (addr.host, addr.port, addr.tls, addr.username, addr.password) == (
        host,
        port,
        tls,
        user,
        password,
    )


@pytest.mark.parametrize(
    "url", [f"http://u:{SECRET}@h", f"tcp://u:{SECRET}@h:1883", f"mqtt://u:{SECRET}@h:99999"]
)
def test_bad_broker_url_is_refused_without_leaking_its_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_broker_url(url)
    assert SECRET not in str(info.value)


def test_malformed_json_path_is_refused_at_start(tmp_path: Path, uid: str) -> None:
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: th-1
          protocol: mqtt
          topic: t/{uid}/th
          sensors:
            - {{id: r1-t, kind: temperature, json_path: "a..b"}}
        """,
    )
    with pytest.raises(ValueError, match="r1-t"):
        make_collector(site, "mqtt://127.0.0.1:1883", "x", RecordingSink())
