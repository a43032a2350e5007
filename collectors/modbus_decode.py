"""Turn the registers a device returned into a point's value, and back (for simulators).

pymodbus hands us one 16-bit integer per register, each big-endian on the wire (byte A
first). A profile's ``byte_order`` says how the device laid its value out over those bytes;
we restore the big-endian order (AB / ABCD) and let pymodbus's ``convert_from_registers``
do the typed decode. Then ``bit``, ``invert``, ``scale`` and ``offset`` apply, in that order.

Fault codes are compared with the raw typed number *before* scaling (an int16 point's
``-32768``, a uint16 point's ``65535``), never with the engineering value, so a fault code
cannot hide a genuine reading that scales to the same number (home-assistant/core#153861).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pymodbus.client.mixin import ModbusClientMixin

from collectors.modbus_profile import ByteOrder, DataType, Point

_CONVERT = ModbusClientMixin.DATATYPE
_PYMODBUS_TYPE = {
    DataType.INT16: _CONVERT.INT16,
    DataType.UINT16: _CONVERT.UINT16,
    DataType.INT32: _CONVERT.INT32,
    DataType.UINT32: _CONVERT.UINT32,
    DataType.FLOAT32: _CONVERT.FLOAT32,
}
_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}
_BYTES_SWAPPED = frozenset({ByteOrder.BA, ByteOrder.BADC, ByteOrder.DCBA})
_WORDS_SWAPPED = frozenset({ByteOrder.CDAB, ByteOrder.DCBA})


@dataclass(frozen=True, slots=True)
class DecodedValue:
    """A point's value as decoded, with what the device actually sent.

    ``raw`` is the typed number before ``invert``/scale/offset (the bit's state for a bool):
    what ``fault_codes`` are compared with. ``words`` are the registers as read (bits as
    0/1). ``value`` is the engineering value; on a fault it is still computed, so a reject
    can show it, but it must not be stored.
    """

    value: float
    raw: int | float
    words: tuple[int, ...]
    fault: bool = False
    is_bits: bool = False

    @property
    def raw_hex(self) -> str:
        """The words as the device sent them: ``0xFF85``, ``0x4124 0x0000``; bits as ``0``/``1``."""
        if self.is_bits:
            return " ".join(str(w) for w in self.words)
        return " ".join(f"0x{w:04X}" for w in self.words)


def _swap_bytes(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def _check_words(point: Point, words: Sequence[int | bool]) -> tuple[int, ...]:
    if len(words) != point.register_count:
        raise ValueError(
            f"{point.data_type} at {point.register_type} {point.address} needs "
            f"{point.register_count} register(s), got {len(words)}"
        )
    out = tuple(int(w) for w in words)
    for w in out:
        if not 0 <= w <= 0xFFFF:
            raise ValueError(f"register value {w} is not a 16-bit word")
    return out


def _word_order(order: ByteOrder) -> Literal["big", "little"]:
    return "little" if order in _WORDS_SWAPPED else "big"


def _scaled(raw: float, point: Point) -> float:
    # Dividing by 10 instead of multiplying by 0.1 gives the double nearest the decimal
    # (-123 / 10 == -12.3, while -123 * 0.1 == -12.300000000000001): stored values stay tidy.
    inverse = 1.0 / point.scale if point.scale else math.inf
    if math.isfinite(inverse) and 1 < abs(inverse) < 1e9 and inverse == round(inverse):
        value = raw / round(inverse)
    else:
        value = raw * point.scale
    return value + point.offset


def decode_raw(point: Point, words: Sequence[int | bool]) -> int | float:
    """The typed number in ``words`` (the bit's state 0/1 for a bool), before any scaling."""
    regs = _check_words(point, words)
    if point.data_type is DataType.BOOL:
        if point.register_type.is_bit:
            return 1 if regs[0] else 0
        if point.bit is not None:
            return (regs[0] >> point.bit) & 1
        return 1 if regs[0] else 0
    order = point.byte_order
    assert order is not None  # the profile validator demands it for every numeric type
    if order in _BYTES_SWAPPED:
        regs = tuple(_swap_bytes(w) for w in regs)
    number = ModbusClientMixin.convert_from_registers(
        list(regs), _PYMODBUS_TYPE[point.data_type], word_order=_word_order(order)
    )
    assert isinstance(number, int | float)
    return number


def decode_point(point: Point, words: Sequence[int] | Sequence[bool]) -> DecodedValue:
    """Decode one point from exactly its registers (or its one bit).

    Raises ValueError only for a wrong number of words or a word outside 0..65535; any
    register contents decode (a float32 may decode to NaN or ±inf: validation refuses those).
    """
    raw = decode_raw(point, words)
    regs = tuple(int(w) for w in words)
    fault = raw in point.fault_codes
    if point.data_type is DataType.BOOL:
        value = float(int(raw) ^ 1 if point.invert else raw)
    else:
        value = _scaled(raw, point)
    return DecodedValue(
        value=value, raw=raw, words=regs, fault=fault, is_bits=point.register_type.is_bit
    )


def encode_raw(point: Point, raw: int | float) -> list[int]:
    """The registers (or one bit as 0/1) that decode to ``raw`` for this point."""
    if point.data_type is DataType.BOOL:
        state = 1 if raw else 0
        if point.register_type.is_bit or point.bit is None:
            return [state]
        return [state << point.bit]
    if point.data_type in _RANGES:
        lo, hi = _RANGES[point.data_type]
        if not isinstance(raw, int) or not lo <= raw <= hi:
            raise ValueError(f"{raw!r} does not fit {point.data_type}")
    order = point.byte_order
    assert order is not None
    words = ModbusClientMixin.convert_to_registers(
        raw, _PYMODBUS_TYPE[point.data_type], word_order=_word_order(order)
    )
    if order in _BYTES_SWAPPED:
        words = [_swap_bytes(w) for w in words]
    return list(words)


def encode_point(point: Point, value: float) -> list[int]:
    """The registers a device of this profile serves for engineering ``value`` (simulators).

    Integer types round to the nearest raw step; a value outside the type raises ValueError.
    """
    if point.data_type is DataType.BOOL:
        active = 1 if value else 0
        return encode_raw(point, active ^ 1 if point.invert else active)
    raw = (value - point.offset) / point.scale
    if point.data_type is DataType.FLOAT32:
        return encode_raw(point, raw)
    return encode_raw(point, round(raw))
