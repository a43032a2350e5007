"""``number``: the payload is one plain number (``21.5``, ``-3``, ``1e3``).

Binary kinds (smoke, door, water_leak) also accept ``true/false``, ``on/off`` and
``open/closed`` (any case), mapped to 1/0 (door: 1 = open, as in ``gateway.reading.UNITS``).
"""

from __future__ import annotations

from collectors.payloads.base import (
    Decoded,
    PayloadFormat,
    Target,
    number_from_text,
    register_format,
    short,
    text_of,
)


@register_format
class NumberFormat(PayloadFormat):
    """A payload that is one plain number (or a binary word for binary kinds)."""

    name = "number"

    def parse(self, payload: bytes) -> object:
        return text_of(payload)

    def extract(self, parsed: object, target: Target) -> Decoded:
        text = str(parsed)
        return Decoded(number_from_text(text, target.kind), None, short(text.strip()))
