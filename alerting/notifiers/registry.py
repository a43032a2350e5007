"""The scheme -> notifier class registry (filled by :mod:`alerting.notifiers.builtin`)."""

from __future__ import annotations

from typing import TypeVar

from alerting.notifiers.base import Notifier
from alerting.redact import register_secrets, scheme_of

N = TypeVar("N", bound=type[Notifier])
NOTIFIERS: dict[str, type[Notifier]] = {}


def register(cls: N) -> N:
    """Class decorator: ``cls`` handles the URLs of each of its ``schemes``."""
    for scheme in cls.schemes:
        if scheme in NOTIFIERS:
            raise ValueError(f"scheme '{scheme}' is already handled by {NOTIFIERS[scheme]}")
        NOTIFIERS[scheme] = cls
    return cls


def notifier_for(url: str) -> Notifier:
    """The notifier for ``url`` (the generic one for schemes without their own class).

    Its secrets are registered with the log scrubber before anything can log the URL.
    """
    cls = NOTIFIERS.get(scheme_of(url), Notifier)
    notifier = cls(url)
    register_secrets(notifier.secrets)
    return notifier
