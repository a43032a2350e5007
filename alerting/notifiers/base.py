"""The notifier contract: one class per apprise scheme, knowing its limits and its failures.

apprise reports one boolean per service, so whether a failure is worth retrying cannot come
from apprise itself. It comes from here: each notifier class reads the HTTP status that the
apprise plugin wrote into its captured log lines (``error=503``, ``failed: 400``), and
classifies. No status at all means the request did not complete (connection refused,
timeout, DNS): recoverable. 4xx other than 408/425/429 means the request itself is wrong
(bad token, unknown robot): not recoverable, so the worker fails over to the next URL at
once instead of retrying a hopeless request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from alerting.redact import safe_label, url_secrets

RETRYABLE_4XX = frozenset({408, 425, 429})
_ELLIPSIS = {"zh": "…（已截断）", "en": "… (truncated)"}


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one delivery attempt to one URL (all text already redacted).

    ``invalid``: apprise refused the URL itself (unknown scheme, malformed token).
    ``status``: the HTTP status the plugin logged, when it logged one.
    """

    ok: bool
    status: int | None = None
    invalid: bool = False
    detail: str = ""


class Notifier:
    """Base notifier: the generic fallback behaviour for any apprise scheme.

    Subclasses set :attr:`schemes`, their body limit and whether their URL carries the
    token in the host or the path; override :meth:`classify` when the service differs.
    """

    schemes: ClassVar[tuple[str, ...]] = ()
    channel: ClassVar[str] = "generic"
    body_limit: ClassVar[int] = 4000
    limit_unit: ClassVar[Literal["bytes", "chars"]] = "chars"
    # The body itself carries the title line when the service has no title field.
    has_title: ClassVar[bool] = True
    short: ClassVar[bool] = False
    host_is_secret: ClassVar[bool] = True
    path_is_secret: ClassVar[bool] = True
    status_pattern: ClassVar[re.Pattern[str]] = re.compile(r"error=(\d{3})\b")

    def __init__(self, url: str) -> None:
        self._url = url
        self.scheme = url.partition("://")[0].lower()
        self.secrets = url_secrets(
            url, host_is_secret=self.host_is_secret, path_is_secret=self.path_is_secret
        )

    @property
    def url(self) -> str:
        """The real URL: hand it to apprise only, never to a log or a message."""
        return self._url

    @property
    def label(self) -> str:
        """A loggable name for this URL."""
        return safe_label(self._url, show_host=not self.host_is_secret)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label!r})"

    def status_from_logs(self, lines: list[str]) -> int | None:
        """The last HTTP status the apprise plugin logged, if any."""
        status = None
        for line in lines:
            for match in self.status_pattern.finditer(line):
                status = int(match.group(1))
        return status

    def classify(self, attempt: Attempt) -> bool:
        """Whether a failed ``attempt`` is worth retrying on the same URL."""
        if attempt.invalid:
            return False
        status = attempt.status
        if status is None:
            return True
        if 400 <= status < 500:
            return status in RETRYABLE_4XX
        return True

    def measure(self, text: str) -> int:
        return len(text.encode("utf-8")) if self.limit_unit == "bytes" else len(text)

    def fit(self, title: str, body: str, *, language: str = "zh") -> tuple[str, str]:
        """Title and body as sent: the title folded into the body when the service has no
        title, and the body cut at a character boundary to :attr:`body_limit`."""
        if not self.has_title and title:
            body = f"{title}\n{body}"
            title = ""
        if self.measure(body) <= self.body_limit:
            return title, body
        marker = _ELLIPSIS.get(language, _ELLIPSIS["en"])
        budget = self.body_limit - self.measure(marker)
        cut = body
        # Binary search on characters: a multi-byte character is never split.
        lo, hi = 0, len(body)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.measure(body[:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        cut = body[:lo]
        return title, cut + marker
