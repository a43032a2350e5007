"""``shelly_ht``: the Shelly H&T, first generation and Plus (second generation).

Gen1 (``shellies/shellyht-<id>``) publishes plain numbers on
``<prefix>/sensor/temperature``, ``<prefix>/sensor/humidity`` and ``<prefix>/sensor/battery``
(percent). The temperature is in the unit set on the device: set it to °C. The receive time
is the source time.

Gen2/Plus (``shellyplusht-<id>``, its MQTT prefix) publishes JSON-RPC notifications on
``<prefix>/events/rpc``: ``{"method": "NotifyStatus", "params": {"ts": 1767225600.12,
"temperature:0": {"id": 0, "tC": 21.4, "tF": 70.5}, "humidity:0": {"id": 0, "rh": 55.1},
"devicepower:0": {"id": 0, "battery": {"V": 5.9, "percent": 80}}}}``. ``NotifyStatus`` holds
only what changed, so a message without a sensor's component carries nothing for it (no
error); other methods (``NotifyEvent``: going to sleep) carry nothing at all. ``params.ts``
(epoch seconds) is the source time.

In the site file the device's ``topic`` is its prefix; each sensor listens on both forms, so
the keeper need not say which generation it is.
"""

from __future__ import annotations

from collectors.payloads.base import (
    PATH_MISSING,
    Decoded,
    PayloadError,
    PayloadFormat,
    Target,
    number_from_json,
    number_from_text,
    parse_json,
    raw_json,
    register_format,
    resolve,
    short,
    text_of,
    timestamp_ns,
)
from gateway.reading import SensorKind

GEN1_WORDS: dict[SensorKind, str] = {
    SensorKind.TEMPERATURE: "temperature",
    SensorKind.HUMIDITY: "humidity",
    SensorKind.BATTERY: "battery",
}
# Gen2 component -> the value's path inside it.
GEN2_PATHS: dict[SensorKind, tuple[str, str]] = {
    SensorKind.TEMPERATURE: ("temperature:0", "tC"),
    SensorKind.HUMIDITY: ("humidity:0", "rh"),
    SensorKind.BATTERY: ("devicepower:0", "battery.percent"),
}
STATUS_METHODS = frozenset({"NotifyStatus", "NotifyFullStatus"})


def _rpc(text: str) -> dict[str, object] | None:
    """A gen2 notification when the text is one, else None (a gen1 number)."""
    if not text.lstrip().startswith("{"):
        return None
    doc = parse_json(text.encode("utf-8"))
    if not isinstance(doc, dict):
        raise PayloadError(PATH_MISSING, "not a JSON-RPC notification")
    return doc


@register_format
class ShellyHtFormat(PayloadFormat):
    """Shelly H&T: gen1 number topics and gen2 ``events/rpc`` notifications."""

    name = "shelly_ht"

    def check(self, kind: SensorKind, json_path: str | None, field: str | None) -> None:
        super().check(kind, json_path, field)
        if kind not in GEN1_WORDS:
            known = ", ".join(k.value for k in GEN1_WORDS)
            raise ValueError(f"a Shelly H&T has no {kind.value} (it has {known})")
        if json_path:
            raise ValueError("shelly_ht reads its sensors by kind: no json_path")

    def topics(self, topic: str, own: bool, kind: SensorKind) -> list[str]:
        if own:
            return [topic]
        return [f"{topic}/sensor/{GEN1_WORDS[kind]}", f"{topic}/events/rpc"]

    def selector(self, kind: SensorKind, json_path: str | None, field: str | None) -> str | None:
        return kind.value

    def parse(self, payload: bytes) -> object:
        text = text_of(payload)
        rpc = _rpc(text)
        return text if rpc is None else rpc

    def extract(self, parsed: object, target: Target) -> Decoded | None:
        if isinstance(parsed, str):
            return Decoded(number_from_text(parsed, target.kind), None, short(parsed.strip()))
        assert isinstance(parsed, dict)
        method = parsed.get("method")
        if not isinstance(method, str) or method not in STATUS_METHODS:
            return None
        params = parsed.get("params")
        if target.kind not in GEN2_PATHS:
            raise PayloadError(PATH_MISSING, f"a Shelly H&T reports no {target.kind.value}")
        component, path = GEN2_PATHS[target.kind]
        if not isinstance(params, dict):
            raise PayloadError(PATH_MISSING, "the notification has no params object")
        if component not in params:
            return None  # NotifyStatus: this component did not change
        raw = resolve(params[component], path)
        value = number_from_json(raw, target.kind)
        stamp = params.get("ts")
        ts = None if stamp is None else timestamp_ns(stamp)
        return Decoded(value, ts, raw_json(raw))
