"""Decoding Modbus registers: the trap values, round trips, and the case folders.

The expected words in the tables are written out by hand (not produced by ``encode_point``),
so a mistake shared by encoder and decoder cannot make a test pass.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.modbus_decode import decode_point, decode_raw, encode_point, encode_raw
from collectors.modbus_plan import plan_reads
from collectors.modbus_profile import (
    LEGALITY,
    RAW_RANGES,
    ByteOrder,
    DataType,
    DeviceProfile,
    Point,
    ProfileLibrary,
    RegisterType,
)
from gateway.configfile import ConfigError, load_model

CASES_DIR = Path(__file__).parent / "cases"


def point(data_type: str, byte_order: str | None = None, **kw: Any) -> Point:
    register_type = kw.pop("register_type", "holding")
    return Point(
        kind=kw.pop("kind", "temperature"),
        register_type=register_type,
        address=kw.pop("address", 0),
        data_type=data_type,
        byte_order=byte_order,
        **kw,
    )


# (point, words as read, value, raw as shown to the keeper, fault)
TRAPS: list[tuple[str, Point, list[int], float, str, bool]] = [
    ("float32 20.5 ABCD", point("float32", "ABCD"), [0x41A4, 0x0000], 20.5, "0x41A4 0x0000", False),
    ("float32 20.5 CDAB", point("float32", "CDAB"), [0x0000, 0x41A4], 20.5, "0x0000 0x41A4", False),
    ("float32 20.5 BADC", point("float32", "BADC"), [0xA441, 0x0000], 20.5, "0xA441 0x0000", False),
    ("float32 20.5 DCBA", point("float32", "DCBA"), [0x0000, 0xA441], 20.5, "0x0000 0xA441", False),
    # 123.456 = 0x42F6E979: four distinct bytes, so every mix-up of the orders shows.
    ("float32 ABCD", point("float32", "ABCD"), [0x42F6, 0xE979], 123.456, "0x42F6 0xE979", False),
    ("float32 CDAB", point("float32", "CDAB"), [0xE979, 0x42F6], 123.456, "0xE979 0x42F6", False),
    ("float32 BADC", point("float32", "BADC"), [0xF642, 0x79E9], 123.456, "0xF642 0x79E9", False),
    ("float32 DCBA", point("float32", "DCBA"), [0x79E9, 0xF642], 123.456, "0x79E9 0xF642", False),
    ("int16 -12.3", point("int16", "AB", scale=0.1), [0xFF85], -12.3, "0xFF85", False),
    ("int16 -12.3 BA", point("int16", "BA", scale=0.1), [0x85FF], -12.3, "0x85FF", False),
    ("uint16 65.5 %RH", point("uint16", "AB", scale=0.1), [655], 65.5, "0x028F", False),
    ("uint16 above int16", point("uint16", "AB"), [0xFF85], 65413.0, "0xFF85", False),
    (
        "int16 fault 0x7FFF",
        point("int16", "AB", scale=0.1, fault_codes=[32767, -32768]),
        [0x7FFF],
        3276.7,
        "0x7FFF",
        True,
    ),
    (
        "int16 fault 0x8000 (signed)",
        point("int16", "AB", scale=0.1, fault_codes=[32767, -32768]),
        [0x8000],
        -3276.8,
        "0x8000",
        True,
    ),
    (
        "genuine 0 is not a fault",
        point("int16", "AB", scale=0.1, fault_codes=[32767, -32768]),
        [0x0000],
        0.0,
        "0x0000",
        False,
    ),
    (
        "fault compared before scaling",
        point("int16", "AB", scale=0.1, offset=-40, fault_codes=[400]),
        [0x0190],
        0.0,
        "0x0190",
        True,
    ),
    (
        "scaled value equal to a fault code is genuine",
        point("int16", "AB", scale=0.1, fault_codes=[40]),
        [400],
        40.0,
        "0x0190",
        False,
    ),
    ("int32 ABCD", point("int32", "ABCD"), [0xFFFE, 0x1DC0], -123456.0, "0xFFFE 0x1DC0", False),
    ("int32 CDAB", point("int32", "CDAB"), [0x1DC0, 0xFFFE], -123456.0, "0x1DC0 0xFFFE", False),
    ("uint32 DCBA", point("uint32", "DCBA"), [0x005E, 0xD0B2], 3e9, "0x005E 0xD0B2", False),
    ("uint32 BADC", point("uint32", "BADC"), [0xD0B2, 0x005E], 3e9, "0xD0B2 0x005E", False),
    ("offset", point("int16", "AB", scale=0.01, offset=-40), [6523], 25.23, "0x197B", False),
    (
        "bool bit 1 of a register",
        point("bool", register_type="input", kind="water_leak", bit=1),
        [0b0000_0010],
        1.0,
        "0x0002",
        False,
    ),
    (
        "bool bit 0 inverted (NC door contact open)",
        point("bool", register_type="input", kind="door", bit=0, invert=True),
        [0b0000_0010],
        1.0,
        "0x0002",
        False,
    ),
    ("bool whole register", point("bool", kind="smoke"), [0x0100], 1.0, "0x0100", False),
    ("discrete input", point("bool", register_type="discrete", kind="smoke"), [1], 1.0, "1", False),
    (
        "coil inverted",
        point("bool", register_type="coil", kind="door", invert=True),
        [1],
        0.0,
        "1",
        False,
    ),
]


@pytest.mark.parametrize(
    ("p", "words", "value", "raw", "fault"), [t[1:] for t in TRAPS], ids=[t[0] for t in TRAPS]
)
def test_trap_values(p: Point, words: list[int], value: float, raw: str, fault: bool) -> None:
    decoded = decode_point(p, words)
    assert decoded.value == pytest.approx(value, rel=1e-6)
    assert decoded.raw_hex == raw
    assert decoded.fault is fault


def test_scaling_gives_the_nearest_decimal() -> None:
    # Stored values stay tidy: -123 × 0.1 would be -12.300000000000001.
    assert decode_point(point("int16", "AB", scale=0.1), [0xFF85]).value == -12.3
    assert decode_point(point("uint16", "AB", scale=0.01), [3]).value == 0.03


@pytest.mark.parametrize(
    ("p", "words"),
    [
        (point("int16", "AB"), [1, 2]),
        (point("float32", "ABCD"), [1]),
        (point("int16", "AB"), [0x10000]),
        (point("uint16", "AB"), [-1]),
    ],
    ids=["too many", "too few", "word over 16 bits", "negative word"],
)
def test_malformed_words_are_refused(p: Point, words: list[int]) -> None:
    with pytest.raises(ValueError, match="register"):
        decode_point(p, words)


def test_integer_out_of_range_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="does not fit int16"):
        encode_point(point("int16", "AB", scale=0.1), 4000.0)


# -- hypothesis ---------------------------------------------------------------------------------
# deadline=None: no per-example time limit, which would flake on a loaded CI machine.

_INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}


@st.composite
def legal_points(draw: st.DrawFn) -> Point:
    """Any point the legality table accepts."""
    data_type = draw(st.sampled_from(list(DataType)))
    rule = LEGALITY[data_type]
    register_type = draw(st.sampled_from(sorted(rule.register_types)))
    lo, hi = RAW_RANGES[data_type]
    kw: dict[str, Any] = {
        "register_type": register_type,
        "fault_codes": draw(st.lists(st.integers(lo, hi), max_size=3)),
        "invert": draw(st.booleans()) if data_type is DataType.BOOL else False,
    }
    if data_type is DataType.BOOL:
        if not RegisterType(register_type).is_bit:
            kw["bit"] = draw(st.none() | st.integers(0, 15))
        return point("bool", kind="door", **kw)
    finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
    kw["scale"] = draw(finite.filter(lambda s: s != 0))
    kw["offset"] = draw(finite)
    return point(data_type, draw(st.sampled_from(sorted(rule.orders))), **kw)


@settings(deadline=None)
@given(data=st.data(), p=legal_points())
def test_decode_never_raises_on_any_register_contents(data: st.DataObject, p: Point) -> None:
    if p.register_type.is_bit:
        words: list[int] | list[bool] = [data.draw(st.booleans())]
    else:
        words = data.draw(
            st.lists(st.integers(0, 0xFFFF), min_size=p.register_count, max_size=p.register_count)
        )
    decoded = decode_point(p, words)
    assert isinstance(decoded.value, float)
    assert decoded.words == tuple(int(w) for w in words)


@settings(deadline=None)
@given(data=st.data(), p=legal_points())
def test_raw_round_trips_through_the_declared_order(data: st.DataObject, p: Point) -> None:
    if p.data_type is DataType.BOOL:
        raw: int | float = data.draw(st.integers(0, 1))
    elif p.data_type is DataType.FLOAT32:
        raw = data.draw(st.floats(width=32))
    else:
        lo, hi = _INT_RANGES[p.data_type]
        raw = data.draw(st.integers(lo, hi))
    words = encode_raw(p, raw)
    back = decode_raw(p, words)
    if isinstance(raw, float) and math.isnan(raw):
        assert math.isnan(back)
    else:
        assert back == raw
        assert struct.pack(">d", float(back)) == struct.pack(">d", float(raw))  # even -0.0
    # and the decoded words reproduce what was encoded
    assert list(decode_point(p, words).words) == words


@settings(deadline=None)
@given(
    order=st.sampled_from([ByteOrder.ABCD, ByteOrder.CDAB, ByteOrder.BADC, ByteOrder.DCBA]),
    value=st.floats(width=32, allow_nan=False, allow_infinity=False),
)
def test_float32_values_round_trip_in_every_order(order: ByteOrder, value: float) -> None:
    p = point("float32", order)
    assert decode_point(p, encode_point(p, value)).value == value


@settings(deadline=None)
@given(tenths=st.integers(-400, 850), order=st.sampled_from([ByteOrder.AB, ByteOrder.BA]))
def test_scaled_int16_round_trips(tenths: int, order: ByteOrder) -> None:
    p = point("int16", order, scale=0.1)
    assert decode_point(p, encode_point(p, tenths / 10)).value == tenths / 10


# -- the case folders (tests/cases/<name>/): a new case is a new folder ------------------------


def _load_case_profile(case: Path) -> DeviceProfile:
    path = case / "profile.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and set(data) == {"profile"}:
        return ProfileLibrary.load().get(str(data["profile"]))
    return load_model(path, DeviceProfile)


def load_case(
    case: Path,
) -> tuple[DeviceProfile, dict[RegisterType, dict[int, int]], dict[str, Any]]:
    """A valid case's profile, its registers by type and address, and its expectations."""
    profile = _load_case_profile(case)
    raw_regs = yaml.safe_load((case / "registers.yaml").read_text(encoding="utf-8")) or {}
    registers = {
        RegisterType(t): {int(a): int(v) for a, v in by_addr.items()}
        for t, by_addr in raw_regs.items()
    }
    expected = yaml.safe_load((case / "expected.yaml").read_text(encoding="utf-8"))
    return profile, registers, expected


