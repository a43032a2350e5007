"""Grouping a device's points into read requests: fewest round trips, never over the limits."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.modbus_plan import PlanError, plan_reads
from collectors.modbus_profile import DeviceProfile, ProfileLibrary


def profile(points: dict[str, dict[str, Any]], max_registers: int = 125) -> DeviceProfile:
    full = {}
    for name, p in points.items():
        data_type = p.get("data_type", "int16")
        defaults: dict[str, Any] = {"kind": "temperature", "data_type": data_type}
        if data_type in ("int16", "uint16"):
            defaults["byte_order"] = "AB"
        elif data_type != "bool":
            defaults["byte_order"] = "ABCD"
        full[name] = {**defaults, "register_type": "holding", **p}
    return DeviceProfile.model_validate(
        {"id": "t", "name": "t", "max_registers_per_read": max_registers, "points": full}
    )


def shape(
    prof: DeviceProfile, names: list[str] | None = None, gap: int = 0
) -> list[tuple[Any, ...]]:
    return [
        (str(r.register_type), r.address, r.count, r.points)
        for r in plan_reads(prof, names, max_gap=gap)
    ]


def test_contiguous_registers_are_one_request() -> None:
    prof = profile(
        {"h": {"address": 0}, "t": {"address": 1}, "f": {"address": 2, "data_type": "float32"}}
    )
    assert shape(prof) == [("holding", 0, 4, ("h", "t", "f"))]


@pytest.mark.parametrize(
    ("gap", "expected"),
    [
        (0, [("holding", 0, 1, ("a",)), ("holding", 3, 1, ("b",))]),
        (1, [("holding", 0, 1, ("a",)), ("holding", 3, 1, ("b",))]),
        (2, [("holding", 0, 4, ("a", "b"))]),
    ],
)
def test_a_gap_is_spanned_only_when_allowed(gap: int, expected: list[tuple[Any, ...]]) -> None:
    prof = profile({"a": {"address": 0}, "b": {"address": 3}})
    assert shape(prof, gap=gap) == expected


def test_register_types_are_never_mixed() -> None:
    prof = profile(
        {
            "coil": {"register_type": "coil", "address": 1, "data_type": "bool", "kind": "door"},
            "in": {"register_type": "input", "address": 1},
            "hold": {"register_type": "holding", "address": 0},
            "di": {"register_type": "discrete", "address": 0, "data_type": "bool", "kind": "smoke"},
        }
    )
    assert shape(prof) == [
        ("holding", 0, 1, ("hold",)),
        ("input", 1, 1, ("in",)),
        ("coil", 1, 1, ("coil",)),
        ("discrete", 0, 1, ("di",)),
    ]


def test_only_the_sensors_used_are_read() -> None:
    prof = profile({"a": {"address": 0}, "b": {"address": 1}, "c": {"address": 2}})
    assert shape(prof, ["c", "a"]) == [("holding", 0, 1, ("a",)), ("holding", 2, 1, ("c",))]
    assert shape(prof, ["a", "a"]) == [("holding", 0, 1, ("a",))]


def test_the_device_limit_splits_requests_but_never_a_value() -> None:
    prof = profile(
        {
            "a": {"address": 0},
            "f": {"address": 1, "data_type": "float32"},
            "b": {"address": 3},
        },
        max_registers=2,
    )
    assert shape(prof) == [
        ("holding", 0, 1, ("a",)),
        ("holding", 1, 2, ("f",)),
        ("holding", 3, 1, ("b",)),
    ]


def test_125_registers_per_request() -> None:
    prof = profile({f"p{i}": {"address": i} for i in range(300)})
    assert [(a, n) for _, a, n, _ in shape(prof)] == [(0, 125), (125, 125), (250, 50)]


def test_2000_bits_per_request() -> None:
    prof = profile(
        {
            f"c{i}": {"register_type": "coil", "address": i, "data_type": "bool", "kind": "door"}
            for i in range(2001)
        }
    )
    assert [(a, n) for _, a, n, _ in shape(prof)] == [(0, 2000), (2000, 1)]


def test_bits_of_one_register_share_one_read() -> None:
    door_leak = ProfileLibrary.load().get("modbus_io_door_leak")
    assert shape(door_leak) == [("input", 0, 1, ("door", "water_leak"))]


@pytest.mark.parametrize(
    ("points", "max_registers", "names", "message"),
    [
        ({"a": {"address": 0}}, 125, ["nope"], "profile 't' has no point 'nope'"),
        (
            {"f": {"address": 0, "data_type": "float32"}},
            1,
            None,
            "point 'f' needs 2 registers but profile 't' allows 1 per read",
        ),
        (
            {"f": {"address": 65535, "data_type": "uint32"}},
            125,
            None,
            "point 'f' runs past register 65535",
        ),
    ],
    ids=["unknown point", "value larger than a request", "past the address space"],
)
def test_impossible_plans_are_refused(
    points: dict[str, dict[str, Any]], max_registers: int, names: list[str] | None, message: str
) -> None:
    with pytest.raises(PlanError, match=message):
        plan_reads(profile(points, max_registers), names)


# deadline=None: no per-example time limit, which would flake on a loaded CI machine.
@settings(deadline=None)
@given(
    spots=st.dictionaries(
        st.integers(0, 400), st.sampled_from(["int16", "float32"]), min_size=1, max_size=40
    ),
    limit=st.integers(2, 125),
    gap=st.integers(0, 5),
)
def test_every_point_is_read_once_within_limits(
    spots: dict[int, str], limit: int, gap: int
) -> None:
    points: dict[str, dict[str, Any]] = {}
    taken: set[int] = set()
    for address, data_type in sorted(spots.items()):
        width = 2 if data_type == "float32" else 1
        if taken & set(range(address, address + width)):
            continue
        taken |= set(range(address, address + width))
        points[f"p{address}"] = {"address": address, "data_type": data_type}
    prof = profile(points, limit)
    requests = plan_reads(prof, max_gap=gap)
    seen: list[str] = []
    for r in requests:
        assert 1 <= r.count <= limit
        for name in r.points:
            p = prof.points[name]
            assert r.address <= p.address and p.address + p.register_count <= r.end
        seen.extend(r.points)
    assert sorted(seen) == sorted(points)
    # requests of one type never overlap, so no register is read twice
    spans = sorted((r.address, r.end) for r in requests)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))
