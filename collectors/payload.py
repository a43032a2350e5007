"""MQTT payload formats: the bytes of one message -> one sensor's value and source timestamp.

A format is a small class registered by name. It parses the whole payload once per message
(``parse``) and then pulls each sensor's value out of the parsed form (``extract``), so a
JSON payload read by three sensors is decoded once. Every failure, whatever its cause, is a
``PayloadError`` with a stable ``reason`` (the collector logs once per reason change) and a
``detail`` for the humans; no other exception leaves a decoder.

Two formats exist today; device families (Zigbee2MQTT, ESPHome, Tasmota, Shelly) are meant
to be added as further subclasses of ``PayloadFormat`` or ``JsonFormat``:

``number``
    The payload is one plain number (``21.5``, ``-3``, ``1e3``). Binary kinds (smoke, door,
    water_leak) also accept ``true/false``, ``on/off`` and ``open/closed`` (any case), mapped
    to 1/0 (door: 1 = open, as in ``gateway.reading.UNITS``).

``json``
    The payload is a JSON object (or array). The sensor's ``json_path`` is a dotted path:
    ``temperature``, ``SHT30.Temperature``, ``sensors.0.value`` or ``sensors[0].value``; a
    numeric segment indexes a list (or names a key of an object). The value may be a number,
    a bool (1/0) or a string holding a number (or, for binary kinds, one of the words above).
    The device's ``timestamp_path`` names the source timestamp, read as:

    * a number or numeric string: epoch **seconds** when below 1e11 (year 5138), epoch
      **milliseconds** when from 1e11 up to 1e14 (1e11 ms is 1973-03-03). Larger values
      (microseconds, nanoseconds) and values <= 0 are refused, not guessed;
    * a string: ISO 8601 with a UTC offset (``2026-01-01T08:00:00+08:00`` or ``...Z``); a
      time without an offset is refused as ambiguous.

    A payload without the timestamp field (or with ``null`` there) gets the receive time.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import ClassVar

from gateway.reading import BINARY_KINDS, SensorKind, ns_from_datetime

# Stable reasons: the collector keys its log-once state on these.
INVALID_UTF8 = "invalid UTF-8"
NOT_JSON = "not JSON"
NOT_A_JSON_OBJECT = "not a JSON object"
PATH_MISSING = "path missing"
NOT_A_NUMBER = "not a number"
BAD_TIMESTAMP = "bad timestamp"

BINARY_WORDS: dict[str, float] = {
    "true": 1.0,
    "on": 1.0,
    "open": 1.0,
    "false": 0.0,
    "off": 0.0,
    "closed": 0.0,
}
# Epoch magnitude heuristic (see the module docstring).
SECONDS_BELOW = Decimal(10) ** 11
MILLISECONDS_BELOW = Decimal(10) ** 14
_RAW_MAX = 80

# Plain decimal numbers only: Python's float() would also take "1_000", "nan" and "inf".
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SEGMENT = re.compile(r"([^.\[\]]*)((?:\[[0-9]+\])*)")
_INDEX = re.compile(r"\[([0-9]+)\]")


class PayloadError(Exception):
    """A payload that cannot give the sensor's value: the one exception decoders raise.

    ``reason`` is one of a few stable phrases (``invalid UTF-8``, ``not JSON``, ``not a JSON
    object``, ``path missing``, ``not a number``, ``bad timestamp``); ``detail`` says what
    exactly was wrong.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Target:
    """What one sensor reads from a payload."""

    kind: SensorKind
    json_path: str | None = None
    timestamp_path: str | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A sensor's value; ``ts_ns`` is None when the payload carried no source timestamp."""

    value: float
    ts_ns: int | None
    raw: str


class PayloadFormat(ABC):
    """One payload format. Subclass, set ``name`` and decorate with ``@register_format``."""

    name: ClassVar[str]

    @abstractmethod
    def parse(self, payload: bytes) -> object:
        """Decode the whole payload once per message; raise PayloadError."""

    @abstractmethod
    def extract(self, parsed: object, target: Target) -> Decoded:
        """One sensor's value from ``parse``'s result; raise PayloadError."""

    def decode(self, payload: bytes, target: Target) -> Decoded:
        return self.extract(self.parse(payload), target)


FORMATS: dict[str, PayloadFormat] = {}


def register_format(cls: type[PayloadFormat]) -> type[PayloadFormat]:
    """Class decorator: make a payload format available under ``cls.name``."""
    if cls.name in FORMATS:
        raise RuntimeError(f"payload format '{cls.name}' registered twice")
    FORMATS[cls.name] = cls()
    return cls


def get_format(name: str) -> PayloadFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise KeyError(f"unknown payload format '{name}' (known: {', '.join(FORMATS)})") from None


def format_for(json_path: str | None) -> PayloadFormat:
    """The format a sensor's payload is read with: ``json`` when it has a JSON path."""
    return get_format("json" if json_path else "number")


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(INVALID_UTF8, f"byte {exc.start}") from None


def _short(text: str) -> str:
    return text if len(text) <= _RAW_MAX else text[: _RAW_MAX - 3] + "..."


