"""What InfluxStore puts on the wire: line protocol, InfluxQL literals, and HTTP error mapping.

Pure functions, so the escaping and the error classification are tested without a server.
Line protocol is encoded here rather than with ``influxdb_client.Point`` because Point
writes a tab or a trailing backslash in a tag so that InfluxDB reads back something else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

from gateway.reading import Event, Reading
from gateway.store.base import StoreError

READINGS = "readings"
EVENTS = "events"
EVENT_FIELDS = ("title", "text")
MAX_SERVER_MESSAGE = 300


class LineProtocolError(ValueError):
    """A value cannot be written as line protocol so that InfluxDB reads it back unchanged."""


def _tag_part(text: str, what: str) -> str:
    # InfluxDB 1.x unescapes only '\,', '\=' and '\ ' in tags: a backslash or line break
    # would come back altered, so refuse it rather than store a different id.
    if "\\" in text or "\n" in text or "\r" in text:
        raise LineProtocolError(f"{what} {text!r} contains a backslash or line break")
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _tags(tags: Mapping[str, str]) -> str:
    # Empty values are dropped (line protocol has no empty tag value): such a tag reads back
    # as missing, as it does from the embedded store.
    return "".join(
        f",{_tag_part(k, 'tag key')}={_tag_part(v, 'tag value')}"
        for k, v in sorted(tags.items())
        if k and v
    )


def _string_field(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reading_line(reading: Reading) -> str:
    """``readings,<tags> value=<float> <ts_ns>``."""
    value = float(reading.value)
    if not math.isfinite(value):
        raise LineProtocolError(f"sensor {reading.sensor}: value {value} is not a finite number")
    return f"{READINGS}{_tags(reading.tags())} value={value!r} {int(reading.ts_ns)}"


def event_line(event: Event) -> str:
    """``events,<tags> text="...",title="..." <ts_ns>``."""
    fields = f"text={_string_field(event.text)},title={_string_field(event.title)}"
    return f"{EVENTS}{_tags(event.all_tags())} {fields} {int(event.ts_ns)}"


def _escape_influxql(text: str, quote: str) -> str:
    # InfluxQL's scanner knows exactly four escapes (\\ \' \" \n); a raw newline ends a string.
    return text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")


def quote_ident(name: str) -> str:
    """A double-quoted InfluxQL identifier."""
    return '"' + _escape_influxql(name, '"') + '"'


def quote_literal(value: str) -> str:
    """A single-quoted InfluxQL string literal; any text is safe inside it."""
    return "'" + _escape_influxql(value, "'") + "'"


def parse_retry_after(value: str | None, now_ns: int) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_ns / 1e9)


def scrub(text: str, token: str | None) -> str:
    """``text`` with the token (and each half of a 1.8 ``user:password``) replaced by ***."""
    if not token:
        return text
    secrets = [token, *(part for part in token.split(":", 1)[1:] if len(part) >= 4)]
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def server_message(headers: Mapping[str, str], body: bytes | str | None) -> str:
    """InfluxDB's own words about an error: JSON ``error``/``message``, a header, or the body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    message = ""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        message = str(data.get("error") or data.get("message") or "")
    if not message:
        message = headers.get("X-Influxdb-Error") or headers.get("X-Platform-Error-Code") or text
    message = " ".join(message.split())
    if len(message) > MAX_SERVER_MESSAGE:
        message = message[:MAX_SERVER_MESSAGE] + "..."
    return message


def http_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes | str | None,
    *,
    action: str,
    database: str,
    token: str | None,
    now_ns: int,
) -> StoreError:
    """Map an HTTP error answer of InfluxDB to a StoreError (see StoreError for the flags).

    ``headers`` must look names up case-insensitively (aiohttp's and httpx's headers do).
    ``maybe_applied``: a 400 may be a partial write (InfluxDB stores the good points of a
    batch and refuses the rest) and a 5xx may come after the write took effect (a proxy's
    timeout, a crash after the WAL): both may have applied something. Any other 4xx is a
    refusal before anything was written.
    """
    said = server_message(headers, body)
    prefix = f"{action} failed: HTTP {status}"
    lowered = said.lower()
    if status in (400, 422) or "partial write" in lowered:
        message = f"{prefix}: InfluxDB refused the data: {said}"
        return StoreError(scrub(message, token), retryable=False, bad_request=True, status=status)
    maybe_applied = not 400 <= status < 500
    retry_after = parse_retry_after(headers.get("Retry-After"), now_ns)
    if "database not found" in lowered or "bucket not found" in lowered:
        message = (
            f'{prefix}: {said}. Create it (InfluxDB 1.8: CREATE DATABASE "{database}"; '
            "2.x/3.x: create the bucket and its DBRP mapping); the data is kept and retried"
        )
    elif status in (401, 403):
        message = (
            f"{prefix}: InfluxDB refused the credentials ({said}). Fix ARCHWATCH_INFLUX_TOKEN "
            "(1.8: 'user:password'); the data is kept and retried"
        )
    elif status in (429, 503):
        message = f"{prefix}: InfluxDB is busy ({said}); retry after {retry_after or 'a while'} s"
    else:
        message = f"{prefix}: {said}"
    return StoreError(
        scrub(message, token),
        retryable=True,
        retry_after=retry_after,
        maybe_applied=maybe_applied,
        status=status,
    )
