"""``json``: a JSON object (or array) read by each sensor's ``json_path``.

The path is dotted: ``temperature``, ``SHT30.Temperature``, ``sensors.0.value`` or
``sensors[0].value``; a numeric segment indexes a list (or names a key of an object). The
value may be a number, a bool (1/0) or a string holding a number (or, for binary kinds, one
of the words of ``number``). The device's ``timestamp_path`` names the source timestamp
(epoch s/ms or ISO 8601 with offset, see ``collectors.payloads.base``); a payload without
it (or with ``null`` there) gets the receive time.
"""

from __future__ import annotations

from collectors.payloads.base import (
    PATH_MISSING,
    Decoded,
    PayloadError,
    PayloadFormat,
    Target,
    json_sequence,
    number_from_json,
    optional_timestamp,
    parse_json,
    raw_json,
    register_format,
    resolve,
)
from gateway.reading import SensorKind


class JsonDocument(PayloadFormat):
    """Shared by the JSON families: one parse, a message counter found by path."""

    supports_sequence = True

    def parse(self, payload: bytes) -> object:
        return parse_json(payload)

    def sequence(self, parsed: object, path: str) -> int | None:
        return json_sequence(parsed, path)


@register_format
class JsonFormat(JsonDocument):
    """A JSON document; the sensor's ``json_path`` finds the value, the device's
    ``timestamp_path`` the source time."""

    name = "json"

    def check(self, kind: SensorKind, json_path: str | None, field: str | None) -> None:
        super().check(kind, json_path, field)
        if not json_path:
            raise ValueError("the json format needs a json_path on every sensor")

    def extract(self, parsed: object, target: Target) -> Decoded:
        if not target.json_path:
            raise PayloadError(PATH_MISSING, "the sensor has no json_path")
        raw = resolve(parsed, target.json_path)
        value = number_from_json(raw, target.kind)
        ts = optional_timestamp(parsed, target.timestamp_path)
        return Decoded(value, ts, raw_json(raw))
