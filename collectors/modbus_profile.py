"""Modbus device profiles: a model's register map as YAML in ``firmware_configs/``.

Adding a device model is a YAML file, not code. Each point names its register type,
address, data type and byte/word order explicitly (wrong order silently gives nonsense
floats: home-assistant/core#44553, telegraf#8855), its scale and offset, and the raw fault
codes *of that model* (never a global "not a number" value that could hide a real zero:
home-assistant/core#153861). A legality table per data type, as in Home Assistant's Modbus
validator, refuses combinations that cannot be right instead of repairing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gateway.configfile import load_directory
from gateway.reading import BINARY_KINDS, UNITS, SensorKind
from gateway.resources import firmware_configs_dir

ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"

# The protocol's own limits per request (Modbus Application Protocol v1.1b3, 6.1-6.4).
MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000


class RegisterType(StrEnum):
    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"

    @property
    def is_bit(self) -> bool:
        return self in (RegisterType.COIL, RegisterType.DISCRETE)


class DataType(StrEnum):
    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    BOOL = "bool"


class ByteOrder(StrEnum):
    """Order of the bytes A (most significant) .. D as they arrive on the wire.

    16-bit values use AB (big-endian, the Modbus norm) or BA; 32-bit values use ABCD
    (big-endian words and bytes), CDAB (word-swapped), BADC (byte-swapped) or DCBA.
    """

    AB = "AB"
    BA = "BA"
    ABCD = "ABCD"
    CDAB = "CDAB"
    BADC = "BADC"
    DCBA = "DCBA"


@dataclass(frozen=True)
class Legality:
    """What a data type demands and allows (Home Assistant's modbus validator, absorbed)."""

    registers: int
    orders: frozenset[ByteOrder]
    register_types: frozenset[RegisterType]
    scalable: bool


_WORD = frozenset({RegisterType.HOLDING, RegisterType.INPUT})
_BITS = frozenset({RegisterType.COIL, RegisterType.DISCRETE})
_O16 = frozenset({ByteOrder.AB, ByteOrder.BA})
_O32 = frozenset({ByteOrder.ABCD, ByteOrder.CDAB, ByteOrder.BADC, ByteOrder.DCBA})

LEGALITY: dict[DataType, Legality] = {
    DataType.INT16: Legality(1, _O16, _WORD, True),
    DataType.UINT16: Legality(1, _O16, _WORD, True),
    DataType.INT32: Legality(2, _O32, _WORD, True),
    DataType.UINT32: Legality(2, _O32, _WORD, True),
    DataType.FLOAT32: Legality(2, _O32, _WORD, True),
    # A bit is either a coil/discrete input, or one bit of a register (``bit:``).
    DataType.BOOL: Legality(1, frozenset(), _WORD | _BITS, False),
}


# The raw values each type can hold: fault codes are compared with these, before scaling.
RAW_RANGES: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.FLOAT32: (-(2**31), 2**31 - 1),  # a float fault code is written as an integer
    DataType.BOOL: (0, 1),
}


# How datasheets write the one unit archwatch stores for each kind (gateway.reading.UNITS),
# compared case-insensitively. A point's ``unit`` documents what scale and offset produce; a
# unit outside its kind's spellings (a °F transmitter, kilolux) means the value would be
# stored in the wrong unit, so it is refused rather than converted behind the keeper's back.
_STATE = frozenset({"state", "0/1"})
UNIT_SPELLINGS: dict[SensorKind, frozenset[str]] = {
    SensorKind.TEMPERATURE: frozenset({"°c", "℃", "degc", "celsius"}),
    SensorKind.HUMIDITY: frozenset({"%rh", "% rh", "rh%", "%"}),
    SensorKind.SMOKE: _STATE,
    SensorKind.DOOR: _STATE,
    SensorKind.WATER_LEAK: _STATE,
    SensorKind.LIGHT: frozenset({"lx", "lux"}),
    SensorKind.CO2: frozenset({"ppm"}),
    SensorKind.VOC: frozenset({"ppb"}),
    SensorKind.PM2_5: frozenset({"µg/m³", "μg/m³", "ug/m3", "µg/m3", "μg/m3"}),
    SensorKind.BATTERY: frozenset({"%"}),
    SensorKind.ACCESS: frozenset({"badge"}),
    SensorKind.UV: frozenset({"µw/cm²", "μw/cm²", "uw/cm2", "µw/cm2", "μw/cm2"}),
}


