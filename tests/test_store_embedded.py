"""EmbeddedStore as a file shared by two processes (gateway and API) and across restarts."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.store.base import ReadingFilter, StoreError
from gateway.store.embedded import EmbeddedStore
from tests.test_store import T0, rd

S = 1_000_000_000
EVERYTHING = ReadingFilter()
REPO = Path(__file__).resolve().parent.parent
BATCHES, PER_BATCH = 40, 25

# The other process: opens the same file, writes its batches and reads between them.
OTHER_PROCESS = textwrap.dedent(
    f"""
    import asyncio, sys
    from pathlib import Path
    from gateway.store.base import ReadingFilter
    from gateway.store.embedded import EmbeddedStore
    from tests.test_store import T0, rd

    async def main() -> None:
        store = EmbeddedStore(Path(sys.argv[1]))
        for b in range({BATCHES}):
            batch = [rd("other", T0 + (b * {PER_BATCH} + i) * 1000, float(i))
                     for i in range({PER_BATCH})]
            await store.write_readings(batch)
            if b == 0:
                print("writing", flush=True)
            await store.count(ReadingFilter(), T0, T0 + 10**12)
        await store.close()

    asyncio.run(main())
    """
)


async def test_two_processes_write_and_read_the_same_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    other = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        OTHER_PROCESS,
        str(path),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    store = EmbeddedStore(path)
    try:
        assert other.stdout is not None
        # Start writing once the other process is writing too, so the two really overlap.
        assert await other.stdout.readline() == b"writing\n"
        for b in range(BATCHES):
            batch = [
                rd("mine", T0 + (b * PER_BATCH + i) * 1000, float(i)) for i in range(PER_BATCH)
            ]
            await store.write_readings(batch)
            await store.latest(EVERYTHING)
        _, stderr = await other.communicate()
        assert other.returncode == 0, stderr.decode()
        for sensor in ("mine", "other"):
            flt = ReadingFilter(sensor=sensor)
            assert await store.count(flt, T0, T0 + 10**12) == BATCHES * PER_BATCH
    finally:
        await store.close()


async def test_data_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.sqlite"  # the folder is created on first use
    first = EmbeddedStore(path)
    await first.write_readings([rd("t1", T0, 21.0), rd("t1", T0 + S, 22.0)])
    await first.close()

    again = EmbeddedStore(path)
    try:
        assert await again.latest(EVERYTHING) == [rd("t1", T0 + S, 22.0)]
        await again.write_readings([rd("t1", T0 + 2 * S, 23.0)])
        assert await again.count(EVERYTHING, T0, T0 + 10 * S) == 3
    finally:
        await again.close()
    with sqlite3.connect(path) as conn:
        # WAL lets the API read while the gateway writes.
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_write_blocked_past_the_busy_timeout_is_retryable(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = EmbeddedStore(path, busy_timeout_s=0.2)
    await store.ping()  # creates the file and schema
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process in the middle of a long batch
    try:
        with pytest.raises(StoreError) as caught:
            await store.write_readings([rd("t1", T0, 1.0)])
        assert caught.value.retryable
        assert "locked" in str(caught.value)
        # Readers are not blocked by a writer.
        assert await store.count(EVERYTHING, T0, T0 + S) == 0
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await store.write_readings([rd("t1", T0, 1.0)])  # the retry succeeds once it is free
    assert await store.count(EVERYTHING, T0, T0 + S) == 1
    await store.close()


async def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store.sqlite")
    await store.ping()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.write_readings([rd("t1", T0, 1.0)])


async def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    store = EmbeddedStore(tmp_path / "a-file" / "store.sqlite")
    with pytest.raises(StoreError) as caught:
        await store.ping()
    assert caught.value.retryable
    assert "a-file" in str(caught.value)
    await store.close()
