"""Keep the secrets of apprise URLs out of every log line, error message and repr.

An apprise URL *is* a credential: ``wecombot://KEY`` posts to the room with nothing else,
``mailto://user:password@host`` logs into the mail server. Redaction therefore works two
ways: :func:`safe_label` shows only what is safe of a URL (scheme, and the host for
self-hosted services), and :class:`SecretScrubber` replaces every registered secret string
in log records, including those apprise and urllib3 write (they log request URLs, with
webhook keys in them, at DEBUG).
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

from gateway.logs import redact as redact_common

MASK = "***"
# Shorter strings (a user "u", a port-like "80") would mask every occurrence of common text;
# they are never shown in labels, only not hunted for inside free text.
MIN_SCRUB_LEN = 4
# Loggers that print request URLs or plugin arguments and so may carry a webhook key.
SCRUBBED_LOGGERS = ("apprise", "urllib3.connectionpool", "requests")


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case ('' when it has none); never raises."""
    head, sep, _ = url.partition("://")
    return head.strip().lower() if sep and head.strip().isascii() else ""


def url_secrets(url: str, *, host_is_secret: bool, path_is_secret: bool) -> frozenset[str]:
    """The parts of ``url`` that must never be shown.

    Always the user, password and every query value; the host when the service puts its
    token there (``wecombot://KEY``); the path segments when it routes by a secret token.
    Both the raw and the percent-decoded form are listed, since either may be logged.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        userinfo, _, hostport = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        found = {user, password}
        found.update(value for _, value in parse_qsl(parts.query, keep_blank_values=False))
        if host_is_secret:
            found.add(hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport)
        if path_is_secret:
            found.update(seg for seg in parts.path.split("/"))
    except ValueError:
        # Unparseable: the whole text after the scheme is the secret.
        found = {url.partition("://")[2]}
    out: set[str] = set()
    for item in found:
        if item:
            out.add(item)
            out.add(unquote(item))
    out.discard("")
    return frozenset(out)


def redact_text(text: str, secrets: frozenset[str] | set[str]) -> str:
    """``text`` with each of ``secrets`` (longest first) and any URL password masked."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= MIN_SCRUB_LEN and secret in text:
            text = text.replace(secret, MASK)
    return redact_common(text)


def safe_label(url: str, *, show_host: bool) -> str:
    """What a log line may say about a URL: ``json://127.0.0.1:8080`` or ``wecombot://***``."""
    scheme = scheme_of(url) or "?"
    if not show_host:
        return f"{scheme}://{MASK}"
    try:
        host = urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        return f"{scheme}://{MASK}"
    return f"{scheme}://{host}" if host else f"{scheme}://{MASK}"


class SecretScrubber(logging.Filter):
    """A logger filter masking every registered secret in the records of that logger.

    Filters on a logger see only records created on that very logger, so one instance is
    attached to each of :data:`SCRUBBED_LOGGERS` by :func:`install_scrubber`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()

    def add(self, secrets: frozenset[str]) -> None:
        with self._lock:
            self._secrets = self._secrets | secrets

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        cleaned = redact_text(message, self._secrets)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # A traceback would print the exception's message unfiltered.
            record.exc_text = redact_text(
                logging.Formatter().formatException(record.exc_info), self._secrets
            )
            record.exc_info = None
        return True


_SCRUBBER = SecretScrubber()
_INSTALLED = False
_INSTALL_LOCK = threading.Lock()


def install_scrubber() -> SecretScrubber:
    """Attach the process-wide scrubber to the loggers that print URLs (idempotent)."""
    global _INSTALLED
    with _INSTALL_LOCK:
        if not _INSTALLED:
            for name in SCRUBBED_LOGGERS:
                logging.getLogger(name).addFilter(_SCRUBBER)
            _INSTALLED = True
    return _SCRUBBER


def register_secrets(secrets: frozenset[str]) -> None:
    """Mask ``secrets`` in the scrubbed loggers from now on."""
    install_scrubber().add(secrets)
