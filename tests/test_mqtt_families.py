"""Payload families and sequence gaps end to end: real-looking device messages published to the
real Mosquitto, through MqttCollector, to the readings and events archwatch keeps."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from tests.mqtt_helpers import (
    JAN1_NS,
    RecordingEvents,
    RecordingSink,
    by_sensor,
    make_collector,
    pub,
    running,
    wait_for,
    write_site,
)
from tests.servers import MosquittoServer

pytestmark = pytest.mark.realserver


async def test_zigbee2mqtt_devices(mosquitto: MosquittoServer, tmp_path: Path, uid: str) -> None:
    th_topic = f"zigbee2mqtt/{uid} 101 温湿度"
    door_topic = f"zigbee2mqtt/{uid}-101-door"
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: z-th
          protocol: mqtt
          format: zigbee2mqtt
          topic: {th_topic}
          sensors:
            - {{id: r1-t, kind: temperature}}
            - {{id: r1-h, kind: humidity}}
            - {{id: r1-bat, kind: battery}}
        - id: z-door
          protocol: mqtt
          format: zigbee2mqtt
          topic: {door_topic}
          sensors:
            - {{id: r1-door, kind: door}}
        """,
    )
    clock = ManualClock(start_ns=JAN1_NS + 3_600 * 10**9)
    sink = RecordingSink()
    collector = make_collector(site, mosquitto.url, f"test-{uid}", sink, clock=clock)
    async with running(collector):
        await pub(
            mosquitto.port,
            (
                th_topic,
                json.dumps(
                    {
                        "battery": 97,
                        "humidity": 55.1,
                        "last_seen": "2026-01-01T08:00:00+08:00",
                        "linkquality": 120,
                        "pressure": 1013.2,
                        "temperature": 21.4,
                        "voltage": 3005,
                    }
                ),
            ),
            (door_topic, '{"battery":91,"contact":true,"linkquality":87,"voltage":3025}'),
            (door_topic, '{"battery":91,"contact":false,"linkquality":84,"voltage":3025}'),
        )
        await wait_for(lambda: len(sink.stored) == 5, "five readings")
    got = by_sensor(sink)
    assert got["r1-t"] == [(21.4, JAN1_NS)]  # last_seen is the source time
    assert got["r1-h"] == [(55.1, JAN1_NS)]
    assert got["r1-bat"] == [(97.0, JAN1_NS)]
    # contact true = reed closed = door shut (0); false = open (1); no last_seen: receive time
    assert got["r1-door"] == [(0.0, clock.now_ns()), (1.0, clock.now_ns())]
    assert collector.rejected_payloads == 0


async def test_tasmota_sensor_telemetry(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str
) -> None:
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: tas-1
          protocol: mqtt
          format: tasmota
          topic: tele/{uid}-th/SENSOR
          sensors:
            - {{id: r1-t, kind: temperature}}
            - {{id: r1-h, kind: humidity}}
        - id: tas-2
          protocol: mqtt
          format: tasmota
          topic: tele/{uid}-probes/SENSOR
          sensors:
            - {{id: r1-t-low, kind: temperature, json_path: DS18B20-1.Temperature}}
            - {{id: r1-t-high, kind: temperature, json_path: DS18B20-2.Temperature}}
        """,
    )
    sink = RecordingSink()
    collector = make_collector(site, mosquitto.url, f"test-{uid}", sink)
    async with running(collector):
        await pub(
            mosquitto.port,
            (
                f"tele/{uid}-th/SENSOR",
                '{"Time":"2026-01-01T08:00:00","SHT3X":{"Temperature":21.4,"Humidity":55.1,'
                '"DewPoint":12.0},"TempUnit":"C"}',
            ),
            (
                f"tele/{uid}-probes/SENSOR",
                '{"Time":"2026-01-01T08:01:00","DS18B20-1":{"Id":"01144A0CB2AA",'
                '"Temperature":64.4},"DS18B20-2":{"Id":"0316A1B2C3FF","Temperature":68.0},'
                '"TempUnit":"F"}',
            ),
        )
        await wait_for(lambda: len(sink.stored) == 4, "four readings")
    got = by_sensor(sink)
    # Time is local (the site's Asia/Shanghai, UTC+8): 08:00 there is 00:00 UTC.
    assert got["r1-t"] == [(21.4, JAN1_NS)]
    assert got["r1-h"] == [(55.1, JAN1_NS)]
    assert got["r1-t-low"] == [(18.0, JAN1_NS + 60 * 10**9)]  # 64.4 °F
    assert got["r1-t-high"] == [(20.0, JAN1_NS + 60 * 10**9)]  # 68.0 °F


async def test_esphome_node_states_and_last_will(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str
) -> None:
    node = f"archive-node-{uid}"
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: esp-1
          name: 101 环境节点
          protocol: mqtt
          format: esphome
          topic: {node}
          sensors:
            - {{id: r1-t, kind: temperature}}
            - {{id: r1-door, kind: door, topic: {node}/binary_sensor/door_101/state}}
        """,
    )
    events = RecordingEvents()
    sink = RecordingSink()
    collector = make_collector(site, mosquitto.url, f"test-{uid}", sink, events)
    async with running(collector):
        await pub(
            mosquitto.port,
            (f"{node}/status", "online"),
            (f"{node}/sensor/temperature/state", "21.4"),
            (f"{node}/binary_sensor/door_101/state", "ON"),
            (f"{node}/sensor/temperature/state", "nan"),
        )
        await wait_for(lambda: len(sink.stored) == 2, "two readings")
        await wait_for(lambda: collector.rejected_payloads == 1, "nan refused")
        await pub(mosquitto.port, (f"{node}/status", "offline"))  # the node's last will
        await wait_for(lambda: events.kinds() == ["device_offline"], "the offline event")
        await pub(mosquitto.port, (f"{node}/sensor/temperature/state", "21.6"))
        await wait_for(lambda: events.kinds() == ["device_offline", "device_online"], "online")
    assert by_sensor(sink)["r1-door"][0][0] == 1.0
    assert [v for v, _ in by_sensor(sink)["r1-t"]] == [21.4, 21.6]
    assert f"esphome reports the device offline ({node}/status)" in events.events[0].text
    assert collector.rejects_by_reason["not a number"] == 1


