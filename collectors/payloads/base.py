"""The payload-format machinery: errors, targets, the registry and shared value parsers.

A format is a small class registered by name. It parses the whole payload once per message
(``parse``) and then pulls each sensor's values out of the parsed form (``extract_all``), so
a JSON payload read by three sensors is decoded once. Every failure, whatever its cause, is a
``PayloadError`` with a stable ``reason`` (one of ``REASONS``: the collector logs once per
reason change) and a ``detail`` for the humans; no other exception leaves a decoder.

A message may also carry nothing for a sensor without being wrong (a Shelly NotifyStatus
that only reports humidity, a Zigbee2MQTT field that is ``null``, line protocol about
another series): ``extract`` then returns None and the collector stores nothing, counts no
error. The families live one per module beside this one; ``collectors.payloads`` imports
them all.

Source timestamps (``timestamp_ns``), shared by the JSON families:

* a number or numeric string: epoch **seconds** when below 1e11 (year 5138), epoch
  **milliseconds** when from 1e11 up to 1e14 (1e11 ms is 1973-03-03). Larger values
  (microseconds, nanoseconds) and values <= 0 are refused, not guessed;
* a string: ISO 8601 with a UTC offset (``2026-01-01T08:00:00+08:00`` or ``...Z``); a
  time without an offset is refused as ambiguous (unless the family says which zone it
  means, as Tasmota's local ``Time`` does, see ``tasmota``).
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import datetime, tzinfo
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
NOT_LINE_PROTOCOL = "not line protocol"
REASONS = frozenset(
    {
        INVALID_UTF8,
        NOT_JSON,
        NOT_A_JSON_OBJECT,
        PATH_MISSING,
        NOT_A_NUMBER,
        BAD_TIMESTAMP,
        NOT_LINE_PROTOCOL,
    }
)

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

    ``reason`` is one of the stable phrases of ``REASONS`` (``invalid UTF-8``, ``not JSON``,
    ``not a JSON object``, ``path missing``, ``not a number``, ``bad timestamp``, ``not line
    protocol``); ``detail`` says what exactly was wrong.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Target:
    """What one sensor reads from a payload.

    ``field`` and ``match`` select a line-protocol value (field key; tag key/value pairs,
    ``_measurement`` for the measurement); ``zone`` is the site's time zone, for families
    whose devices send local time.
    """

    kind: SensorKind
    json_path: str | None = None
    timestamp_path: str | None = None
    field: str | None = None
    match: tuple[tuple[str, str], ...] = ()
    zone: tzinfo | None = dc_field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A sensor's value; ``ts_ns`` is None when the payload carried no source timestamp."""

    value: float
    ts_ns: int | None
    raw: str


class PayloadFormat(ABC):
    """One payload format. Subclass, set ``name`` and decorate with ``@register_format``.

    Besides decoding, a family says where its devices publish (``topics``), which sensor
    kinds it can carry (``check``) and, for JSON families, where a message counter is
    (``sequence``).
    """

    name: ClassVar[str]
    # Formats whose parsed form can be searched with a device's ``sequence_path``.
    supports_sequence: ClassVar[bool] = False

    @abstractmethod
    def parse(self, payload: bytes) -> object:
        """Decode the whole payload once per message; raise PayloadError."""

    @abstractmethod
    def extract(self, parsed: object, target: Target) -> Decoded | None:
        """One sensor's value from ``parse``'s result (None: this message carries none for
        it, which is not an error); raise PayloadError."""

    def extract_all(self, parsed: object, target: Target) -> list[Decoded]:
        """Every value for the sensor in the message (line protocol may hold several)."""
        got = self.extract(parsed, target)
        return [] if got is None else [got]

    def decode(self, payload: bytes, target: Target) -> Decoded:
        """Parse and extract; a message without the sensor's value is PATH_MISSING here."""
        got = self.extract(self.parse(payload), target)
        if got is None:
            raise PayloadError(PATH_MISSING, "the message carries no value for this sensor")
        return got

    def topics(self, topic: str, own: bool, kind: SensorKind) -> list[str]:
        """The topics a sensor listens on. ``topic`` is the sensor's own topic when ``own``,
        else its device's; ValueError for a sensor the family cannot carry."""
        return [topic]

    def check(self, kind: SensorKind, json_path: str | None, field: str | None) -> None:
        """Refuse (ValueError) a sensor this family cannot read; called at site load."""
        if field is not None:
            raise ValueError(f"'field' is for the influx_line format, not {self.name}")

    def selector(self, kind: SensorKind, json_path: str | None, field: str | None) -> str | None:
        """What picks the sensor's value out of a message on its topic: two sensors of a
        device with the same topic and selector would read the same value."""
        return json_path

    def sequence(self, parsed: object, path: str) -> int | None:
        """The message counter at ``path`` (None: absent or not an integer)."""
        return None

    def availability_topic(self, topic: str) -> str | None:
        """Where a device of this family says it is online or offline (None: nowhere)."""
        return None

    def availability(self, payload: bytes) -> bool | None:
        """True online, False offline, None for a message that says neither."""
        return None


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


