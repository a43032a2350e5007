"""Embedded back end: the Store interface over one SQLite file, for sites without InfluxDB.

It keeps InfluxDB's semantics so the two back ends are interchangeable: a reading's key is
(sensor, timestamp, drill id) and writing the same key again overwrites it; series buckets
are aligned to the epoch and empty ones are None. The file is in WAL mode with a busy
timeout, so the gateway and the API can open it at once from two processes.

``present`` answers which readings of a batch the file already holds (key, tags and value),
so that the forwarder, after a write whose outcome it could not see, writes only the rest:
exactly once, as with InfluxDB.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from gateway.reading import Event, Reading, SensorKind
from gateway.store.base import Aggregate, ReadingFilter, SeriesPoint, StoreError
from gateway.store.buckets import bucket_starts, fill_buckets

T = TypeVar("T")

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    sensor        TEXT    NOT NULL,
    ts_ns         INTEGER NOT NULL,
    drill_id      TEXT    NOT NULL DEFAULT '',
    value         REAL    NOT NULL,
    site          TEXT    NOT NULL,
    building      TEXT    NOT NULL,
    room          TEXT    NOT NULL,
    device        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    storage_class TEXT    NOT NULL,
    PRIMARY KEY (sensor, ts_ns, drill_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_by_time ON readings (ts_ns);
CREATE TABLE IF NOT EXISTS events (
    ts_ns INTEGER NOT NULL,
    tags  TEXT    NOT NULL,  -- canonical JSON of Event.all_tags(): with ts_ns, the identity
    kind  TEXT    NOT NULL,
    title TEXT    NOT NULL,
    text  TEXT    NOT NULL,
    PRIMARY KEY (ts_ns, tags)
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (ts_ns);
"""

_READING_COLUMNS = (
    "site, building, room, device, sensor, kind, storage_class, value, ts_ns, drill_id"
)
_FILTER_COLUMNS = ("site", "building", "room", "device", "sensor", "kind")
_AGGREGATES = {
    Aggregate.MEAN: "AVG(value)",
    Aggregate.MIN: "MIN(value)",
    Aggregate.MAX: "MAX(value)",
    Aggregate.COUNT: "COUNT(value)",
    # SQLite takes a bare column from the row that holds the single max(): the newest value.
    Aggregate.LAST: "value, MAX(ts_ns)",
}


def _where(
    flt: ReadingFilter, start_ns: int | None = None, end_ns: int | None = None
) -> tuple[str, list[Any]]:
    conds: list[str] = []
    params: list[Any] = []
    for column in _FILTER_COLUMNS:
        value = getattr(flt, column)
        if value is not None:
            conds.append(f"{column} = ?")
            params.append(value)
    conds.append("drill_id = ?")
    params.append(flt.drill_id or "")
    if start_ns is not None:
        conds.append("ts_ns >= ?")
        params.append(start_ns)
    if end_ns is not None:
        conds.append("ts_ns < ?")
        params.append(end_ns)
    return " WHERE " + " AND ".join(conds), params


def _reading(row: sqlite3.Row) -> Reading:
    return Reading(
        site=row["site"],
        building=row["building"],
        room=row["room"],
        device=row["device"],
        sensor=row["sensor"],
        kind=SensorKind(row["kind"]),
        storage_class=row["storage_class"],
        value=float(row["value"]),
        ts_ns=int(row["ts_ns"]),
        drill_id=row["drill_id"] or None,
    )


def _event_tags(event: Event) -> dict[str, str]:
    # As in InfluxDB, a tag with an empty value does not exist.
    return {k: v for k, v in sorted(event.all_tags().items()) if k and v}


