"""Logging set-up with a last line of defence against secrets in log lines."""

from __future__ import annotations

import logging
import re
import sys

# scheme://user:password@host -> scheme://user:***@host ; also ?token=... / Authorization: ...
_URL_PASSWORD = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)")
_TOKEN_PARAM = re.compile(r"(?i)(?P<pre>(?:token|password|secret|apikey|access_token)=)[^&\s]+")
_AUTH_HEADER = re.compile(
    r"(?i)(?P<pre>authorization['\"]?\s*[:=]\s*['\"]?(?:token|bearer|basic)\s+)\S+"
)


def redact(text: str) -> str:
    """Mask passwords in URLs, token query parameters and Authorization headers."""
    text = _URL_PASSWORD.sub(r"\g<pre>***", text)
    text = _TOKEN_PARAM.sub(r"\g<pre>***", text)
    return _AUTH_HEADER.sub(r"\g<pre>***", text)


class RedactingFilter(logging.Filter):
    """Applies ``redact`` to every formatted record (messages from libraries included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that log every retry at INFO would bury a real security event.
    for noisy in ("pymodbus", "amqtt", "transitions", "httpx", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
