"""``tasmota``: Tasmota telemetry, ``tele/<device>/SENSOR``, one block per sensor driver.

Example: ``{"Time": "2026-01-01T08:00:00", "SHT3X": {"Temperature": 21.4, "Humidity": 55.1,
"DewPoint": 12.0}, "TempUnit": "C"}``. The answer to ``Status 10`` (``stat/<device>/STATUS10``,
the same blocks under ``StatusSNS``) is read the same way.

* A sensor's ``json_path`` is relative to the message: ``SHT3X.Temperature``. Without one it
  reads the key of its kind (``KEYS``: ``Temperature``, ``Humidity``, ``Illuminance``,
  ``CarbonDioxide``, ``TVOC``, ``PM2.5``) from the one block that has it; when several
  blocks have it (two DS18B20s) the payload is refused as ``path missing`` until a
  ``json_path`` says which.
* ``TempUnit: "F"`` (``SetOption8 1``) converts temperatures to °C; other units
  (humidity %, lux, ppm) have no such setting.
* ``Time`` is the device's **local time without offset**; it is read in the site's time zone
  (``site.timezone``). In a zone with daylight saving the repeated autumn hour is read as
  its first occurrence. A ``Time`` with an offset (``SetOption52 1``) is read as such. A
  ``Time`` before 2001 means the device's clock was never set (Tasmota counts from 1970 until
  NTP answers): the receive time is used instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from collectors.payloads.base import (
    PATH_MISSING,
    Decoded,
    PayloadError,
    Target,
    number_from_json,
    raw_json,
    register_format,
    resolve,
    timestamp_ns,
)
from collectors.payloads.jsondoc import JsonDocument
from gateway.reading import SensorKind, ns_from_datetime

KEYS: dict[SensorKind, str] = {
    SensorKind.TEMPERATURE: "Temperature",
    SensorKind.HUMIDITY: "Humidity",
    SensorKind.LIGHT: "Illuminance",
    SensorKind.CO2: "CarbonDioxide",
    SensorKind.VOC: "TVOC",
    SensorKind.PM2_5: "PM2.5",
}
STATUS_WRAPPER = "StatusSNS"
TIME = "Time"
CLOCK_SET_YEAR = 2001
CLOCK_SET_AFTER_NS = ns_from_datetime(datetime(CLOCK_SET_YEAR, 1, 1, tzinfo=UTC))


def _blocks(doc: object) -> object:
    if isinstance(doc, dict) and isinstance(doc.get(STATUS_WRAPPER), dict):
        return doc[STATUS_WRAPPER]
    return doc


def _by_kind(doc: object, kind: SensorKind) -> tuple[str, object]:
    key = KEYS[kind]
    found = (
        [
            (name, block[key])
            for name, block in doc.items()
            if isinstance(block, dict) and key in block
        ]
        if isinstance(doc, dict)
        else []
    )
    if not found:
        raise PayloadError(PATH_MISSING, f"no sensor block has '{key}'")
    if len(found) > 1:
        names = ", ".join(name for name, _ in found)
        raise PayloadError(PATH_MISSING, f"'{key}' in several blocks ({names}): set json_path")
    return found[0]


@register_format
class TasmotaFormat(JsonDocument):
    """Tasmota ``SENSOR`` telemetry: blocks per driver, local ``Time``, ``TempUnit``."""

    name = "tasmota"

    def check(self, kind: SensorKind, json_path: str | None, field: str | None) -> None:
        super().check(kind, json_path, field)
        if not json_path and kind not in KEYS:
            raise ValueError(
                f"tasmota has no default key for {kind.value}: set json_path (e.g. Switch1)"
            )

    def selector(self, kind: SensorKind, json_path: str | None, field: str | None) -> str | None:
        return json_path or KEYS.get(kind)

    def extract(self, parsed: object, target: Target) -> Decoded:
        doc = _blocks(parsed)
        if target.json_path:
            raw = resolve(doc, target.json_path)
        elif target.kind in KEYS:
            _, raw = _by_kind(doc, target.kind)
        else:
            raise PayloadError(PATH_MISSING, f"no default key for {target.kind.value}")
        value = number_from_json(raw, target.kind)
        if target.kind is SensorKind.TEMPERATURE and _unit(parsed, doc) == "F":
            value = round((value - 32.0) * 5.0 / 9.0, 6)
        return Decoded(value, self._time(parsed, doc, target), raw_json(raw))

    def _time(self, parsed: object, doc: object, target: Target) -> int | None:
        path = target.timestamp_path or TIME
        for where in (parsed, doc):
            try:
                stamp = resolve(where, path)
            except PayloadError:
                continue
            if stamp is None or _before_clock_set(stamp):
                return None
            ts = timestamp_ns(stamp, target.zone)
            return ts if ts >= CLOCK_SET_AFTER_NS else None
        return None


def _before_clock_set(stamp: object) -> bool:
    """A ``Time`` of a device whose clock NTP has not set yet (counted from 1970)."""
    if not isinstance(stamp, str):
        return False
    try:
        return datetime.fromisoformat(stamp.strip()).year < CLOCK_SET_YEAR
    except ValueError:
        return False  # timestamp_ns says what is wrong with it


def _unit(parsed: object, doc: object) -> str | None:
    for where in (doc, parsed):
        if isinstance(where, dict) and isinstance(where.get("TempUnit"), str):
            return str(where["TempUnit"]).strip().upper()
    return None