def format_for(json_path: str | None, name: str | None = None) -> PayloadFormat:
    """The format a sensor's payload is read with: its device's ``format`` when set, else
    ``json`` when the sensor has a JSON path and ``number`` when it has none."""
    if name:
        return get_format(name)
    return get_format("json" if json_path else "number")


def text_of(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(INVALID_UTF8, f"byte {exc.start}") from None


def short(text: str) -> str:
    return text if len(text) <= _RAW_MAX else text[: _RAW_MAX - 3] + "..."


def number_from_text(text: str, kind: SensorKind) -> float:
    """A finite number from text; binary kinds also accept the words of ``BINARY_WORDS``."""
    word = text.strip()
    if kind in BINARY_KINDS and word.lower() in BINARY_WORDS:
        return BINARY_WORDS[word.lower()]
    if not _NUMBER.fullmatch(word):
        raise PayloadError(NOT_A_NUMBER, repr(short(word)))
    value = float(word)
    if not math.isfinite(value):
        raise PayloadError(NOT_A_NUMBER, f"{short(word)!r} is out of range")
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


def timestamp_ns(value: object, zone: tzinfo | None = None) -> int:
    """Nanoseconds since the epoch of a payload timestamp (see the module docstring).

    ``zone``: the zone an ISO 8601 time without offset is in (else such a time is refused).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PayloadError(BAD_TIMESTAMP, f"unsupported type {type(value).__name__}")
    if isinstance(value, str) and not _NUMBER.fullmatch(value.strip()):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise PayloadError(BAD_TIMESTAMP, f"{short(value)!r} is not ISO 8601") from None
        if dt.tzinfo is None and zone is not None:
            dt = dt.replace(tzinfo=zone)
        if dt.tzinfo is None:
            raise PayloadError(BAD_TIMESTAMP, f"{short(value)!r} has no UTC offset")
        try:
            ts = ns_from_datetime(dt)
        except OverflowError:
            raise PayloadError(BAD_TIMESTAMP, f"{short(value)!r} is out of range") from None
        if ts <= 0:
            raise PayloadError(BAD_TIMESTAMP, f"{short(value)!r} is not after 1970")
        return ts
    try:
        # Decimal of the shortest repr keeps "…600.123" exact (a float product would not).
        epoch = Decimal(value.strip() if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise PayloadError(BAD_TIMESTAMP, f"{short(str(value))!r} is not a number") from None
    if not epoch.is_finite() or epoch <= 0:
        raise PayloadError(BAD_TIMESTAMP, f"{short(str(value))} is not a positive epoch")
    if epoch >= MILLISECONDS_BELOW:
        raise PayloadError(BAD_TIMESTAMP, f"{short(str(value))} is too large for epoch s or ms")
    ts = int(epoch * (1_000_000_000 if epoch < SECONDS_BELOW else 1_000_000))
    if ts <= 0:
        # A positive epoch below one nanosecond truncates to the epoch itself.
        raise PayloadError(BAD_TIMESTAMP, f"{short(str(value))} is not a positive epoch")
    return ts


def parse_json(payload: bytes) -> object:
    """A JSON object or array; PayloadError otherwise."""
    text = text_of(payload)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PayloadError(NOT_JSON, f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        # Over-long integer literals and absurd nesting: refused the same way.
        raise PayloadError(NOT_JSON, type(exc).__name__) from None
    if not isinstance(doc, dict | list):
        raise PayloadError(NOT_A_JSON_OBJECT, f"top level is {type(doc).__name__}")
    return doc


def raw_json(value: object) -> str:
    """A JSON value as the device sent it, shortened, for probes and rejects."""
    return short(json.dumps(value, ensure_ascii=False))


def optional_timestamp(doc: object, path: str | None) -> int | None:
    """The source time at ``path``; None when the path is unset, absent or ``null``."""
    if not path:
        return None
    try:
        stamp = resolve(doc, path)
    except PayloadError:
        return None  # no timestamp in this payload: the receive time stands in
    return None if stamp is None else timestamp_ns(stamp)


def json_sequence(doc: object, path: str) -> int | None:
    """An integer message counter at ``path`` (an integral number or digit string)."""
    try:
        value = resolve(doc, path)
    except PayloadError:
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip()) if len(value.strip()) <= 20 else None
    return None


def kinds_named(names: Iterable[SensorKind]) -> str:
    return ", ".join(k.value for k in names)
