"""The latch shared by the limit evaluators (``band``, ``threshold``, ``battery_low``).

An alert trips as soon as a reading crosses the limit but clears only once a reading is
past the limit by the hysteresis margin; a reading in between keeps the previous state, so
a value hovering at the limit does not flap.
"""

from __future__ import annotations

from alerting.evaluators.base import PerReadingEvaluator, R, Scope, scope_of
from alerting.rules import RuleBase
from gateway.reading import Reading
from gateway.site import Site


class HysteresisEvaluator(PerReadingEvaluator[R]):
    """A per-reading evaluator whose state per sensor (and drill) latches until cleared."""

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._active: dict[Scope, bool] = {}

    def latch(self, reading: Reading, *, trip: bool, clear: bool) -> bool:
        """Whether the reading's scope is now active: ``trip`` sets it, ``clear`` resets it,
        neither keeps what it was (inactive for a scope not seen before)."""
        key = scope_of(reading)
        active = trip or (self._active.get(key, False) and not clear)
        self._active[key] = active
        return active
