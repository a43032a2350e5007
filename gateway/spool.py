"""The durable spool: validated readings wait here, in their own SQLite file, for the store.

A collector acknowledges its source (MQTT PUBACK, the next Modbus poll) only after
``append`` returns, so the spool is what makes acknowledgement safe: every write is one
transaction in WAL mode with ``synchronous=FULL``, committed to disk before the call returns,
and a process killed at any instant leaves either the whole batch or none of it.

Rows stay after they are forwarded (marked sent) for the de-duplication window, so a message
redelivered after its first copy reached the store is still recognised; ``purge`` then removes
them. Readings the store refuses outright move to the ``dead_letter`` table and are kept.

Before the forwarder sends a batch it marks the batch's rows in flight (``mark_in_flight``,
the ``in_flight`` table, committed like every other change); ``mark_sent`` and
``dead_letter`` clear the mark in the same transaction that settles the rows. A row still
marked in flight when a process starts (``in_flight``) was perhaps written to the store by a
process that died before it could record the answer: the forwarder asks the store which of
those it holds instead of sending them again, which makes the write path exactly once.

All SQLite work runs on one dedicated thread: the event loop never blocks on disk, and the
connection is only ever touched by the thread that opened it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from gateway.clock import Clock
from gateway.reading import Reading

T = TypeVar("T")

DEFAULT_DEDUP_WINDOW_S = 48 * 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    drill_id TEXT NOT NULL,
    body TEXT NOT NULL,
    received_ns INTEGER NOT NULL,
    sent_ns INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS spool_key ON spool (sensor, ts_ns, drill_id);
CREATE INDEX IF NOT EXISTS spool_unsent ON spool (ts_ns, id) WHERE sent_ns IS NULL;
CREATE INDEX IF NOT EXISTS spool_sent ON spool (sent_ns) WHERE sent_ns IS NOT NULL;
-- Rows of the batch being written: the store may hold them although they are not marked sent.
CREATE TABLE IF NOT EXISTS in_flight (
    id INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY,
    sensor TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    drill_id TEXT NOT NULL,
    body TEXT NOT NULL,
    received_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    dead_ns INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class SpooledReading:
    """A reading waiting in the spool; ``id`` is what ``mark_sent``/``dead_letter`` take."""

    id: int
    reading: Reading


class Spool:
    """Durable FIFO of validated readings (ordered by source timestamp) with de-duplication.

    Owned by one process: the unsent-row count is kept in memory after the first open.
    """

    def __init__(
        self, path: Path, *, clock: Clock, dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S
    ) -> None:
        self._path = path
        self._clock = clock
        self._window_ns = int(dedup_window_s * 1e9)
        # One worker: SQLite calls are serialised and stay on the thread that opened it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool")
        self._conn: sqlite3.Connection | None = None
        self._depth = 0
        self._closed = False

    # -- thread side -------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            unsent = "SELECT count(*) FROM spool WHERE sent_ns IS NULL"
            self._depth = conn.execute(unsent).fetchone()[0]
            self._conn = conn
        return self._conn

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._db()
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) can leave the transaction open; never carry it over.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    def _changes(self, sql: str, rows: list[tuple[object, ...]]) -> int:
        """Run ``sql`` once per row in one transaction; the number of rows it changed."""
        return self._transaction(lambda conn: conn.executemany(sql, rows).rowcount)

    def _append(self, readings: Sequence[Reading]) -> list[bool]:
        now = self._clock.now_ns()

        def work(conn: sqlite3.Connection) -> list[bool]:
            new: list[bool] = []
            for r in readings:
                cur = conn.execute(
                    "INSERT INTO spool (sensor, ts_ns, drill_id, body, received_ns)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (r.sensor, r.ts_ns, r.drill_id or "", json.dumps(r.to_json()), now),
                )
                new.append(cur.rowcount == 1)
            return new

        new = self._transaction(work)
        self._depth += sum(new)
        return new

    def _next_batch(self, limit: int) -> list[SpooledReading]:
        rows = (
            self._db()
            .execute(
                "SELECT id, body FROM spool WHERE sent_ns IS NULL ORDER BY ts_ns, id LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [SpooledReading(row[0], Reading.from_json(json.loads(row[1]))) for row in rows]

    def _in_flight(self, limit: int) -> list[SpooledReading]:
        rows = (
            self._db()
            .execute(
                "SELECT spool.id, spool.body FROM in_flight JOIN spool ON spool.id = in_flight.id"
                " WHERE spool.sent_ns IS NULL ORDER BY spool.ts_ns, spool.id LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [SpooledReading(row[0], Reading.from_json(json.loads(row[1]))) for row in rows]

    def _mark_in_flight(self, ids: Sequence[int]) -> int:
        return self._changes(
            "INSERT OR IGNORE INTO in_flight (id)"
            " SELECT id FROM spool WHERE id = ? AND sent_ns IS NULL",
            [(i,) for i in ids],
        )

    def _mark_sent(self, ids: Sequence[int]) -> int:
        now = self._clock.now_ns()

        def work(conn: sqlite3.Connection) -> int:
            changed = conn.executemany(
                "UPDATE spool SET sent_ns = ? WHERE id = ? AND sent_ns IS NULL",
                [(now, i) for i in ids],
            ).rowcount
            conn.executemany("DELETE FROM in_flight WHERE id = ?", [(i,) for i in ids])
            return changed

        changed = self._transaction(work)
        self._depth -= changed
        return changed

    def _dead_letter(self, ids: Sequence[int], reason: str) -> int:
        now = self._clock.now_ns()

        def work(conn: sqlite3.Connection) -> int:
            conn.executemany(
                "INSERT INTO dead_letter"
                " (id, sensor, ts_ns, drill_id, body, received_ns, reason, dead_ns)"
                " SELECT id, sensor, ts_ns, drill_id, body, received_ns, ?, ?"
                " FROM spool WHERE id = ? AND sent_ns IS NULL",
                ((reason, now, i) for i in ids),
            )
            moved = conn.executemany(
                "DELETE FROM spool WHERE id = ? AND sent_ns IS NULL", ((i,) for i in ids)
            ).rowcount
            conn.executemany("DELETE FROM in_flight WHERE id = ?", ((i,) for i in ids))
            return moved

        moved = self._transaction(work)
        self._depth -= moved
        return moved

    def _purge(self) -> int:
        cutoff = self._clock.now_ns() - self._window_ns
        return self._changes(
            "DELETE FROM spool WHERE sent_ns IS NOT NULL AND sent_ns < ?", [(cutoff,)]
        )

    def _unsent(self) -> int:
        self._db()  # the count is read when the file is first opened
        return self._depth

    def _scalar(self, sql: str) -> int:
        value: int = self._db().execute(sql).fetchone()[0]
        return value

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._closed:
            raise RuntimeError("spool is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- public, async -----------------------------------------------------------------------

    async def append(self, readings: Sequence[Reading]) -> tuple[int, int]:
        """Store ``readings`` in one transaction, durable on return: (accepted, duplicates).

        A reading whose key (sensor, ts_ns, drill_id) is still in the spool, unsent or sent
        within the de-duplication window, is a duplicate and ignored (also within one batch).
        """
        new = await self.append_each(readings)
        accepted = sum(new)
        return accepted, len(new) - accepted

    async def append_each(self, readings: Sequence[Reading]) -> list[bool]:
        """Like ``append``, telling for each reading whether it was new (not a duplicate)."""
        if not readings:
            return []
        return await self._run(self._append, list(readings))

    async def next_batch(self, limit: int) -> list[SpooledReading]:
        """Up to ``limit`` unsent readings, oldest source timestamp first, ties by arrival."""
        return await self._run(self._next_batch, limit)

    async def mark_in_flight(self, ids: Iterable[int]) -> int:
        """Record, durably, that these unsent readings are about to be written to the store;
        returns how many were newly marked. ``mark_sent`` and ``dead_letter`` clear it."""
        return await self._run(self._mark_in_flight, list(ids))

    async def in_flight(self, limit: int) -> list[SpooledReading]:
        """Up to ``limit`` unsent readings marked in flight, oldest first: the store may or
        may not hold them (a crash or an unanswered write came between)."""
        return await self._run(self._in_flight, limit)

    async def mark_sent(self, ids: Iterable[int]) -> int:
        """Mark readings as stored (clearing their in-flight mark); they stay for
        de-duplication until ``purge``. Returns how many were unsent."""
        return await self._run(self._mark_sent, list(ids))

    async def dead_letter(self, ids: Iterable[int], reason: str) -> int:
        """Move unsent readings to the ``dead_letter`` table with ``reason`` (clearing their
        in-flight mark); returns how many."""
        return await self._run(self._dead_letter, list(ids), reason)

    async def depth(self) -> int:
        """Readings not yet forwarded."""
        return await self._run(self._unsent)

    async def dead_letter_count(self) -> int:
        return await self._run(self._scalar, "SELECT count(*) FROM dead_letter")

    async def purge(self) -> int:
        """Delete forwarded readings older than the de-duplication window; returns how many."""
        return await self._run(self._purge)

    async def close(self) -> None:
        if self._closed:
            return
        # Refuse new calls first; calls already queued on the spool thread finish before this.
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)
