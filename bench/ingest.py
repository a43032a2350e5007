"""Ingest benchmark: how fast readings become durable, and how fast the spool drains.

Run: ``python -m bench.ingest [--readings N] [--submitters K]``. It prints one JSON line:
``submit_per_s`` (readings made durable in the spool per second, with K concurrent
submitters as MQTT batches would be), ``drain_per_s`` (spool to the embedded store),
``p50_ms``/``p99_ms`` (latency of one submit until durable) and ``max_rss_mb``.
Numbers depend on the disk (the spool fsyncs every group commit); compare runs on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

from gateway.clock import SystemClock
from gateway.forwarder import Forwarder
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.reading import Reading, SensorKind
from gateway.spool import Spool
from gateway.store.embedded import EmbeddedStore


def _reading(i: int, base_ns: int) -> Reading:
    return Reading(
        site="bench",
        building="b1",
        room=f"r{i % 20}",
        device=f"d{i % 200}",
        sensor=f"s{i % 1000}",
        kind=SensorKind.HUMIDITY,
        storage_class="paper",
        value=40.0 + (i % 200) / 10,
        ts_ns=base_ns + i * 1_000_000,
    )


async def run(readings: int, submitters: int, batch: int, folder: Path) -> dict[str, float]:
    clock = SystemClock()
    metrics = Metrics()
    spool = Spool(folder / "spool.sqlite", clock=clock)
    pipeline = Pipeline(spool, clock=clock, metrics=metrics)
    await pipeline.start()
    base = clock.now_ns() - readings * 1_000_000 - 10**9
    latencies: list[float] = []
    per = readings // submitters

    async def submitter(k: int) -> None:
        for start in range(k * per, (k + 1) * per, batch):
            chunk = [_reading(i, base) for i in range(start, min(start + batch, (k + 1) * per))]
            t = time.perf_counter()
            await pipeline.submit(chunk)
            latencies.append((time.perf_counter() - t) * 1000)

    t0 = time.perf_counter()
    await asyncio.gather(*(submitter(k) for k in range(submitters)))
    submit_s = time.perf_counter() - t0
    store = EmbeddedStore(folder / "store.sqlite")
    forwarder = Forwarder(spool, store, clock=clock, metrics=metrics, batch_size=5000)
    t1 = time.perf_counter()
    while await forwarder.drain_once():
        pass
    drain_s = time.perf_counter() - t1
    await pipeline.close()
    await spool.close()
    await store.close()
    q = statistics.quantiles(latencies, n=100)
    return {
        "readings": per * submitters,
        "submitters": submitters,
        "submit_per_s": round(per * submitters / submit_s),
        "drain_per_s": round(per * submitters / drain_s),
        "p50_ms": round(q[49], 2),
        "p99_ms": round(q[98], 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--submitters", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10, help="readings per submit call")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archwatch-bench-") as folder:
        result = asyncio.run(run(args.readings, args.submitters, args.batch, Path(folder)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
