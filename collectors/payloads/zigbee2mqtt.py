"""``zigbee2mqtt``: one JSON object per device on ``zigbee2mqtt/<friendly name>``.

Zigbee2MQTT publishes the device's whole cached state each time, e.g.
``{"battery": 97, "humidity": 55.1, "temperature": 21.4, "linkquality": 120}`` or
``{"contact": true, "battery": 91}``. A sensor reads the field named after its kind
(``FIELDS``), so a keeper writes no ``json_path``; a ``json_path`` picks another field.

``contact`` is inverted: Zigbee2MQTT's ``contact: true`` means the reed switch is closed,
i.e. the door is **shut**, while archwatch's door value is 1 = open. So ``true`` -> 0,
``false`` -> 1, whichever path reads a field named ``contact``.

``null`` (a value the device has not reported yet) carries nothing: no reading, no error.
Zigbee2MQTT says whether a device answers on ``<topic>/availability`` (``{"state": "online"}``,
or the plain word in its legacy mode) when ``availability`` is enabled in its configuration.

``linkquality`` is radio health, not a quantity archwatch stores; it is not mapped.
The source time is the device's ``timestamp_path`` if set, else Zigbee2MQTT's optional
``last_seen`` (``advanced.last_seen``: ISO_8601, ISO_8601_local or epoch ms); without it the
receive time is used.
"""

from __future__ import annotations

from collectors.payloads.base import (
    PATH_MISSING,
    Decoded,
    PayloadError,
    Target,
    number_from_json,
    optional_timestamp,
    parse_json,
    raw_json,
    register_format,
    resolve,
)
from collectors.payloads.jsondoc import JsonDocument
from gateway.reading import SensorKind

FIELDS: dict[SensorKind, str] = {
    SensorKind.TEMPERATURE: "temperature",
    SensorKind.HUMIDITY: "humidity",
    SensorKind.BATTERY: "battery",
    SensorKind.DOOR: "contact",
    SensorKind.WATER_LEAK: "water_leak",
    SensorKind.SMOKE: "smoke",
    SensorKind.LIGHT: "illuminance",
    SensorKind.CO2: "co2",
    SensorKind.VOC: "voc",
    SensorKind.PM2_5: "pm25",
}
LAST_SEEN = "last_seen"
AVAILABILITY = {"online": True, "offline": False}
CONTACT = "contact"


@register_format
class Zigbee2MqttFormat(JsonDocument):
    """A Zigbee2MQTT device state object; sensors read the field of their kind."""

    name = "zigbee2mqtt"

    def check(self, kind: SensorKind, json_path: str | None, field: str | None) -> None:
        super().check(kind, json_path, field)
        if not json_path and kind not in FIELDS:
            raise ValueError(f"zigbee2mqtt has no default field for {kind.value}: set json_path")

    def selector(self, kind: SensorKind, json_path: str | None, field: str | None) -> str | None:
        return json_path or FIELDS.get(kind)

    def availability_topic(self, topic: str) -> str | None:
        return f"{topic}/availability"

    def availability(self, payload: bytes) -> bool | None:
        try:
            doc = parse_json(payload)
        except PayloadError:
            word = payload.decode("utf-8", errors="replace").strip().lower()
            return AVAILABILITY.get(word)
        state = doc.get("state") if isinstance(doc, dict) else None
        return AVAILABILITY.get(state) if isinstance(state, str) else None

    def extract(self, parsed: object, target: Target) -> Decoded | None:
        path = target.json_path or FIELDS.get(target.kind)
        if path is None:
            raise PayloadError(PATH_MISSING, f"no default field for {target.kind.value}")
        raw = resolve(parsed, path)
        if raw is None:
            return None
        value = number_from_json(raw, target.kind)
        if path.rsplit(".", 1)[-1] == CONTACT and target.kind is SensorKind.DOOR:
            value = 1.0 - value if value in (0.0, 1.0) else value
        ts = optional_timestamp(parsed, target.timestamp_path or LAST_SEEN)
        return Decoded(value, ts, raw_json(raw))
