"""``gateway.store.buckets``: the bucket grid every store and the API's size check share."""

from __future__ import annotations

import pytest

from gateway.store.buckets import bucket_count, bucket_starts

S = 1_000_000_000


@pytest.mark.parametrize(
    ("start_s", "end_s", "step_s", "offset_s", "starts_s"),
    [
        (0, 3600, 3600, 0, [0]),
        (0, 3601, 3600, 0, [0, 3600]),
        (10, 20, 60, 0, [0]),
        # A Shanghai day grid (local midnight at 16:00 UTC): 2026-01-01T15:00Z is in the
        # bucket of 31 December local, 16:00Z starts the next.
        (1767279600, 1767286800, 86400, 57600, [1767196800, 1767283200]),
        (-90, -30, 60, 0, [-120, -60]),  # before 1970: floored, not truncated
        (100, 100, 60, 0, []),
        (100, 50, 60, 0, []),
    ],
)
def test_bucket_count_is_the_number_of_bucket_starts(
    start_s: int, end_s: int, step_s: int, offset_s: int, starts_s: list[int]
) -> None:
    starts = bucket_starts(start_s * S, end_s * S, step_s, offset_s)
    assert starts == [s * S for s in starts_s]
    assert bucket_count(start_s * S, end_s * S, step_s, offset_s) == len(starts_s)


def test_a_step_below_one_second_is_refused_by_both() -> None:
    for call in (bucket_starts, bucket_count):
        with pytest.raises(ValueError, match="step must be at least 1 s"):
            call(0, S, 0)