class EmbeddedStore:
    """Store in a SQLite file; every call runs in a worker thread on one locked connection."""

    def __init__(self, path: Path, *, busy_timeout_s: float = 30.0) -> None:
        self._path = Path(path)
        # Another process holding the write lock (a long batch) is waited for, not failed on.
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self._path)!r})"

    # --- plumbing -----------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: once a write returns the spool forgets the batch, so a commit must
            # survive a power cut, not just a crash.
            conn.execute("PRAGMA synchronous = FULL")
            # IMMEDIATE: two processes opening a new file at once take turns creating it.
            conn.executescript(
                f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version = {SCHEMA_VERSION};COMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
            raise
        return conn

    async def _run(self, action: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                if self._closed:
                    raise StoreError(f"{action}: the store is closed", retryable=False)
                if self._conn is None:
                    self._conn = self._open()
                return fn(self._conn)

        try:
            return await asyncio.to_thread(call)
        except (sqlite3.Error, OSError) as exc:
            # Locked past the busy timeout, disk full, I/O error, a folder missing: all can
            # clear up, and a retry is the spool's cheapest way to keep the data.
            raise StoreError(f"{action} in {self._path} failed: {exc}", retryable=True) from None

    # --- writes -------------------------------------------------------------------------

    async def write_readings(self, readings: Sequence[Reading]) -> None:
        if not readings:
            return
        action = f"writing {len(readings)} readings"
        rows = []
        for r in readings:
            value = float(r.value)
            if not math.isfinite(value):
                raise StoreError(
                    f"{action}: sensor {r.sensor}: value {value} is not a finite number",
                    retryable=False,
                    bad_request=True,
                )
            rows.append(
                (
                    r.sensor,
                    r.ts_ns,
                    r.drill_id or "",
                    value,
                    r.site,
                    r.building,
                    r.room,
                    r.device,
                    r.kind.value,
                    r.storage_class,
                )
            )

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO readings (sensor, ts_ns, drill_id, value, site,"
                    " building, room, device, kind, storage_class)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )

        await self._run(action, write)

    async def write_events(self, events: Sequence[Event]) -> None:
        if not events:
            return
        rows = []
        for e in events:
            tags = _event_tags(e)
            rows.append((e.ts_ns, json.dumps(tags, sort_keys=True), e.kind, e.title, e.text))

        def write(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.executemany(
                    "INSERT OR REPLACE INTO events (ts_ns, tags, kind, title, text)"
                    " VALUES (?, ?, ?, ?, ?)",
                    rows,
                )

        await self._run(f"writing {len(events)} events", write)

    async def present(self, readings: Sequence[Reading]) -> set[tuple[str, int, str]]:
        """Keys of ``readings`` held with the same tags and value (primary-key lookups)."""
        if not readings:
            return set()
        wanted = list(readings)
        sql = (
            f"SELECT {_READING_COLUMNS} FROM readings"  # noqa: S608
            " WHERE sensor = ? AND ts_ns = ? AND drill_id = ?"
        )

        def query(conn: sqlite3.Connection) -> set[tuple[str, int, str]]:
            found: set[tuple[str, int, str]] = set()
            for r in wanted:
                row = conn.execute(sql, r.key).fetchone()
                # Reading equality covers every tag, the value, the time and the drill id.
                if row is not None and _reading(row) == replace(r, drill_id=r.drill_id or None):
                    found.add(r.key)
            return found

        return await self._run(f"checking {len(wanted)} readings", query)

    # --- reads --------------------------------------------------------------------------

    async def latest(self, flt: ReadingFilter) -> list[Reading]:
        where, params = _where(flt)
        sql = (
            f"SELECT {_READING_COLUMNS.replace('ts_ns', 'MAX(ts_ns) AS ts_ns')}"  # noqa: S608
            f" FROM readings{where} GROUP BY sensor ORDER BY sensor"
        )

        def query(conn: sqlite3.Connection) -> list[Reading]:
            return [_reading(row) for row in conn.execute(sql, params)]

        return await self._run("reading the latest readings", query)

    async def series(
        self,
        sensor: str,
        start_ns: int,
        end_ns: int,
        step_s: int,
        agg: Aggregate = Aggregate.MEAN,
        drill_id: str | None = None,
        offset_s: int = 0,
    ) -> list[SeriesPoint]:
        if not bucket_starts(start_ns, end_ns, step_s, offset_s):
            return []
        step_ns = int(step_s) * 1_000_000_000
        offset_ns = (int(offset_s) % int(step_s)) * 1_000_000_000
        where, params = _where(ReadingFilter(sensor=sensor, drill_id=drill_id), start_ns, end_ns)
        # ((x % s) + s) % s floors like Python's %, so buckets align to the epoch before 1970
        # too (SQLite's % truncates toward zero); x is the time since the shifted origin.
        since = f"(ts_ns - {offset_ns})"
        sql = (
            f"SELECT ts_ns - (({since} % {step_ns}) + {step_ns}) % {step_ns} AS bucket,"  # noqa: S608
            f" {_AGGREGATES[Aggregate(agg)]} FROM readings{where} GROUP BY bucket"
        )

        def query(conn: sqlite3.Connection) -> dict[int, float | None]:
            return {
                int(row[0]): None if row[1] is None else float(row[1])
                for row in conn.execute(sql, params)
            }

        values = await self._run(f"reading the series of sensor {sensor}", query)
        return fill_buckets(start_ns, end_ns, step_s, values, offset_s)

    async def raw(
        self, flt: ReadingFilter, start_ns: int, end_ns: int, limit: int = 10_000
    ) -> list[Reading]:
        if limit <= 0 or end_ns <= start_ns:
            return []
        where, params = _where(flt, start_ns, end_ns)
        sql = f"SELECT {_READING_COLUMNS} FROM readings{where} ORDER BY ts_ns, sensor LIMIT ?"  # noqa: S608

        def query(conn: sqlite3.Connection) -> list[Reading]:
            return [_reading(row) for row in conn.execute(sql, [*params, int(limit)])]

        return await self._run("reading raw readings", query)

    async def count(self, flt: ReadingFilter, start_ns: int, end_ns: int) -> int:
        if end_ns <= start_ns:
            return 0
        where, params = _where(flt, start_ns, end_ns)

        def query(conn: sqlite3.Connection) -> int:
            return int(conn.execute(f"SELECT COUNT(*) FROM readings{where}", params).fetchone()[0])  # noqa: S608

        return await self._run("counting readings", query)

    async def events(
        self, start_ns: int, end_ns: int, kind: str | None = None, limit: int = 10_000
    ) -> list[Event]:
        if limit <= 0 or end_ns <= start_ns:
            return []
        sql = "SELECT ts_ns, tags, title, text FROM events WHERE ts_ns >= ? AND ts_ns < ?"
        params: list[Any] = [start_ns, end_ns]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY ts_ns LIMIT ?"
        params.append(int(limit))

        def query(conn: sqlite3.Connection) -> list[Event]:
            out = []
            for row in conn.execute(sql, params):
                tags: dict[str, str] = json.loads(row["tags"])
                out.append(
                    Event(
                        ts_ns=int(row["ts_ns"]),
                        kind=tags.pop("kind", ""),
                        title=row["title"],
                        text=row["text"],
                        severity=tags.pop("severity", "info"),
                        drill_id=tags.pop("drill_id", None),
                        tags=tags,
                    )
                )
            return out

        return await self._run("reading events", query)

    async def ping(self) -> None:
        def query(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM readings LIMIT 1").fetchall()

        await self._run("pinging the embedded store", query)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                self._closed = True
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(close)


class _transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (ROLLBACK on error) on an autocommit connection.

    IMMEDIATE takes the write lock up front, so a second process waits on the busy timeout
    instead of failing with "database is locked" when it upgrades a read lock mid-batch.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
