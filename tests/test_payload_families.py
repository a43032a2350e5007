"""Payload families (Zigbee2MQTT, ESPHome, Tasmota, Shelly H&T, line protocol): decoding cases
as folders, fuzzing of every decoder, and what the site file accepts for each family.

A decoding case is a folder ``tests/cases_payload/<family>/<case>/`` holding ``payload.*``
(the message as the device sends it), ``target.yaml`` (the sensor: kind, and optionally
json_path, timestamp_path, field, match, timezone) and ``expected.yaml`` (``readings``: value
and source time, ``null`` for the receive time; or ``error``: the PayloadError reason).
A new case is a new folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.payloads import FORMATS, REASONS, PayloadError, Target, get_format
from collectors.payloads.base import timestamp_ns
from collectors.payloads.influx_line import parse_lines
from gateway.configfile import ConfigError
from gateway.reading import SensorKind
from tests.mqtt_helpers import write_site

CASES = Path(__file__).parent / "cases_payload"
FAMILIES = ["zigbee2mqtt", "esphome", "tasmota", "shelly_ht", "influx_line"]


def _case_dirs() -> list[Path]:
    return sorted(p for p in CASES.glob("*/*") if p.is_dir())


def _target(spec: dict[str, Any]) -> Target:
    zone = spec.get("timezone")
    return Target(
        SensorKind(spec["kind"]),
        spec.get("json_path"),
        spec.get("timestamp_path"),
        field=spec.get("field"),
        match=tuple(sorted((spec.get("match") or {}).items())),
        zone=ZoneInfo(zone) if zone else None,
    )


@pytest.mark.parametrize("case", _case_dirs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_decoding_case(case: Path) -> None:
    family = case.parent.name
    (payload_file,) = case.glob("payload.*")
    spec = yaml.safe_load((case / "target.yaml").read_text(encoding="utf-8"))
    expected = yaml.safe_load((case / "expected.yaml").read_text(encoding="utf-8"))
    fmt = get_format(family)
    target = _target(spec)
    payload = payload_file.read_bytes()
    if "error" in expected:
        with pytest.raises(PayloadError) as info:
            fmt.extract_all(fmt.parse(payload), target)
        assert info.value.reason == expected["error"]
        return
    got = fmt.extract_all(fmt.parse(payload), target)
    want = [
        (float(r["value"]), None if r["ts"] is None else timestamp_ns(r["ts"]))
        for r in expected["readings"]
    ]
    assert [d.ts_ns for d in got] == [ts for _, ts in want]
    assert [d.value for d in got] == pytest.approx([v for v, _ in want])


def test_every_family_has_decoding_cases() -> None:
    have = {p.parent.name for p in _case_dirs()}
    assert set(FORMATS) <= have, f"families without cases: {set(FORMATS) - have}"
    for family in FAMILIES:
        errors = [
            p for p in CASES.glob(f"{family}/*") if "error" in (p / "expected.yaml").read_text()
        ]
        assert errors, f"{family} has no refused-payload case"


# -- fuzzing: every decoder gives values or a PayloadError with a known reason ------------

KINDS = st.sampled_from(list(SensorKind))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "temperature",
                    "contact",
                    "last_seen",
                    "Time",
                    "SHT3X",
                    "Temperature",
                    "TempUnit",
                    "StatusSNS",
                    "method",
                    "params",
                    "ts",
                    "temperature:0",
                    "tC",
                    "seq",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)
METHODS = st.sampled_from(["NotifyStatus", "NotifyFullStatus", "NotifyEvent"])
LINE_CHARS = st.sampled_from(list('ab =,\\"\n#0123456789.-eitTfF'))
ZONES = st.sampled_from([None, ZoneInfo("Asia/Shanghai"), ZoneInfo("Europe/Berlin")])


def _target_strategy() -> st.SearchStrategy[Target]:
    return st.builds(
        Target,
        KINDS,
        st.sampled_from([None, "temperature", "SHT3X.Temperature", "a.0", "contact"]),
        st.sampled_from([None, "ts", "Time", "last_seen"]),
        field=st.sampled_from([None, "temperature", "a", "b"]),
        match=st.sampled_from([(), (("a", "b"),), (("_measurement", "a"),)]),
        zone=ZONES,
    )


def _only_payload_errors(family: str, payload: bytes, target: Target) -> None:
    fmt = get_format(family)
    try:
        got = fmt.extract_all(fmt.parse(payload), target)
    except PayloadError as exc:
        assert exc.reason in REASONS
        return
    for d in got:  # nothing but finite floats and positive times is ever handed on
        assert isinstance(d.value, float)
        assert d.value == d.value and abs(d.value) != float("inf")
        assert d.ts_ns is None or (isinstance(d.ts_ns, int) and d.ts_ns > 0)
        assert isinstance(d.raw, str) and len(d.raw) <= 80


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(FORMATS)), st.binary(max_size=200), _target_strategy())
def test_fuzz_bytes_to_every_decoder(family: str, payload: bytes, target: Target) -> None:
    _only_payload_errors(family, payload, target)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(FORMATS)), JSON_VALUES, _target_strategy())
def test_fuzz_json_to_every_decoder(family: str, doc: object, target: Target) -> None:
    _only_payload_errors(family, json.dumps(doc).encode(), target)


@settings(max_examples=300, deadline=None)
@given(METHODS, JSON_VALUES, JSON_VALUES, _target_strategy())
def test_fuzz_shelly_notifications(
    method: str, component: object, ts: object, target: Target
) -> None:
    doc = {"method": method, "params": {"ts": ts, "temperature:0": component}}
    _only_payload_errors("shelly_ht", json.dumps(doc).encode(), target)


@settings(max_examples=500, deadline=None)
@given(st.text(LINE_CHARS, max_size=80), _target_strategy())
def test_fuzz_line_protocol(text: str, target: Target) -> None:
    _only_payload_errors("influx_line", text.encode(), target)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text("abc ,=\\", min_size=1, max_size=5),
        st.text("xyz ,=\\", min_size=1, max_size=5),
        max_size=3,
    ),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_fuzz_escaped_line_protocol_round_trips(tags: dict[str, str], value: float) -> None:
    """Tags with the characters the protocol escapes are read back as they were written."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")

    if any(k.endswith("\\") or v.endswith("\\") for k, v in tags.items()):
        return  # a trailing backslash is not escapable in line protocol
    line = "m" + "".join(f",{esc(k)}={esc(v)}" for k, v in tags.items()) + f" t={value!r}"
    (parsed,) = parse_lines(line)
    assert parsed.tags == tags
    assert parsed.fields == {"t": value}


