"""``influx_line``: InfluxDB line protocol, as Telegraf's MQTT output and many DIY nodes send.

One message holds one or more lines ``measurement[,tag=value...] field=value[,field=value...]
[timestamp]``, with the protocol's escapes (``\\,``, ``\\=``, ``\\ `` in names, ``\\"`` and
``\\\\`` in string values) and ``#`` comment lines. Field values: floats, integers (``12i``),
unsigned (``12u``), booleans (``t``/``true``/``F``/...) and quoted strings (a string holding a
number, or a binary word for binary kinds, is read too).

A sensor reads the field named by its ``field`` (default: its kind, e.g. ``temperature``)
from every line whose tags include its ``match`` (``_measurement`` matches the
measurement), so several devices can share one topic. A message with no line matching the
sensor carries nothing for it (no error); matching lines without the field are refused as
``path missing``. Every matching line gives a reading (a batch may hold several times).

The timestamp is read in **nanoseconds**, line protocol's default precision (Telegraf's too);
a publisher writing seconds or milliseconds must be set to nanoseconds (in Telegraf:
``influx`` data format, the default). A line without a timestamp gets the receive time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from collectors.payloads.base import (
    BAD_TIMESTAMP,
    NOT_LINE_PROTOCOL,
    PATH_MISSING,
    Decoded,
    PayloadError,
    PayloadFormat,
    Target,
    number_from_json,
    register_format,
    short,
    text_of,
)
from gateway.reading import SensorKind

MEASUREMENT = "_measurement"
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT = re.compile(r"[+-]?[0-9]+i")
_UINT = re.compile(r"[0-9]+u")
_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})
_MAX_NS = 2**63 - 1

FieldValue = float | int | bool | str


@dataclass(frozen=True, slots=True)
class Line:
    """One parsed line of line protocol."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    ts_ns: int | None


def _bad(number: int, what: str) -> PayloadError:
    return PayloadError(NOT_LINE_PROTOCOL, f"line {number}: {what}")


def _read_name(text: str, i: int, stops: str) -> tuple[str, int]:
    """Read an escaped name up to an unescaped character of ``stops``."""
    out: list[str] = []
    while i < len(text) and text[i] not in stops:
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ",= \\":
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out), i


def _read_string(text: str, i: int, number: int) -> tuple[str, int]:
    """A quoted string value starting at ``text[i] == '"'``."""
    out: list[str] = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise _bad(number, "unterminated string value")


def _scalar(word: str, number: int) -> FieldValue:
    if _INT.fullmatch(word) or _UINT.fullmatch(word):
        return int(word[:-1])
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    if _FLOAT.fullmatch(word):
        return float(word)
    raise _bad(number, f"bad field value {short(word)!r}")


def parse_line(text: str, number: int) -> Line:
    """One line (without its newline); PayloadError(not line protocol) if it is not one."""
    measurement, i = _read_name(text, 0, ", ")
    if not measurement:
        raise _bad(number, "no measurement")
    tags: dict[str, str] = {}
    while i < len(text) and text[i] == ",":
        key, i = _read_name(text, i + 1, "=, ")
        if i >= len(text) or text[i] != "=" or not key:
            raise _bad(number, "a tag needs key=value")
        tag_value, i = _read_name(text, i + 1, ", ")
        if not tag_value:
            raise _bad(number, f"tag '{short(key)}' has no value")
        tags[key] = tag_value
    if i >= len(text) or text[i] != " ":
        raise _bad(number, "no fields")
    while i < len(text) and text[i] == " ":
        i += 1
    fields: dict[str, FieldValue] = {}
    while True:
        key, i = _read_name(text, i, "=, ")
        if i >= len(text) or text[i] != "=" or not key:
            raise _bad(number, "a field needs key=value")
        i += 1
        value: FieldValue
        if i < len(text) and text[i] == '"':
            value, i = _read_string(text, i, number)
        else:
            start = i
            while i < len(text) and text[i] not in ", ":
                i += 1
            value = _scalar(text[start:i], number)
        fields[key] = value
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        break
    rest = text[i:].strip()
    ts: int | None = None
    if rest:
        if not re.fullmatch(r"-?[0-9]{1,19}", rest):
            raise _bad(number, f"bad timestamp {short(rest)!r}")
        ts = int(rest)
    return Line(measurement, tags, fields, ts)


def parse_lines(text: str) -> list[Line]:
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        lines.append(parse_line(line.rstrip("\r"), number))
    if not lines:
        raise PayloadError(NOT_LINE_PROTOCOL, "no lines")
    return lines


def _matches(line: Line, match: tuple[tuple[str, str], ...]) -> bool:
    for key, value in match:
        have = line.measurement if key == MEASUREMENT else line.tags.get(key)
        if have != value:
            return False
    return True


@register_format
class InfluxLineFormat(PayloadFormat):
    """InfluxDB line protocol; a sensor reads a field of the lines its tags match."""

    name = "influx_line"

    def check(self, kind: SensorKind, json_path: str | None, field: str | None) -> None:
        if json_path:
            raise ValueError("influx_line sensors name a 'field' (and 'match'), not a json_path")

    def selector(self, kind: SensorKind, json_path: str | None, field: str | None) -> str | None:
        return field or kind.value

    def parse(self, payload: bytes) -> object:
        return parse_lines(text_of(payload))

    def extract_all(self, parsed: object, target: Target) -> list[Decoded]:
        assert isinstance(parsed, list)
        key = target.field or target.kind.value
        lines = [line for line in parsed if _matches(line, target.match)]
        if not lines:
            return []
        out = []
        for line in lines:
            if key not in line.fields:
                continue
            raw = line.fields[key]
            value = number_from_json(raw, target.kind)
            if line.ts_ns is not None and not 0 < line.ts_ns <= _MAX_NS:
                raise PayloadError(BAD_TIMESTAMP, f"{line.ts_ns} is not a positive epoch in ns")
            out.append(Decoded(value, line.ts_ns, short(str(raw))))
        if not out:
            raise PayloadError(PATH_MISSING, f"no field '{key}' in the matching lines")
        return out

    def extract(self, parsed: object, target: Target) -> Decoded | None:
        got = self.extract_all(parsed, target)
        return got[-1] if got else None
