"""The ingest benchmark keeps working (its numbers are reported, never asserted)."""

from __future__ import annotations

from pathlib import Path

from bench.ingest import run


async def test_ingest_benchmark_runs_and_drains_everything(tmp_path: Path) -> None:
    result = await run(readings=400, submitters=4, batch=10, folder=tmp_path)
    assert result["readings"] == 400
    assert {"submit_per_s", "drain_per_s", "p50_ms", "p99_ms", "max_rss_mb"} <= set(result)
    from gateway.store.base import ReadingFilter
    from gateway.store.embedded import EmbeddedStore

    store = EmbeddedStore(tmp_path / "store.sqlite")
    assert await store.count(ReadingFilter(site="bench"), 0, 2**62) == 400
    await store.close()
