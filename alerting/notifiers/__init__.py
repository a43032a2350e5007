"""Per-service notifiers (Alertmanager's ``notify/<integration>``) on top of apprise."""

from __future__ import annotations

from alerting.notifiers import builtin as _builtin  # noqa: F401  (fills the registry)
from alerting.notifiers.base import Attempt, Notifier
from alerting.notifiers.registry import NOTIFIERS, notifier_for, register

__all__ = ["NOTIFIERS", "Attempt", "Notifier", "notifier_for", "register"]
