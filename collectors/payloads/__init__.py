"""The MQTT payload families, one module each, all registered on import.

``number`` and ``json`` (generic), ``zigbee2mqtt``, ``esphome``, ``tasmota``, ``shelly_ht`` and
``influx_line``. A device picks one with ``format:`` in the site file; without it each sensor
is read as ``json`` when it has a ``json_path`` and as ``number`` otherwise. A new family is
a module here with a ``PayloadFormat`` subclass decorated with ``@register_format``, imported
below, and a folder of decoding cases under ``tests/cases_payload/<family>/``.
"""

from __future__ import annotations

from collectors.payloads import (
    esphome,
    influx_line,
    jsondoc,
    number,
    shelly,
    tasmota,
    zigbee2mqtt,
)
from collectors.payloads.base import (
    FORMATS,
    REASONS,
    Decoded,
    PayloadError,
    PayloadFormat,
    Target,
    format_for,
    get_format,
    register_format,
)
from gateway.reading import SensorKind

__all__ = [
    "FORMATS",
    "REASONS",
    "Decoded",
    "PayloadError",
    "PayloadFormat",
    "Target",
    "check_sensor",
    "esphome",
    "format_for",
    "get_format",
    "influx_line",
    "jsondoc",
    "number",
    "register_format",
    "sensor_selector",
    "shelly",
    "tasmota",
    "zigbee2mqtt",
]


def check_sensor(
    format_name: str | None,
    kind: str,
    topic: str,
    own_topic: bool,
    json_path: str | None,
    field: str | None,
    sequence_path: str | None = None,
    has_match: bool = False,
) -> None:
    """Refuse (ValueError) a sensor its device's payload family cannot read (site load)."""
    if format_name is not None and format_name not in FORMATS:
        raise ValueError(f"unknown payload format '{format_name}' (known: {', '.join(FORMATS)})")
    fmt = format_for(json_path, format_name)
    sensor_kind = SensorKind(kind)
    fmt.check(sensor_kind, json_path, field)
    if has_match and fmt.name != "influx_line":
        raise ValueError(f"'match' is for the influx_line format, not {fmt.name}")
    fmt.topics(topic, own_topic, sensor_kind)
    if sequence_path and not fmt.supports_sequence:
        raise ValueError(f"sequence_path needs a JSON payload, and {fmt.name} is not one")


def sensor_selector(
    format_name: str | None, kind: str, json_path: str | None, field: str | None
) -> str | None:
    """What picks a sensor's value out of a message (for the site's duplicate check)."""
    if format_name is not None and format_name not in FORMATS:
        return json_path
    return format_for(json_path, format_name).selector(SensorKind(kind), json_path, field)