class Point(BaseModel):
    """One value in a device's register map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SensorKind
    register_type: RegisterType
    address: int = Field(ge=0, le=65535)
    data_type: DataType
    byte_order: ByteOrder | None = None
    bit: int | None = Field(default=None, ge=0, le=15, description="bit of a register (bool)")
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = Field(
        default=None, description="unit after scale and offset; must be the kind's own"
    )
    invert: bool = Field(default=False, description="bool: 0 means active (normally closed)")
    fault_codes: list[int] = Field(default_factory=list, description="raw values meaning fault")
    description: str = ""

    @field_validator("unit")
    @classmethod
    def _unit_of_kind(cls, unit: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if unit is None or not isinstance(kind, SensorKind):
            return unit  # an invalid kind is reported on its own
        # A kind added later without spellings here accepts exactly its stored unit.
        spellings = UNIT_SPELLINGS.get(kind, frozenset({UNITS[kind].casefold()}))
        if unit.strip().casefold() not in spellings:
            stored = "0/1" if kind in BINARY_KINDS else UNITS[kind]
            raise ValueError(
                f"unit '{unit}' contradicts kind {kind}: archwatch stores {kind} in {stored}; "
                f'convert with scale and offset and write unit: "{stored}"'
            )
        return unit

    @model_validator(mode="after")
    def _legal(self) -> Point:
        rule = LEGALITY[self.data_type]
        if self.register_type not in rule.register_types:
            raise ValueError(
                f"data_type {self.data_type} cannot be read from {self.register_type} registers"
            )
        if self.byte_order is not None and self.byte_order not in rule.orders:
            allowed = ", ".join(sorted(rule.orders)) or "none (omit byte_order)"
            raise ValueError(
                f"byte_order {self.byte_order} is illegal for {self.data_type}; allowed: {allowed}"
            )
        if rule.orders and self.byte_order is None:
            raise ValueError(
                f"byte_order is required for {self.data_type} "
                f"(one of {', '.join(sorted(rule.orders))}); it is never guessed"
            )
        if not rule.scalable and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError("scale and offset are illegal on a bool point")
        if self.bit is not None and (
            self.data_type is not DataType.BOOL or self.register_type.is_bit
        ):
            raise ValueError("bit is only legal on a bool point read from a register")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        lo, hi = RAW_RANGES[self.data_type]
        impossible = [c for c in self.fault_codes if not lo <= c <= hi]
        if impossible:
            # A code the type cannot hold would silently never match: refuse it.
            raise ValueError(
                f"fault_codes {impossible} cannot occur in a {self.data_type} "
                f"(raw range {lo}..{hi})"
            )
        return self

    @property
    def register_count(self) -> int:
        return LEGALITY[self.data_type].registers


class CounterRegister(BaseModel):
    """A number a controller keeps in registers (not a sensor): a badge id, an event counter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    register_type: RegisterType
    address: int = Field(ge=0, le=65535)
    data_type: DataType
    byte_order: ByteOrder

    @model_validator(mode="after")
    def _integer(self) -> CounterRegister:
        if self.data_type not in (DataType.UINT16, DataType.UINT32):
            raise ValueError("a counter register is uint16 or uint32")
        self.as_point()  # the legality table applies as for any point
        return self

    def as_point(self) -> Point:
        """The register as a point, for planning and decoding (its ``kind`` is never used)."""
        return Point(
            kind=SensorKind.DOOR,
            register_type=self.register_type,
            address=self.address,
            data_type=self.data_type,
            byte_order=self.byte_order,
        )


class BadgeRegisters(BaseModel):
    """Where an access controller reports card swipes: the last badge number and a counter
    it increments on every swipe. A changed counter is a ``badge`` event (not a reading)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: CounterRegister
    counter: CounterRegister


class DeviceProfile(BaseModel):
    """A device model's register map, e.g. the common RS485 temperature-humidity transmitter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str
    manufacturer: str = "generic"
    protocol: str = Field(default="modbus", pattern="^modbus$")
    description: str = ""
    max_registers_per_read: int = Field(default=MAX_REGISTERS_PER_READ, ge=1, le=125)
    points: dict[str, Point] = Field(min_length=1)
    badge: BadgeRegisters | None = Field(default=None, description="card swipes, if reported")

    def badge_points(self) -> dict[str, Point]:
        """The badge registers as points named ``badge.number`` / ``badge.counter`` (or none)."""
        if self.badge is None:
            return {}
        return {
            "badge.number": self.badge.number.as_point(),
            "badge.counter": self.badge.counter.as_point(),
        }

    @model_validator(mode="after")
    def _no_overlap(self) -> DeviceProfile:
        used: dict[tuple[RegisterType, int, int | None], str] = {}
        for name, p in {**self.points, **self.badge_points()}.items():
            for i in range(p.register_count):
                key = (p.register_type, p.address + i, p.bit)
                if key in used:
                    raise ValueError(
                        f"points '{used[key]}' and '{name}' both use "
                        f"{p.register_type} register {p.address + i}"
                    )
                used[key] = name
        return self


class ProfileLibrary:
    """Device profiles by id, from ``firmware_configs/`` plus a site's own folders."""

    def __init__(self, profiles: dict[str, DeviceProfile]) -> None:
        self.profiles = profiles

    @classmethod
    def load(cls, extra_dirs: list[Path] | None = None) -> ProfileLibrary:
        dirs = [firmware_configs_dir(), *(extra_dirs or [])]
        return cls(load_directory(dirs, DeviceProfile, "device profiles"))

    def get(self, profile_id: str) -> DeviceProfile:
        return self.profiles[profile_id]

    def __contains__(self, profile_id: object) -> bool:
        return profile_id in self.profiles