# -- the ESPHome availability topic ------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        (b"online", True),
        (b"offline", False),
        (b"Offline\n", False),
        (b"maybe", None),
        (b"\xff", None),
    ],
)
def test_esphome_availability_words(payload: bytes, state: bool | None) -> None:
    assert get_format("esphome").availability(payload) is state


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        (b'{"state":"online"}', True),
        (b'{"state":"offline"}', False),
        (b"offline", False),  # legacy availability payload
        (b'{"state":1}', None),
        (b"[]", None),
        (b"\xff", None),
    ],
)
def test_zigbee2mqtt_availability(payload: bytes, state: bool | None) -> None:
    assert get_format("zigbee2mqtt").availability(payload) is state


@pytest.mark.parametrize(
    ("family", "topic"),
    [
        ("esphome", "node-1/status"),
        ("zigbee2mqtt", "node-1/availability"),
        ("tasmota", None),
        ("json", None),
    ],
)
def test_availability_topics(family: str, topic: str | None) -> None:
    assert get_format(family).availability_topic("node-1") == topic


# -- the site file: format per device ----------------------------------------------------


def test_a_zigbee2mqtt_device_needs_no_json_paths(tmp_path: Path) -> None:
    site = write_site(
        tmp_path / "site.yaml",
        """
        - id: z-1
          protocol: mqtt
          format: zigbee2mqtt
          topic: zigbee2mqtt/101 温湿度
          sensors:
            - {id: r1-t, kind: temperature}
            - {id: r1-h, kind: humidity}
            - {id: r1-bat, kind: battery}
        """,
    )
    assert [r.sensor for r in site.device_sensors("z-1")] == ["r1-t", "r1-h", "r1-bat"]


