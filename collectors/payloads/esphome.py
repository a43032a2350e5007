"""``esphome``: ESPHome's MQTT component, one state topic per sensor.

A node with ``topic_prefix`` ``<node>`` publishes ``<node>/sensor/<object id>/state`` (a plain
number, ``nan`` when the sensor could not be read) and ``<node>/binary_sensor/<object
id>/state`` (``ON``/``OFF``; for a door ``ON`` = open, as ESPHome's ``door`` device class).
It announces itself on ``<node>/status``: ``online``, and ``offline`` as its last will.

In the site file the device's ``topic`` is the node's prefix. A sensor without a ``topic``
listens on ``<node>/sensor/<kind>/state`` (``binary_sensor`` for smoke, door and water
leak): name the ESPHome sensor after the kind (``name: "temperature"``) or give the sensor
its full state topic. ``nan`` is refused as ``not a number``: the node says the reading
failed, which must show. The receive time is the source time (the payload has none).
"""

from __future__ import annotations

from collectors.payloads.base import (
    NOT_A_NUMBER,
    Decoded,
    PayloadError,
    PayloadFormat,
    Target,
    number_from_text,
    register_format,
    short,
    text_of,
)
from gateway.reading import BINARY_KINDS, SensorKind

AVAILABILITY = {"online": True, "offline": False}
STATUS_SUFFIX = "/status"


def state_topic(node: str, kind: SensorKind) -> str:
    component = "binary_sensor" if kind in BINARY_KINDS else "sensor"
    return f"{node}/{component}/{kind.value}/state"


def availability_topic(node: str) -> str:
    """Where the node says ``online``/``offline`` (its birth and last-will messages)."""
    return node + STATUS_SUFFIX


def availability(payload: bytes) -> bool | None:
    """True for ``online``, False for ``offline``, None for anything else."""
    try:
        return AVAILABILITY.get(payload.decode("utf-8").strip().lower())
    except UnicodeDecodeError:
        return None


@register_format
class EsphomeFormat(PayloadFormat):
    """One ESPHome state topic per sensor: a number, or ON/OFF for binary sensors."""

    name = "esphome"

    def topics(self, topic: str, own: bool, kind: SensorKind) -> list[str]:
        return [topic] if own else [state_topic(topic, kind)]

    def selector(self, kind: SensorKind, json_path: str | None, field: str | None) -> str | None:
        return kind.value

    def check(self, kind: SensorKind, json_path: str | None, field: str | None) -> None:
        super().check(kind, json_path, field)
        if json_path:
            raise ValueError("esphome state topics are plain values: no json_path")

    def availability_topic(self, topic: str) -> str | None:
        return availability_topic(topic)

    def availability(self, payload: bytes) -> bool | None:
        return availability(payload)

    def parse(self, payload: bytes) -> object:
        return text_of(payload)

    def extract(self, parsed: object, target: Target) -> Decoded:
        text = str(parsed).strip()
        if text.lower() == "nan":
            raise PayloadError(NOT_A_NUMBER, "the node reports nan (the sensor read failed)")
        return Decoded(number_from_text(text, target.kind), None, short(text))