async def test_shelly_ht_both_generations_and_line_protocol(
    mosquitto: MosquittoServer, tmp_path: Path, uid: str
) -> None:
    site = write_site(
        tmp_path / "site.yaml",
        f"""
        - id: ht-gen1
          protocol: mqtt
          format: shelly_ht
          topic: shellies/shellyht-{uid}
          sensors:
            - {{id: g1-t, kind: temperature}}
            - {{id: g1-bat, kind: battery}}
        - id: ht-plus
          protocol: mqtt
          format: shelly_ht
          topic: shellyplusht-{uid}
          sensors:
            - {{id: g2-t, kind: temperature}}
            - {{id: g2-h, kind: humidity}}
        - id: tg-1
          protocol: mqtt
          format: influx_line
          topic: telegraf/{uid}/climate
          sensors:
            - {{id: r2-t, kind: temperature, match: {{room: "102"}}}}
        """,
    )
    sink = RecordingSink()
    collector = make_collector(site, mosquitto.url, f"test-{uid}", sink)
    status = {
        "src": f"shellyplusht-{uid}",
        "dst": f"shellyplusht-{uid}/events",
        "method": "NotifyStatus",
        "params": {"ts": 1767225600.25, "humidity:0": {"id": 0, "rh": 56.2}},
    }
    async with running(collector):
        await pub(
            mosquitto.port,
            (f"shellies/shellyht-{uid}/sensor/temperature", "21.38"),
            (f"shellies/shellyht-{uid}/sensor/battery", "87"),
            (f"shellyplusht-{uid}/events/rpc", json.dumps(status)),
            (
                f"telegraf/{uid}/climate",
                "climate,room=101 temperature=25 1767225600000000000\n"
                "climate,room=102 temperature=19.5 1767225600000000000\n",
            ),
        )
        await wait_for(lambda: len(sink.stored) == 4, "four readings")
    got = by_sensor(sink)
    assert [v for v, _ in got["g1-t"]] == [21.38]
    assert [v for v, _ in got["g1-bat"]] == [87.0]
    assert got["g2-h"] == [(56.2, JAN1_NS + 250_000_000)]
    assert "g2-t" not in got  # that NotifyStatus did not carry the temperature: no error
    assert got["r2-t"] == [(19.5, JAN1_NS)]
    assert collector.rejected_payloads == 0


async def test_broker_dropping_queued_messages_is_a_sequence_gap(
    tmp_path: Path, uid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The gateway is away; the broker keeps only 3 queued messages per client and drops the
    rest. When the gateway is back, the device's counter jumps: one gap event says how many
    messages are gone."""
    caplog.set_level(logging.INFO, logger="collectors.mqtt")
    broker = MosquittoServer(tmp_path / "broker", extra_config="max_queued_messages 3\n")
    broker.start()
    topic = f"t/{uid}/th"
    try:
        site = write_site(
            tmp_path / "site.yaml",
            f"""
            - id: th-1
              name: 101 温湿度
              protocol: mqtt
              topic: {topic}
              sequence_path: seq
              sensors:
                - {{id: r1-t, kind: temperature, json_path: t}}
            """,
        )

        def msg(n: int) -> tuple[str, str]:
            return (topic, json.dumps({"seq": n, "t": 20 + n / 100}))

        def seen() -> set[int]:
            return {round((v - 20) * 100) for v in sink.values("r1-t")}

        events = RecordingEvents()
        sink = RecordingSink()
        collector = make_collector(site, broker.url, f"test-{uid}", sink, events)
        async with running(collector):
            await pub(broker.port, *[msg(n) for n in range(1, 11)])
            await wait_for(lambda: seen() == set(range(1, 11)), "messages 1..10")
        # The gateway is away (its session stays on the broker): 11..20 pile up.
        await pub(broker.port, *[msg(n) for n in range(11, 21)])
        async with running(collector):
            await pub(broker.port, *[msg(n) for n in range(21, 26)])
            await wait_for(lambda: set(range(21, 26)) <= seen(), "messages 21..25")
            await wait_for(lambda: "sequence_gap" in events.kinds(), "the gap event")
            await asyncio.sleep(0.2)  # any late, wrong second event would show now

        lost = set(range(1, 26)) - seen()
        assert lost, "the broker was meant to drop queued messages"
        assert lost == set(range(min(lost), 21))  # the newest queued ones went
        assert events.kinds() == ["sequence_gap"]
        gap = events.events[0]
        assert f"{len(lost)} messages missed" in gap.text
        assert f"from {min(lost) - 1} to 21" in gap.text
        assert gap.tags == {"site": "s1", "building": "b1", "room": "r1", "device": "th-1"}
        assert gap.severity == "warning" and "温湿度" in gap.title
        logs = [r for r in caplog.records if "messages missed" in r.getMessage()]
        assert len(logs) == 1
    finally:
        broker.stop()
