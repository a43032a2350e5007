"""The latch shared by the limit evaluators (``band``, ``threshold``, ``battery_low``).

An alert trips as soon as a reading crosses the limit but clears only once a reading is
past the limit by the hysteresis margin; a reading in between keeps the previous state, so
a value hovering at the limit does not flap.

The latch is state: after a restart it is taken from the alerts that were active when the
gateway stopped, so a first reading between the limits keeps a restored alert instead of
resolving it.
"""

from __future__ import annotations

from collections.abc import Sequence

from alerting.evaluators.base import PerReadingEvaluator, R, Scope, scope_of
from alerting.lifecycle import Alert
from alerting.rules import RuleBase
from gateway.reading import Reading
from gateway.site import Site


class HysteresisEvaluator(PerReadingEvaluator[R]):
    """A per-reading evaluator whose state per sensor (and drill) latches until cleared."""

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._active: dict[Scope, bool] = {}

    def restore(self, alerts: Sequence[Alert]) -> None:
        for alert in alerts:
            if "sensor" in alert.labels:
                self._active[(alert.labels["sensor"], alert.labels.get("drill_id", ""))] = True

    def latch(self, reading: Reading, *, trip: bool, clear: bool) -> bool:
        """Whether the reading's scope is now active: ``trip`` sets it, ``clear`` resets it,
        neither keeps what it was (inactive for a scope not seen before)."""
        key = scope_of(reading)
        active = trip or (self._active.get(key, False) and not clear)
        self._active[key] = active
        return active