@pytest.mark.parametrize(
    ("device", "problem"),
    [
        ({"format": "zigbee9000", "topic": "z/a"}, "unknown payload format 'zigbee9000'"),
        ({"format": "json", "topic": "z/a"}, "json format needs a json_path"),
        ({"format": "shelly_ht", "topic": "shellies/ht-1"}, "Shelly H&T has no door"),
        (
            {"format": "esphome", "topic": "node-1", "sequence_path": "seq"},
            "sequence_path needs a JSON",
        ),
        ({"format": "tasmota", "topic": "tele/t1/SENSOR"}, "no default key for door"),
    ],
)
def test_a_sensor_the_family_cannot_read_is_refused_at_load(
    tmp_path: Path, device: dict[str, str], problem: str
) -> None:
    fields = "".join(f"\n  {k}: {v}" for k, v in device.items())
    with pytest.raises(ConfigError) as info:
        write_site(
            tmp_path / "site.yaml",
            f"- id: d-1\n  protocol: mqtt{fields}\n  sensors: [{{id: x, kind: door}}]",
        )
    assert problem in str(info.value)


@pytest.mark.parametrize("key", ["field: temp", "match: {room: '101'}"])
def test_field_and_match_are_for_line_protocol_only(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match="is for the influx_line format"):
        write_site(
            tmp_path / "site.yaml",
            "- id: z-1\n  protocol: mqtt\n  format: zigbee2mqtt\n  topic: z/a\n"
            f"  sensors: [{{id: x, kind: temperature, {key}}}]",
        )


def test_two_sensors_reading_the_same_field_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="read the same topic"):
        write_site(
            tmp_path / "site.yaml",
            """
            - id: z-1
              protocol: mqtt
              format: zigbee2mqtt
              topic: zigbee2mqtt/th
              sensors:
                - {id: r1-t, kind: temperature}
                - {id: r1-t2, kind: temperature}
            """,
        )


def test_line_protocol_sensors_differ_by_tag_match(tmp_path: Path) -> None:
    site = write_site(
        tmp_path / "site.yaml",
        """
        - id: tg-1
          protocol: mqtt
          format: influx_line
          topic: telegraf/node1/climate
          sensors:
            - {id: r1-t, kind: temperature, match: {room: "101"}}
            - {id: r2-t, kind: temperature, match: {room: "102"}}
            - {id: r1-door, kind: door, field: state, match: {room: "101"}}
        """,
    )
    assert len(site.device_sensors("tg-1")) == 3


@pytest.mark.parametrize(
    ("family", "topic", "own", "kind", "topics"),
    [
        ("esphome", "node-1", False, "temperature", ["node-1/sensor/temperature/state"]),
        ("esphome", "node-1", False, "door", ["node-1/binary_sensor/door/state"]),
        ("esphome", "n/binary_sensor/x/state", True, "door", ["n/binary_sensor/x/state"]),
        (
            "shelly_ht",
            "shellies/shellyht-A1",
            False,
            "humidity",
            ["shellies/shellyht-A1/sensor/humidity", "shellies/shellyht-A1/events/rpc"],
        ),
        ("zigbee2mqtt", "zigbee2mqtt/th", False, "humidity", ["zigbee2mqtt/th"]),
        ("tasmota", "tele/t1/SENSOR", False, "humidity", ["tele/t1/SENSOR"]),
    ],
)
def test_where_each_family_listens(
    family: str, topic: str, own: bool, kind: str, topics: list[str]
) -> None:
    assert get_format(family).topics(topic, own, SensorKind(kind)) == topics
