"""Device profiles: every shipped YAML loads, and the legality table refuses what cannot be right.

A keeper who writes a wrong profile must be told which file, line and field; a profile is
never repaired silently (a guessed byte order gives plausible-looking nonsense).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from collectors.modbus_plan import plan_reads
from collectors.modbus_profile import DeviceProfile, ProfileLibrary
from gateway.configfile import ConfigError, load_model
from gateway.reading import UNITS, SensorKind
from gateway.resources import firmware_configs_dir

SHIPPED = sorted(firmware_configs_dir().glob("*.yaml"))


def test_the_three_documented_profiles_ship() -> None:
    names = {p.stem for p in SHIPPED}
    assert {"rs485_th_int16", "modbus_smoke_detector", "modbus_io_door_leak"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_profile_loads_and_can_be_read(path: Path) -> None:
    profile = load_model(path, DeviceProfile)
    assert profile.id == path.stem
    assert profile.points
    # every point fits a request, so a device using all of them can actually be polled
    requests = plan_reads(profile)
    assert sorted(n for r in requests for n in r.points) == sorted(profile.points)


def test_the_library_holds_every_shipped_profile() -> None:
    library = ProfileLibrary.load()
    assert set(library.profiles) == {p.stem for p in SHIPPED}


def _write(tmp_path: Path, doc: dict[str, Any], name: str = "dev.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _profile(point: dict[str, Any], **top: Any) -> dict[str, Any]:
    base = {"kind": "temperature", "register_type": "holding", "address": 0}
    return {"id": "dev", "name": "测试设备", **top, "points": {"p": {**base, **point}}}


# (point fields, top-level fields, texts the problem line must contain: field path and why)
ILLEGAL: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    (
        "float32 without byte_order",
        {"data_type": "float32"},
        {},
        ["points.p", "byte_order is required for float32"],
    ),
    (
        "int16 without byte_order",
        {"data_type": "int16"},
        {},
        ["points.p", "byte_order is required for int16 (one of AB, BA)"],
    ),
    (
        "32-bit order on int16",
        {"data_type": "int16", "byte_order": "ABCD"},
        {},
        ["points.p", "byte_order ABCD is illegal for int16; allowed: AB, BA"],
    ),
    (
        "16-bit order on float32",
        {"data_type": "float32", "byte_order": "BA"},
        {},
        ["points.p", "byte_order BA is illegal for float32"],
    ),
    (
        "byte_order on bool",
        {"data_type": "bool", "byte_order": "AB", "kind": "door"},
        {},
        ["points.p", "byte_order AB is illegal for bool; allowed: none (omit byte_order)"],
    ),
    (
        "unknown byte order",
        {"data_type": "int16", "byte_order": "BCDA"},
        {},
        ["points.p.byte_order", "Input should be"],
    ),
    (
        "scale on bool",
        {"data_type": "bool", "register_type": "discrete", "kind": "smoke", "scale": 0.1},
        {},
        ["points.p", "scale and offset are illegal on a bool point"],
    ),
    (
        "offset on bool",
        {"data_type": "bool", "register_type": "coil", "kind": "door", "offset": 1},
        {},
        ["points.p", "scale and offset are illegal on a bool point"],
    ),
    (
        "float32 from coils",
        {"data_type": "float32", "byte_order": "ABCD", "register_type": "coil"},
        {},
        ["points.p", "data_type float32 cannot be read from coil registers"],
    ),
    (
        "bit on int16",
        {"data_type": "int16", "byte_order": "AB", "bit": 3},
        {},
        ["points.p", "bit is only legal on a bool point read from a register"],
    ),
    (
        "bit on a discrete input",
        {"data_type": "bool", "register_type": "discrete", "kind": "smoke", "bit": 0},
        {},
        ["points.p", "bit is only legal on a bool point read from a register"],
    ),
    (
        "bit 16",
        {"data_type": "bool", "kind": "door", "bit": 16},
        {},
        ["points.p.bit", "less than or equal to 15"],
    ),
    (
        "scale 0",
        {"data_type": "int16", "byte_order": "AB", "scale": 0},
        {},
        ["points.p", "scale must not be 0"],
    ),
    (
        "address past 65535",
        {"data_type": "int16", "byte_order": "AB", "address": 65536},
        {},
        ["points.p.address", "less than or equal to 65535"],
    ),
    (
        "unknown data type",
        {"data_type": "string", "byte_order": "AB"},
        {},
        ["points.p.data_type", "Input should be"],
    ),
    (
        "misspelt key",
        {"data_type": "int16", "byte_order": "AB", "sacle": 0.1},
        {},
        ["points.p.sacle", "unknown key"],
    ),
    (
        "more than 125 registers per read",
        {"data_type": "int16", "byte_order": "AB"},
        {"max_registers_per_read": 126},
        ["max_registers_per_read", "less than or equal to 125"],
    ),
    (
        "°F on a temperature point",
        {"data_type": "int16", "byte_order": "AB", "scale": 0.1, "unit": "°F"},
        {},
        [
            "points.p.unit",
            "unit '°F' contradicts kind temperature: archwatch stores temperature in °C",
        ],
    ),
    (
        "kelvin on a temperature point",
        {"data_type": "float32", "byte_order": "ABCD", "unit": "K"},
        {},
        ["points.p.unit", "archwatch stores temperature in °C"],
    ),
    (
        "%RH on a temperature point",
        {"data_type": "int16", "byte_order": "AB", "unit": "%RH"},
        {},
        ["points.p.unit", "archwatch stores temperature in °C"],
    ),
    (
        "kilolux on a light point",
        {"data_type": "uint32", "byte_order": "ABCD", "kind": "light", "unit": "klx"},
        {},
        ["points.p.unit", "archwatch stores light in lx"],
    ),
    (
        "mg/m³ on a pm2.5 point",
        {"data_type": "uint16", "byte_order": "AB", "kind": "pm2_5", "unit": "mg/m³"},
        {},
        ["points.p.unit", "archwatch stores pm2_5 in µg/m³"],
    ),
    (
        "°C on a door",
        {"data_type": "bool", "register_type": "discrete", "kind": "door", "unit": "°C"},
        {},
        ["points.p.unit", "archwatch stores door in 0/1"],
    ),
    (
        "id not an ASCII slug",
        {"data_type": "int16", "byte_order": "AB"},
        {"id": "温湿度"},
        ["id", "should match pattern"],
    ),
]


@pytest.mark.parametrize(
    ("point", "top", "texts"), [c[1:] for c in ILLEGAL], ids=[c[0] for c in ILLEGAL]
)
def test_illegal_profiles_are_refused_naming_the_field(
    tmp_path: Path, point: dict[str, Any], top: dict[str, Any], texts: list[str]
) -> None:
    path = _write(tmp_path, _profile(point, **top))
    with pytest.raises(ConfigError) as exc_info:
        load_model(path, DeviceProfile)
    problems = exc_info.value.problems
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:"), "the problem names the file and line"
    for text in texts:
        assert text in problems[0]


def test_two_points_on_one_register_are_refused(tmp_path: Path) -> None:
    doc = {
        "id": "dev",
        "name": "dev",
        "points": {
            "t": {
                "kind": "temperature",
                "register_type": "holding",
                "address": 0,
                "data_type": "float32",
                "byte_order": "ABCD",
            },
            "h": {
                "kind": "humidity",
                "register_type": "holding",
                "address": 1,
                "data_type": "uint16",
                "byte_order": "AB",
            },
        },
    }
    with pytest.raises(ConfigError, match="points 't' and 'h' both use holding register 1"):
        load_model(_write(tmp_path, doc), DeviceProfile)


def test_bits_of_one_register_may_share_it(tmp_path: Path) -> None:
    doc = {
        "id": "dev",
        "name": "dev",
        "points": {
            "a": {
                "kind": "door",
                "register_type": "input",
                "address": 0,
                "data_type": "bool",
                "bit": 0,
            },
            "b": {
                "kind": "water_leak",
                "register_type": "input",
                "address": 0,
                "data_type": "bool",
                "bit": 1,
            },
        },
    }
    assert set(load_model(_write(tmp_path, doc), DeviceProfile).points) == {"a", "b"}


def test_a_site_profile_folder_is_checked_too(tmp_path: Path) -> None:
    good = _profile({"data_type": "int16", "byte_order": "AB"}, id="site-th")
    _write(tmp_path, good, "site-th.yaml")
    assert "site-th" in ProfileLibrary.load([tmp_path])

    _write(
        tmp_path, _profile({"data_type": "int16", "byte_order": "AB"}, id="other"), "misnamed.yaml"
    )
    _write(tmp_path, _profile({"data_type": "float32"}, id="broken"), "broken.yaml")
    with pytest.raises(ConfigError) as exc_info:
        ProfileLibrary.load([tmp_path])
    text = "\n".join(exc_info.value.problems)
    # every problem is listed in one go, each with its file
    assert "misnamed.yaml: id 'other' must match the file name" in text
    assert "broken.yaml:" in text and "byte_order is required for float32" in text


# (kind, data type, unit): spellings of the unit archwatch stores, as datasheets write them.
LEGAL_UNITS: list[tuple[str, str, str]] = [
    ("temperature", "int16", "°C"),
    ("temperature", "int16", "℃"),
    ("temperature", "float32", "degC"),
    ("humidity", "uint16", "%RH"),
    ("humidity", "uint16", "%"),
    ("light", "uint32", "lux"),
    ("co2", "uint16", "ppm"),
    ("voc", "uint16", "PPB"),
    ("pm2_5", "uint16", "ug/m3"),
    ("battery", "uint16", "%"),
    ("water_leak", "uint16", "0/1"),
]


@pytest.mark.parametrize(("kind", "data_type", "unit"), LEGAL_UNITS)
def test_the_kinds_own_unit_is_accepted(
    tmp_path: Path, kind: str, data_type: str, unit: str
) -> None:
    order = "ABCD" if data_type in ("uint32", "float32") else "AB"
    doc = _profile({"kind": kind, "data_type": data_type, "byte_order": order, "unit": unit})
    profile = load_model(_write(tmp_path, doc), DeviceProfile)
    assert profile.points["p"].unit == unit


def test_a_unit_is_optional(tmp_path: Path) -> None:
    doc = _profile({"data_type": "int16", "byte_order": "AB"})
    assert load_model(_write(tmp_path, doc), DeviceProfile).points["p"].unit is None


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_climate_points_declare_the_unit_archwatch_stores(path: Path) -> None:
    """A keeper copying a shipped profile for a new model sees which unit to produce."""
    profile = load_model(path, DeviceProfile)
    for name, point in profile.points.items():
        if point.kind in (SensorKind.TEMPERATURE, SensorKind.HUMIDITY, SensorKind.LIGHT):
            assert point.unit == UNITS[point.kind], f"{path.name}: {name}"
