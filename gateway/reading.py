"""The one Reading type every collector produces and every store keeps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class SensorKind(StrEnum):
    """What a sensor measures. The value's unit is fixed per kind (see ``UNITS``)."""

    TEMPERATURE = "temperature"
    HUMIDITY = "humidity"
    SMOKE = "smoke"
    DOOR = "door"
    WATER_LEAK = "water_leak"
    LIGHT = "light"
    UV = "uv"  # ultraviolet irradiance, beside the illuminance of a light/UV transmitter
    CO2 = "co2"
    VOC = "voc"
    PM2_5 = "pm2_5"
    BATTERY = "battery"
    ACCESS = "access"  # an access-control reader: the value is the badge number presented


UNITS: dict[SensorKind, str] = {
    SensorKind.TEMPERATURE: "°C",
    SensorKind.HUMIDITY: "%RH",
    SensorKind.SMOKE: "state",  # 1 = smoke detected
    SensorKind.DOOR: "state",  # 1 = open
    SensorKind.WATER_LEAK: "state",  # 1 = water detected
    SensorKind.LIGHT: "lx",
    # Irradiance, not the UV index (a sunburn scale): archives limit the UV share of light,
    # commonly quoted as at most 75 µW per lumen, which is uv × 10^4 / light (lx = lm/m²).
    SensorKind.UV: "µW/cm²",
    SensorKind.CO2: "ppm",
    SensorKind.VOC: "ppb",
    SensorKind.PM2_5: "µg/m³",
    SensorKind.BATTERY: "%",
    SensorKind.ACCESS: "badge",
}

BINARY_KINDS = frozenset({SensorKind.SMOKE, SensorKind.DOOR, SensorKind.WATER_LEAK})


def ns_from_datetime(ts: datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware datetime (naive is refused: ambiguous)."""
    if ts.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def datetime_from_ns(ts_ns: int) -> datetime:
    """Aware UTC datetime of nanoseconds since the epoch (microsecond precision)."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one sensor at one instant, with the tags that place it in the building.

    ``ts_ns`` is the source timestamp (the device's, or the gateway's receive time when the
    device sends none); together with ``sensor`` and ``drill_id`` it is the reading's identity,
    so a redelivered message maps to the same key and is stored once.
    ``drill_id`` is set only on readings injected by an emergency drill.
    """

    site: str
    building: str
    room: str
    device: str
    sensor: str
    kind: SensorKind
    storage_class: str
    value: float
    ts_ns: int
    drill_id: str | None = None
    # Raw value as the device sent it (register word, payload field), for rejects and probes.
    raw: str | None = field(default=None, compare=False)

    @property
    def ts(self) -> datetime:
        return datetime_from_ns(self.ts_ns)

    @property
    def key(self) -> tuple[str, int, str]:
        """Identity for de-duplication: (sensor, source timestamp, drill id or '')."""
        return (self.sensor, self.ts_ns, self.drill_id or "")

    @property
    def unit(self) -> str:
        return UNITS[self.kind]

    def tags(self) -> dict[str, str]:
        """Tags as stored in the ``readings`` measurement (README: Storage schema)."""
        tags = {
            "site": self.site,
            "building": self.building,
            "room": self.room,
            "device": self.device,
            "sensor": self.sensor,
            "kind": self.kind.value,
            "storage_class": self.storage_class,
        }
        if self.drill_id:
            tags["drill_id"] = self.drill_id
        return tags

    def is_finite(self) -> bool:
        return math.isfinite(self.value)

    def to_json(self) -> dict[str, object]:
        return {
            "site": self.site,
            "building": self.building,
            "room": self.room,
            "device": self.device,
            "sensor": self.sensor,
            "kind": self.kind.value,
            "storage_class": self.storage_class,
            "value": self.value,
            "ts_ns": self.ts_ns,
            "drill_id": self.drill_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Reading:
        drill = data.get("drill_id")
        return cls(
            site=str(data["site"]),
            building=str(data["building"]),
            room=str(data["room"]),
            device=str(data["device"]),
            sensor=str(data["sensor"]),
            kind=SensorKind(str(data["kind"])),
            storage_class=str(data["storage_class"]),
            value=float(data["value"]),  # type: ignore[arg-type]
            ts_ns=int(data["ts_ns"]),  # type: ignore[call-overload]
            drill_id=str(drill) if drill else None,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """An alert or system event, stored in the ``events`` measurement (Grafana annotations).

    ``kind`` names what happened (``device_offline``, ``alert_fired``, ...); ``tags`` place it
    (site, building, room, device, sensor, severity, alert id) and are all ASCII ids.
    """

    ts_ns: int
    kind: str
    title: str
    text: str = ""
    severity: str = "info"
    tags: dict[str, str] = field(default_factory=dict)
    drill_id: str | None = None

    def all_tags(self) -> dict[str, str]:
        tags = dict(self.tags)
        tags["kind"] = self.kind
        tags["severity"] = self.severity
        if self.drill_id:
            tags["drill_id"] = self.drill_id
        return tags
