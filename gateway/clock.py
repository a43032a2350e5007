"""A clock that tests can control: time logic never reads the wall clock directly."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall time in nanoseconds since the epoch, and monotonic seconds."""

    def now_ns(self) -> int: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests, simulated hours)."""

    def __init__(self, start_ns: int = 1_767_225_600_000_000_000) -> None:
        self._now = start_ns
        self._mono = 0.0

    def now_ns(self) -> int:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1e9)
        self._mono += seconds


class ScaledClock:
    """Wall time running ``factor`` times faster than real time from ``start_ns``.

    Lets a test or the demo produce an hour of timestamps in seconds while the collectors
    keep their ordinary asyncio scheduling.
    """

    def __init__(self, factor: float, start_ns: int | None = None) -> None:
        self.factor = factor
        self._t0 = time.monotonic()
        self._start_ns = time.time_ns() if start_ns is None else start_ns

    def now_ns(self) -> int:
        return self._start_ns + int((time.monotonic() - self._t0) * self.factor * 1e9)

    def monotonic(self) -> float:
        return time.monotonic()
