"""The device-profile library: every model the field meets ships, each with its decoding cases,
and the access controller's badge registers are checked like any point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from collectors.modbus import with_badge_points
from collectors.modbus_plan import plan_reads
from collectors.modbus_profile import DeviceProfile, ProfileLibrary
from gateway.configfile import ConfigError, load_model

CASES_DIR = Path(__file__).parent / "cases"
LIBRARY = ProfileLibrary.load()

FIELD_PROFILES = [
    "rs485_th_int16",
    "float32_th_abcd",
    "float32_th_cdab",
    "float32_th_badc",
    "float32_th_dcba",
    "modbus_smoke_detector",
    "modbus_smoke_status",
    "modbus_access_controller",
    "modbus_io_door_leak",
    "modbus_water_leak",
    "modbus_light_uv",
]


def _case_profiles() -> dict[str, list[str]]:
    by_profile: dict[str, list[str]] = {}
    for case in sorted(CASES_DIR.iterdir()):
        doc = yaml.safe_load((case / "profile.yaml").read_text(encoding="utf-8"))
        if isinstance(doc, dict) and set(doc) == {"profile"} and (case / "registers.yaml").exists():
            by_profile.setdefault(str(doc["profile"]), []).append(case.name)
    return by_profile


@pytest.mark.parametrize("profile_id", FIELD_PROFILES)
def test_each_field_profile_ships_with_a_decoding_case(profile_id: str) -> None:
    assert profile_id in LIBRARY
    assert _case_profiles().get(profile_id), f"no tests/cases/<case>/ uses {profile_id}"


def test_every_shipped_profile_has_a_decoding_case() -> None:
    missing = set(LIBRARY.profiles) - set(_case_profiles())
    assert not missing, f"profiles without a case folder: {sorted(missing)}"


def test_the_float32_family_differs_only_in_byte_order() -> None:
    family = [LIBRARY.get(f"float32_th_{o}") for o in ("abcd", "cdab", "badc", "dcba")]
    orders = [{p.byte_order for p in prof.points.values()} for prof in family]
    assert orders == [{"ABCD"}, {"CDAB"}, {"BADC"}, {"DCBA"}]
    layouts = {
        tuple((n, p.register_type, p.address, p.data_type) for n, p in prof.points.items())
        for prof in family
    }
    assert len(layouts) == 1


def test_the_access_controller_reads_doors_and_badge_registers_in_one_plan() -> None:
    profile = with_badge_points(LIBRARY.get("modbus_access_controller"))
    requests = plan_reads(profile)
    assert [(str(r.register_type), r.address, r.count, r.points) for r in requests] == [
        ("input", 0, 3, ("badge.number", "badge.counter")),
        ("discrete", 0, 2, ("door_1", "door_2")),
    ]


def _controller(badge: dict[str, Any], points: dict[str, Any] | None = None) -> dict[str, Any]:
    door = {"kind": "door", "register_type": "discrete", "address": 0, "data_type": "bool"}
    return {"id": "ac", "name": "门禁", "points": points or {"door": door}, "badge": badge}


REG = {"register_type": "input", "address": 0, "data_type": "uint32", "byte_order": "ABCD"}
CTR = {"register_type": "input", "address": 2, "data_type": "uint16", "byte_order": "AB"}

ILLEGAL_BADGES: list[tuple[str, dict[str, Any], dict[str, Any] | None, str]] = [
    (
        "a float counter",
        {"number": REG, "counter": {**CTR, "data_type": "float32", "byte_order": "ABCD"}},
        None,
        "a counter register is uint16 or uint32",
    ),
    ("no byte order", {"number": {**REG, "byte_order": None}, "counter": CTR}, None, "byte_order"),
    (
        "a 16-bit order for a 32-bit number",
        {"number": {**REG, "byte_order": "AB"}, "counter": CTR},
        None,
        "byte_order AB is illegal for uint32",
    ),
    (
        "badge registers overlapping a point",
        {"number": REG, "counter": CTR},
        {
            "lux": {
                "kind": "light",
                "register_type": "input",
                "address": 1,
                "data_type": "uint16",
                "byte_order": "AB",
            }
        },
        "points 'lux' and 'badge.number' both use input register 1",
    ),
    (
        "coils are not counters",
        {"number": REG, "counter": {**CTR, "register_type": "coil"}},
        None,
        "cannot be read from coil registers",
    ),
]


@pytest.mark.parametrize(
    ("badge", "points", "problem"),
    [c[1:] for c in ILLEGAL_BADGES],
    ids=[c[0] for c in ILLEGAL_BADGES],
)
def test_illegal_badge_registers_are_refused(
    tmp_path: Path, badge: dict[str, Any], points: dict[str, Any] | None, problem: str
) -> None:
    path = tmp_path / "ac.yaml"
    doc = _controller(badge, points)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as exc_info:
        load_model(path, DeviceProfile)
    assert problem in "\n".join(exc_info.value.problems)
