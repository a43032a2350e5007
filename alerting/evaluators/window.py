"""The rolling window shared by ``fluctuation`` and ``rate_of_change``."""

from __future__ import annotations

from alerting.evaluators.base import PerReadingEvaluator, R, RollingMinMax, Scope, scope_of
from alerting.rules import RuleBase
from gateway.reading import Reading
from gateway.site import SensorRef, Site


class WindowEvaluator(PerReadingEvaluator[R]):
    """A per-reading evaluator that keeps a rolling min/max per sensor (and drill)."""

    def __init__(self, rule: RuleBase, site: Site) -> None:
        super().__init__(rule, site)
        self._windows: dict[Scope, RollingMinMax] = {}

    def window(self, reading: Reading, window_ns: int) -> RollingMinMax:
        """The reading's window with the reading added. A scope's window keeps the length it
        was created with (a sensor's room, and so its rule, does not change)."""
        window = self._windows.setdefault(scope_of(reading), RollingMinMax(window_ns))
        window.add(reading.ts_ns, reading.value)
        return window

    def unsure(self, reading: Reading, rule: R) -> bool:
        # Cold, a window holding less than its length of live data may miss the extreme that
        # keeps a restored alert active; an active verdict is sure (the span only grows).
        window = self._windows.get(scope_of(reading))
        return window is not None and self.cold_for(reading.ts_ns, window.window_ns)

    def history_ns(self) -> dict[str, int]:
        return {sensor: self.window_ns(ref) for sensor, ref in self.refs.items()}

    def window_ns(self, ref: SensorRef) -> int:
        """The window of ``ref``'s room."""
        raise NotImplementedError
