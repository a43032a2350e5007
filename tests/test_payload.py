"""MQTT payload formats: what a device sends -> the value and time archwatch stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.payloads import (
    FORMATS,
    Decoded,
    PayloadError,
    PayloadFormat,
    Target,
    format_for,
    get_format,
    register_format,
)
from collectors.payloads.base import parse_path
from collectors.payloads.jsondoc import JsonFormat
from gateway.reading import SensorKind

T = SensorKind.TEMPERATURE
DOOR = SensorKind.DOOR
SMOKE = SensorKind.SMOKE
LEAK = SensorKind.WATER_LEAK
JAN1_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z


def number(payload: bytes, kind: SensorKind = T) -> Decoded:
    return get_format("number").decode(payload, Target(kind))


def jsonv(payload: object, path: str, kind: SensorKind = T, ts_path: str | None = None) -> Decoded:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return get_format("json").decode(body, Target(kind, path, ts_path))


@pytest.mark.parametrize(
    ("payload", "kind", "value"),
    [
        (b"21.5", T, 21.5),
        (b"-3", T, -3.0),
        (b" 22 \n", T, 22.0),
        (b"1e3", SensorKind.LIGHT, 1000.0),
        (b".5", T, 0.5),
        (b"1", DOOR, 1.0),
        (b"0", SMOKE, 0.0),
        (b"true", SMOKE, 1.0),
        (b"FALSE", SMOKE, 0.0),
        (b"ON", LEAK, 1.0),
        (b"off", LEAK, 0.0),
        (b"open", DOOR, 1.0),
        (b"Closed", DOOR, 0.0),
    ],
)
def test_number_payloads(payload: bytes, kind: SensorKind, value: float) -> None:
    got = number(payload, kind)
    assert got.value == value
    assert got.ts_ns is None  # a plain number carries no time: the receive time is used


@pytest.mark.parametrize(
    ("payload", "kind", "reason"),
    [
        (b"", T, "not a number"),
        (b"abc", T, "not a number"),
        (b"ON", T, "not a number"),  # words only mean something for binary kinds
        (b"nan", T, "not a number"),
        (b"inf", T, "not a number"),
        (b"1e999", T, "not a number"),
        (b"1_000", T, "not a number"),
        (b"\xd9\xa1\xd9\xa2", T, "not a number"),  # Arabic-Indic digits: not a plain number
        (b'{"t": 1}', T, "not a number"),
        (b"\xff\xfe", T, "invalid UTF-8"),
    ],
)
def test_number_payloads_refused(payload: bytes, kind: SensorKind, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        number(payload, kind)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("doc", "path", "kind", "value"),
    [
        ({"temperature": 21.5}, "temperature", T, 21.5),
        ({"SHT30": {"Temperature": 19.25, "Humidity": 48}}, "SHT30.Temperature", T, 19.25),
        ({"sensors": [{"v": 1}, {"v": 2}]}, "sensors.1.v", T, 2.0),
        ({"sensors": [{"v": 1}, {"v": 2}]}, "sensors[1].v", T, 2.0),
        ({"m": [[5, 6], [7, 8]]}, "m[1][0]", T, 7.0),
        ({"0": {"t": 4}}, "0.t", T, 4.0),  # a numeric key of an object is still a key
        ([{"t": 3}], "0.t", T, 3.0),
        ({"contact": True}, "contact", DOOR, 1.0),
        ({"water_leak": False}, "water_leak", LEAK, 0.0),
        ({"t": "22.5"}, "t", T, 22.5),  # some firmwares send numbers as strings
        ({"state": "ON"}, "state", SMOKE, 1.0),
        ({"t": 20}, "t", T, 20.0),
    ],
)
def test_json_values(doc: object, path: str, kind: SensorKind, value: float) -> None:
    got = jsonv(doc, path, kind)
    assert got.value == value
    assert got.ts_ns is None


@pytest.mark.parametrize(
    ("payload", "path", "reason"),
    [
        (b"\xc3\x28", "t", "invalid UTF-8"),
        (b"21.5", "t", "not a JSON object"),
        (b'"hello"', "t", "not a JSON object"),
        (b"{t: 1}", "t", "not JSON"),
        (b"", "t", "not JSON"),
        (b"[" * 100_000, "t", "not JSON"),
        (b'{"t": 1' + b"0" * 5000 + b"}", "t", "not JSON"),  # beyond Python's int digit limit
        (b'{"t": 21.5}', "h", "path missing"),
        (b'{"a": {"b": 1}}', "a.c", "path missing"),
        (b'{"a": [1, 2]}', "a.5", "path missing"),
        (b'{"a": {"0": 1}}', "a[0]", "path missing"),  # [n] indexes lists only
        (b'{"t": null}', "t", "not a number"),
        (b'{"t": {"v": 1}}', "t", "not a number"),
        (b'{"t": "warm"}', "t", "not a number"),
        (b'{"t": NaN}', "t", "not a number"),
        (b'{"t": Infinity}', "t", "not a number"),
        (b'{"t": 1e400}', "t", "not a number"),
        (b'{"t": ' + b"9" * 400 + b"}", "t", "not a number"),
    ],
)
def test_json_payloads_refused(payload: bytes, path: str, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        jsonv(payload, path)
    assert info.value.reason == reason
    assert str(info.value).startswith(reason)


@pytest.mark.parametrize(
    ("stamp", "ts_ns"),
    [
        (1_767_225_600, JAN1_NS),  # epoch seconds
        (1_767_225_600.25, JAN1_NS + 250_000_000),
        ("1767225600.123", JAN1_NS + 123_000_000),
        (1_767_225_600_123, JAN1_NS + 123_000_000),  # epoch milliseconds
        (99_999_999_999, 99_999_999_999 * 10**9),  # just below 1e11: still seconds
        (100_000_000_000, 100_000_000_000 * 10**6),  # 1e11: milliseconds (1973-03-03)
        ("2026-01-01T00:00:00Z", JAN1_NS),
        ("2026-01-01T08:00:00+08:00", JAN1_NS),
        ("2026-01-01T08:00:00.5+08:00", JAN1_NS + 500_000_000),
        (None, None),  # null: the receive time is used
    ],
)
def test_source_timestamps(stamp: object, ts_ns: int | None) -> None:
    got = jsonv({"t": 21.0, "ts": stamp}, "t", ts_path="ts")
    assert got.ts_ns == ts_ns
    assert got.value == 21.0


def test_payload_without_its_timestamp_gets_the_receive_time() -> None:
    assert jsonv({"t": 21.0}, "t", ts_path="meta.ts").ts_ns is None


@pytest.mark.parametrize(
    "stamp",
    [
        "2026-01-01T08:00:00",  # no offset: ambiguous
        "yesterday",
        True,
        [1],
        0,
        -5,
        2e-196,  # positive, but below one nanosecond after the epoch
        10**14,  # microseconds or nanoseconds: not guessed
        "1969-12-31T00:00:00Z",
    ],
)
def test_bad_timestamps_are_refused(stamp: object) -> None:
    with pytest.raises(PayloadError) as info:
        jsonv({"t": 21.0, "ts": stamp}, "t", ts_path="ts")
    assert info.value.reason == "bad timestamp"


def test_raw_value_is_kept_for_probes_and_rejects() -> None:
    assert jsonv({"t": 21.5}, "t").raw == "21.5"
    assert number(b" 21.5 ").raw == "21.5"
    long = jsonv({"t": "0" * 200 + "21.5"}, "t")
    assert long.value == 21.5
    assert len(long.raw) <= 80


@pytest.mark.parametrize(
    ("json_path", "name"), [(None, "number"), ("", "number"), ("temperature", "json")]
)
def test_format_is_chosen_by_json_path(json_path: str | None, name: str) -> None:
    assert format_for(json_path).name == name


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("temperature", ("temperature",)),
        ("SHT30.Temperature", ("SHT30", "Temperature")),
        ("a.0.b", ("a", "0", "b")),
        ("a[0].b", ("a", 0, "b")),
        ("a[0][2]", ("a", 0, 2)),
    ],
)
def test_path_syntax(path: str, steps: tuple[str | int, ...]) -> None:
    assert parse_path(path) == steps


@pytest.mark.parametrize("path", ["", "a..b", ".a", "a.", "a[x]", "a[-1]", "a]b"])
def test_malformed_paths_are_config_errors(path: str) -> None:
    with pytest.raises(ValueError, match="malformed JSON path"):
        parse_path(path)


def test_a_new_family_is_a_small_class() -> None:
    """Adding a device family (Zigbee2MQTT, Tasmota, ...) is one subclass and a decorator."""

    class Tasmota(JsonFormat):
        name = "test-tasmota"

        def extract(self, parsed: object, target: Target) -> Decoded:
            assert isinstance(parsed, dict)
            return super().extract(parsed.get("StatusSNS", parsed), target)

    try:
        register_format(Tasmota)
        fmt = get_format("test-tasmota")
        assert isinstance(fmt, PayloadFormat)
        got = fmt.decode(
            b'{"StatusSNS": {"SHT30": {"Temperature": 18.5}}}', Target(T, "SHT30.Temperature")
        )
        assert got.value == 18.5
        with pytest.raises(RuntimeError, match="registered twice"):
            register_format(Tasmota)
    finally:
        FORMATS.pop("test-tasmota", None)


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="json"):
        get_format("zigbee9000")


KINDS = st.sampled_from(list(SensorKind))
PATHS = st.sampled_from(["t", "a.b", "a.0", "a[1].b", "SHT30.Temperature", "0"])
TS_PATHS = st.sampled_from([None, "ts", "a.ts", "a[0]"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["t", "a", "b", "ts", "0"]), inner, max_size=4)
    ),
    max_leaves=20,
)


def _only_payload_errors(fmt: str, payload: bytes, target: Target) -> None:
    try:
        got = get_format(fmt).decode(payload, target)
    except PayloadError as exc:
        assert exc.reason in {
            "invalid UTF-8",
            "not JSON",
            "not a JSON object",
            "path missing",
            "not a number",
            "bad timestamp",
        }
        return
    assert isinstance(got.value, float)
    assert got.value == got.value and abs(got.value) != float("inf")
    assert got.ts_ns is None or got.ts_ns > 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["number", "json"]), KINDS, PATHS, TS_PATHS)
def test_fuzz_arbitrary_bytes_give_a_value_or_a_payload_error(
    payload: bytes, fmt: str, kind: SensorKind, path: str, ts_path: str | None
) -> None:
    _only_payload_errors(fmt, payload, Target(kind, path, ts_path))


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, KINDS, PATHS, TS_PATHS)
def test_fuzz_arbitrary_json_gives_a_value_or_a_payload_error(
    doc: object, kind: SensorKind, path: str, ts_path: str | None
) -> None:
    payload = json.dumps(doc).encode()  # NaN/Infinity included: json.dumps writes them
    _only_payload_errors("json", payload, Target(kind, path, ts_path))


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1974, 1, 1), max_value=datetime(2999, 1, 1), timezones=st.just(UTC)
    )
)
def test_fuzz_iso_and_epoch_forms_agree(when: datetime) -> None:
    """Epoch ms are read as ms for any date from 1974 (below 1e11 ms they would be seconds)."""
    when = when.replace(microsecond=(when.microsecond // 1000) * 1000)
    iso = jsonv({"t": 1, "ts": when.isoformat()}, "t", ts_path="ts").ts_ns
    ms = jsonv({"t": 1, "ts": round(when.timestamp() * 1000)}, "t", ts_path="ts").ts_ns
    assert iso == ms
