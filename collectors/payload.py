"""MQTT payload formats: the bytes of one message -> one sensor's values and source times.

Kept for the imports that predate ``collectors.payloads`` (one module per family since the
field-hardening work); see that package for the families and ``collectors.payloads.base``
for the machinery and the source-timestamp rules.
"""

from __future__ import annotations

import collectors.payloads  # noqa: F401  (registers every family)
from collectors.payloads.base import (
    BAD_TIMESTAMP,
    BINARY_WORDS,
    FORMATS,
    INVALID_UTF8,
    NOT_A_JSON_OBJECT,
    NOT_A_NUMBER,
    NOT_JSON,
    NOT_LINE_PROTOCOL,
    PATH_MISSING,
    REASONS,
    Decoded,
    PayloadError,
    PayloadFormat,
    Target,
    format_for,
    get_format,
    number_from_json,
    number_from_text,
    parse_path,
    register_format,
    resolve,
    timestamp_ns,
)
from collectors.payloads.jsondoc import JsonFormat
from collectors.payloads.number import NumberFormat

__all__ = [
    "BAD_TIMESTAMP",
    "BINARY_WORDS",
    "FORMATS",
    "INVALID_UTF8",
    "NOT_A_JSON_OBJECT",
    "NOT_A_NUMBER",
    "NOT_JSON",
    "NOT_LINE_PROTOCOL",
    "PATH_MISSING",
    "REASONS",
    "Decoded",
    "JsonFormat",
    "NumberFormat",
    "PayloadError",
    "PayloadFormat",
    "Target",
    "format_for",
    "get_format",
    "number_from_json",
    "number_from_text",
    "parse_path",
    "register_format",
    "resolve",
    "timestamp_ns",
]