def number_from_text(text: str, kind: SensorKind) -> float:
    """A finite number from text; binary kinds also accept the words of ``BINARY_WORDS``."""
    word = text.strip()
    if kind in BINARY_KINDS and word.lower() in BINARY_WORDS:
        return BINARY_WORDS[word.lower()]
    if not _NUMBER.fullmatch(word):
        raise PayloadError(NOT_A_NUMBER, repr(_short(word)))
    value = float(word)
    if not math.isfinite(value):
        raise PayloadError(NOT_A_NUMBER, f"{_short(word)!r} is out of range")
    return value


def number_from_json(value: object, kind: SensorKind) -> float:
    """A finite number from a JSON value: numbers, bools (1/0) and numeric strings."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            out = float(value)
        except OverflowError:
            raise PayloadError(NOT_A_NUMBER, "integer out of range") from None
        if not math.isfinite(out):
            raise PayloadError(NOT_A_NUMBER, f"{value!r} is not finite")
        return out
    if isinstance(value, str):
        return number_from_text(value, kind)
    what = "null" if value is None else type(value).__name__
    raise PayloadError(NOT_A_NUMBER, f"value is {what}")


@lru_cache(maxsize=1024)
def parse_path(path: str) -> tuple[str | int, ...]:
    """Split ``a.b[0].c`` into steps: str (object key, or list index if numeric) or int
    (explicit ``[n]``: list index only). Raise ValueError for a malformed path."""
    steps: list[str | int] = []
    for segment in path.split("."):
        m = _SEGMENT.fullmatch(segment)
        if m is None or (not m.group(1) and not m.group(2)):
            raise ValueError(f"malformed JSON path '{path}'")
        if m.group(1):
            steps.append(m.group(1))
        steps.extend(int(i) for i in _INDEX.findall(m.group(2)))
    return tuple(steps)


def resolve(doc: object, path: str) -> object:
    """The value at ``path`` in a parsed JSON document; PayloadError(path missing) if absent."""
    try:
        steps = parse_path(path)
    except ValueError as exc:
        raise PayloadError(PATH_MISSING, str(exc)) from None
    node = doc
    for depth, step in enumerate(steps):
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            node = node[step]
        elif isinstance(node, list) and (
            isinstance(step, int) or (step.isascii() and step.isdigit())
        ):
            index = int(step)
            if index >= len(node):
                raise PayloadError(PATH_MISSING, f"'{path}': index {index} out of range")
            node = node[index]
        else:
            where = ".".join(str(s) for s in steps[:depth]) or "top level"
            raise PayloadError(PATH_MISSING, f"'{path}': no '{step}' at {where}")
    return node


def timestamp_ns(value: object) -> int:
    """Nanoseconds since the epoch of a payload timestamp (see the module docstring)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(BAD_TIMESTAMP, f"unsupported type {type(value).__name__}")
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise PayloadError(BAD_TIMESTAMP, f"{_short(value)!r} is not ISO 8601") from None
        if dt.tzinfo is None:
            raise PayloadError(BAD_TIMESTAMP, f"{_short(value)!r} has no UTC offset")
        ts = ns_from_datetime(dt)
        if ts <= 0:
            raise PayloadError(BAD_TIMESTAMP, f"{_short(value)!r} is not after 1970")
        return ts
    try:
        # Decimal of the shortest repr keeps "…600.123" exact (a float product would not).
        epoch = Decimal(value.strip() if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise PayloadError(BAD_TIMESTAMP, f"{_short(str(value))!r} is not a number") from None
    if not epoch.is_finite() or epoch <= 0:
        raise PayloadError(BAD_TIMESTAMP, f"{_short(str(value))} is not a positive epoch")
    if epoch < SECONDS_BELOW:
        return int(epoch * 1_000_000_000)
    if epoch < MILLISECONDS_BELOW:
        return int(epoch * 1_000_000)
    raise PayloadError(BAD_TIMESTAMP, f"{_short(str(value))} is too large for epoch s or ms")


@register_format
class NumberFormat(PayloadFormat):
    """A payload that is one plain number (or a binary word for binary kinds)."""

    name = "number"

    def parse(self, payload: bytes) -> object:
        return _text(payload)

    def extract(self, parsed: object, target: Target) -> Decoded:
        text = str(parsed)
        return Decoded(number_from_text(text, target.kind), None, _short(text.strip()))


@register_format
class JsonFormat(PayloadFormat):
    """A JSON document; the sensor's ``json_path`` finds the value, the device's
    ``timestamp_path`` the source time."""

    name = "json"

    def parse(self, payload: bytes) -> object:
        text = _text(payload)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PayloadError(
                NOT_JSON, f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except (ValueError, RecursionError) as exc:
            # Over-long integer literals and absurd nesting: refused the same way.
            raise PayloadError(NOT_JSON, type(exc).__name__) from None
        if not isinstance(doc, dict | list):
            raise PayloadError(NOT_A_JSON_OBJECT, f"top level is {type(doc).__name__}")
        return doc

    def extract(self, parsed: object, target: Target) -> Decoded:
        if not target.json_path:
            raise PayloadError(PATH_MISSING, "the sensor has no json_path")
        raw = resolve(parsed, target.json_path)
        value = number_from_json(raw, target.kind)
        ts: int | None = None
        if target.timestamp_path:
            try:
                stamp = resolve(parsed, target.timestamp_path)
            except PayloadError:
                stamp = None  # no timestamp in this payload: the receive time stands in
            if stamp is not None:
                ts = timestamp_ns(stamp)
        return Decoded(value, ts, _short(json.dumps(raw, ensure_ascii=False)))