def check_decoded(expected: dict[str, Any], name: str, value: float, raw: str, fault: bool) -> None:
    """Compare one point with its expectation: a number, or {value, raw, fault}."""
    want = expected[name] if isinstance(expected[name], dict) else {"value": expected[name]}
    assert fault is bool(want.get("fault", False)), f"{name}: fault flag"
    if "value" in want:
        assert value == pytest.approx(float(want["value"]), rel=1e-6), f"{name}: value"
    if "raw" in want:
        assert raw == want["raw"], f"{name}: raw words"


CASES = sorted(p for p in CASES_DIR.iterdir() if p.is_dir())
VALID_CASES = [c for c in CASES if (c / "registers.yaml").exists()]


def test_cases_exist() -> None:
    assert len(CASES) >= 10
    for case in CASES:
        assert (case / "profile.yaml").is_file(), case
        assert (case / "expected.yaml").is_file(), case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Path) -> None:
    expected = yaml.safe_load((case / "expected.yaml").read_text(encoding="utf-8"))
    if "error" in expected:
        with pytest.raises(ConfigError) as exc_info:
            _load_case_profile(case)
        problems = "\n".join(exc_info.value.problems)
        wanted = expected["error"] if isinstance(expected["error"], list) else [expected["error"]]
        for text in wanted:
            assert text in problems
        return
    profile, registers, expected = load_case(case)
    assert set(expected) <= set(profile.points), "expected.yaml names unknown points"
    for request in plan_reads(profile, list(expected)):
        block = registers.get(request.register_type, {})
        words = [block[a] for a in range(request.address, request.end)]
        for name in request.points:
            p = profile.points[name]
            decoded = decode_point(p, request.slice(p, words))
            check_decoded(expected, name, decoded.value, decoded.raw_hex, decoded.fault)
