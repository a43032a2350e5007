"""Message counters: which jumps are gaps, and which are reboots, wraps or redeliveries."""

from __future__ import annotations

import pytest

from collectors.sequence import SequenceTracker


@pytest.mark.parametrize(
    ("counters", "gaps"),
    [
        ([1, 2, 3, 4], []),
        ([7, 8, 9], []),  # the first counter seen is the baseline, whatever it is
        ([1, 2, 5], [(2, 5, 2)]),
        ([10, 21, 22], [(10, 21, 10)]),
        ([1, 2, 3, 3, 4], []),  # the last message again: a redelivery
        ([1, 2, 3, 2, 3, 4], []),  # older messages redelivered after a reconnect
        ([41, 42, 43, 0, 1, 2], []),  # device reboot: the counter restarts
        ([41, 42, 43, 1, 4], [(1, 4, 2)]),  # after a reboot, a later jump is a gap again
        ([65534, 65535, 0, 1], []),  # a 16-bit counter wraps around
        ([2**32 - 2, 2**32 - 1, 0], []),  # and a 32-bit one
        ([1, 2, 4, 5, 9], [(2, 4, 1), (5, 9, 3)]),  # each jump reported once
    ],
)
def test_gaps(counters: list[int], gaps: list[tuple[int, int, int]]) -> None:
    tracker = SequenceTracker()
    found = [tracker.observe("d1", n) for n in counters]
    assert [(g.last, g.now, g.missed) for g in found if g is not None] == gaps


def test_devices_are_tracked_apart() -> None:
    tracker = SequenceTracker()
    assert tracker.observe("a", 1) is None
    assert tracker.observe("b", 100) is None
    assert tracker.observe("a", 2) is None
    gap = tracker.observe("b", 103)
    assert gap is not None and gap.missed == 2
    assert (tracker.last("a"), tracker.last("b"), tracker.last("c")) == (2, 103, None)
