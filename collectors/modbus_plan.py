"""Group a device's points into as few read requests as the protocol allows.

One request per run of adjacent addresses of one register type: on an RS-485 line every
request costs a round trip, and several small reads per poll multiply the time one dead
unit holds the line. Points are merged only when contiguous (or within ``max_gap`` unused
registers: some devices refuse reads that span holes, telegraf#7523), and never beyond the
profile's ``max_registers_per_read`` (≤ 125) or 2000 bits per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from collectors.modbus_profile import (
    MAX_BITS_PER_READ,
    DeviceProfile,
    Point,
    RegisterType,
)

T = TypeVar("T")
_ADDRESS_SPACE = 65536


class PlanError(ValueError):
    """The points cannot be read as asked (unknown point, or larger than one request)."""


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One Modbus read: ``count`` registers (or bits) of one type from ``address``."""

    register_type: RegisterType
    address: int
    count: int
    points: tuple[str, ...]

    @property
    def end(self) -> int:
        """First address after the request."""
        return self.address + self.count

    def describe(self) -> str:
        return f"{self.register_type} {self.address}..{self.end - 1}"

    def slice(self, point: Point, data: Sequence[T]) -> list[T]:
        """The part of this request's response that holds ``point``."""
        start = point.address - self.address
        if start < 0 or start + point.register_count > self.count:
            raise ValueError(f"{point.register_type} {point.address} is not in {self.describe()}")
        return list(data[start : start + point.register_count])


def request_limit(profile: DeviceProfile, register_type: RegisterType) -> int:
    """Most registers (or bits) one request of this type may read from this device."""
    return MAX_BITS_PER_READ if register_type.is_bit else profile.max_registers_per_read


def plan_reads(
    profile: DeviceProfile, point_names: Iterable[str] | None = None, *, max_gap: int = 0
) -> list[ReadRequest]:
    """The read requests that cover ``point_names`` (all of the profile's points if None).

    Requests come ordered by register type, then address; each point lies wholly inside
    exactly one request.
    """
    if max_gap < 0:
        raise PlanError("max_gap must not be negative")
    names = list(dict.fromkeys(profile.points if point_names is None else point_names))
    by_type: dict[RegisterType, list[tuple[str, Point]]] = {}
    for name in names:
        point = profile.points.get(name)
        if point is None:
            raise PlanError(f"profile '{profile.id}' has no point '{name}'")
        limit = request_limit(profile, point.register_type)
        if point.register_count > limit:
            raise PlanError(
                f"point '{name}' needs {point.register_count} registers but profile "
                f"'{profile.id}' allows {limit} per read (max_registers_per_read)"
            )
        if point.address + point.register_count > _ADDRESS_SPACE:
            raise PlanError(f"point '{name}' runs past register 65535")
        by_type.setdefault(point.register_type, []).append((name, point))

    requests: list[ReadRequest] = []
    for register_type in RegisterType:
        members = sorted(by_type.get(register_type, []), key=lambda m: m[1].address)
        limit = request_limit(profile, register_type)
        start = end = -1
        group: list[str] = []
        for name, point in members:
            p_end = point.address + point.register_count
            fits = group and point.address <= end + max_gap and max(end, p_end) - start <= limit
            if fits:
                end = max(end, p_end)
                group.append(name)
                continue
            if group:
                requests.append(ReadRequest(register_type, start, end - start, tuple(group)))
            start, end, group = point.address, p_end, [name]
        if group:
            requests.append(ReadRequest(register_type, start, end - start, tuple(group)))
    return requests
