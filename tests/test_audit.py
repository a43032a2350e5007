"""The audit log: hash chain, tamper detection, append-only triggers, concurrent writers.

Every test runs on SQLite (a file in tmp_path) and on the real PostgreSQL.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gateway import audit
from gateway.clock import ManualClock
from gateway.statedb import StateDB
from tests.db_helpers import spawn_workers, wait_for


def at(clock: ManualClock) -> datetime:
    ns = clock.now_ns()
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC) + timedelta(
        microseconds=ns % 1_000_000_000 // 1000
    )


def fill(db: StateDB, n: int) -> list[audit.AuditEntry]:
    clock = ManualClock()
    out = []
    for i in range(n):
        out.append(audit.append(db, actor="admin", action="test", detail={"i": i}, now=at(clock)))
        clock.advance(1.5)
    return out


def seqs(entries: list[audit.AuditEntry]) -> list[int]:
    return [e.seq for e in entries]


# --- the chain -------------------------------------------------------------------------------


def test_entries_chain_from_the_first_and_verify(db: StateDB) -> None:
    assert audit.verify(db) == audit.VerifyResult(True, 0, None, "ok", None)
    written = fill(db, 5)

    assert seqs(written) == [1, 2, 3, 4, 5]
    assert written[0].prev_hash == "0" * 64
    for before, after in itertools.pairwise(written):
        assert after.prev_hash == before.hash
    result = audit.verify(db)
    assert result.ok and result.entries == 5 and result.first_bad_seq is None
    assert result.head_hash == written[-1].hash == audit.head(db).hash  # type: ignore[union-attr]
    # What is read back is what was written.
    assert audit.entries(db, limit=10, newest_first=False) == written


# Computed independently from the module docstring's recipe; it must never change, or every
# log written by an earlier version would stop verifying.
KNOWN_HASH = "1d817eea65f5d9e489031edfadf408c5c594ab95322e797e572fb3745b1ebf27"


def test_chinese_text_round_trips_and_hash_follows_the_documented_recipe(db: StateDB) -> None:
    local = datetime(2026, 1, 1, 0, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    detail = {"说明": "确认告警，已通风", "温度": 23.5}
    entry = audit.append(
        db, actor="张三", action="alert.ack", target="库房A/温湿度1", detail=detail, now=local
    )

    doc = {
        "seq": 1,
        "ts": "2025-12-31T16:00:00.000000Z",
        "actor": "张三",
        "action": "alert.ack",
        "target": "库房A/温湿度1",
        "detail": json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        "prev_hash": "0" * 64,
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode("utf-8")).hexdigest() == KNOWN_HASH
    assert entry.hash == KNOWN_HASH
    [stored] = audit.entries(db)
    assert stored == entry
    assert (stored.actor, stored.target, stored.detail) == ("张三", "库房A/温湿度1", detail)
    assert stored.ts == local and stored.ts.tzinfo == UTC
    assert audit.verify(db).ok


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"detail": {"t": float("nan")}}, ValueError),
        ({"detail": {"when": datetime(2026, 1, 1, tzinfo=UTC)}}, ValueError),
        ({"detail": {"ids": {1, 2}}}, ValueError),
        ({"now": datetime(2026, 1, 1)}, ValueError),  # naive: which zone?
        ({"actor": "a\x00b"}, ValueError),
    ],
    ids=["nan", "datetime-in-detail", "set-in-detail", "naive-now", "nul-in-actor"],
)
def test_bad_input_is_refused_and_nothing_is_written(
    db: StateDB, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    args: dict[str, Any] = {"actor": "admin", "action": "test", **kwargs}
    with pytest.raises(error):
        audit.append(db, **args)
    assert audit.count(db) == 0


async def test_async_wrappers(db: StateDB) -> None:
    entry = await audit.append_async(db, actor="api", action="user.create", target="李四")
    assert entry.seq == 1
    assert (await audit.verify_async(db)).ok


# --- tampering -------------------------------------------------------------------------------


def drop_append_only_triggers(db: StateDB) -> None:
    with db.session() as s:
        if db.dialect == "sqlite":
            s.execute(text("DROP TRIGGER audit_log_no_update"))
            s.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            s.execute(text("DROP TRIGGER audit_log_no_change ON audit_log"))


def sql(*statements: str) -> Callable[[StateDB], None]:
    def run(db: StateDB) -> None:
        with db.session() as s:
            for statement in statements:
                # Driver SQL: text() would read ':99' in JSON as a bind parameter.
                s.connection().exec_driver_sql(statement)

    return run


def rewrite_with_fresh_hash(db: StateDB) -> None:
    """A forger who edits entry 3 and recomputes its hash: entry 4's link gives it away."""
    [row] = [e for e in audit.entries(db, limit=10) if e.seq == 3]
    forged = '{"i":99}'
    new_hash = audit.entry_hash(
        seq=3,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail_json=forged,
        prev_hash=row.prev_hash,
    )
    with db.session() as s:
        s.execute(
            text("UPDATE audit_log SET detail = :detail, hash = :hash WHERE seq = 3"),
            {"detail": forged, "hash": new_hash},
        )


def renumber_after_delete(db: StateDB) -> None:
    """Deleting entry 3 and renumbering 4.. to close the gap still breaks the links."""
    sql("DELETE FROM audit_log WHERE seq = 3")(db)
    with db.session() as s:
        for seq in range(4, 7):
            s.execute(
                text("UPDATE audit_log SET seq = :new WHERE seq = :old"),
                {"new": seq - 1, "old": seq},
            )


INSERT_BEFORE_THE_FIRST = (
    "INSERT INTO audit_log (seq, ts, actor, action, target, detail, prev_hash, hash) VALUES "
    "(0, '2026-01-01 00:00:00', 'mallory', 'x', '', '{}', "
    "'0000000000000000000000000000000000000000000000000000000000000000', "
    "'0000000000000000000000000000000000000000000000000000000000000000')"
)

TAMPERING = [
    # (how, first bad seq, words in the reason, entries still good)
    (sql("UPDATE audit_log SET detail = '{\"i\":99}' WHERE seq = 3"), 3, "modified", 2),
    (sql("UPDATE audit_log SET actor = 'mallory' WHERE seq = 6"), 6, "modified", 5),
    (sql("UPDATE audit_log SET hash = prev_hash WHERE seq = 2"), 2, "modified", 1),
    (rewrite_with_fresh_hash, 4, "prev_hash", 3),
    (sql("DELETE FROM audit_log WHERE seq = 3"), 4, "entry 3 missing", 2),
    (sql("DELETE FROM audit_log WHERE seq IN (3, 4)"), 5, "entries 3..4 missing", 2),
    (sql("DELETE FROM audit_log WHERE seq = 1"), 2, "entry 1 missing", 0),
    (renumber_after_delete, 3, "prev_hash", 2),
    (sql(INSERT_BEFORE_THE_FIRST), 0, "not in the chain", 0),
]


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "reason", "good"),
    TAMPERING,
    ids=[
        "detail-edited",
        "actor-edited",
        "hash-edited",
        "rewritten-with-fresh-hash",
        "middle-deleted",
        "two-deleted",
        "first-deleted",
        "renumbered-after-delete",
        "inserted-before-the-first",
    ],
)
@pytest.mark.parametrize("batch_size", [2, 1000])
def test_tampering_is_detected_at_the_first_bad_entry(
    db: StateDB,
    tamper: Callable[[StateDB], None],
    bad_seq: int,
    reason: str,
    good: int,
    batch_size: int,
) -> None:
    fill(db, 6)
    assert audit.verify(db, batch_size=batch_size).ok
    drop_append_only_triggers(db)

    tamper(db)

    result = audit.verify(db, batch_size=batch_size)
    assert not result.ok
    assert result.first_bad_seq == bad_seq
    assert reason in result.reason and str(bad_seq) in result.reason
    assert result.entries == good
    hashes = {e.seq: e.hash for e in audit.entries(db, limit=100)}
    assert result.head_hash == (hashes[good] if good else None)  # last entry still chained


def refused_statements(dialect: str) -> list[str]:
    statements = [
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        "UPDATE audit_log SET detail = '{}'",
        "DELETE FROM audit_log WHERE seq = 3",
        "DELETE FROM audit_log",
    ]
    if dialect == "postgresql":
        statements.append("TRUNCATE audit_log")
    return statements


def test_update_and_delete_are_refused_by_the_database(db: StateDB) -> None:
    fill(db, 3)
    for statement in refused_statements(db.dialect):
        with pytest.raises(DBAPIError, match="append-only"), db.session() as s:
            s.execute(text(statement))
    assert audit.count(db) == 3
    assert audit.verify(db).entries == 3


# --- listing ---------------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
ACTORS = ["alice", "bob"]
ACTIONS = ["login", "alert.ack", "config.change"]


@pytest.fixture
def ten(db: StateDB) -> StateDB:
    for i in range(10):
        audit.append(db, actor=ACTORS[i % 2], action=ACTIONS[i % 3], now=T0 + timedelta(minutes=i))
    return db


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
        ({"limit": 3}, [10, 9, 8]),
        ({"limit": 3, "offset": 3}, [7, 6, 5]),
        ({"limit": 3, "offset": 9}, [1]),
        ({"offset": 10}, []),
        ({"newest_first": False, "limit": 2}, [1, 2]),
        ({"actor": "alice"}, [9, 7, 5, 3, 1]),
        ({"action": "alert.ack"}, [8, 5, 2]),
        ({"actor": "bob", "action": "login"}, [10, 4]),
        ({"actor": "nobody"}, []),
        ({"since": T0 + timedelta(minutes=3), "until": T0 + timedelta(minutes=7)}, [7, 6, 5, 4]),
        ({"since": (T0 + timedelta(minutes=8)).astimezone(ZoneInfo("Asia/Shanghai"))}, [10, 9]),
        ({"until": T0 + timedelta(seconds=30), "actor": "alice"}, [1]),
    ],
)
def test_entries_pages_and_filters(
    ten: StateDB, query: dict[str, Any], expected: list[int]
) -> None:
    assert seqs(audit.entries(ten, **query)) == expected
    filters = {k: v for k, v in query.items() if k in ("actor", "action", "since", "until")}
    total = len(audit.entries(ten, limit=1000, **filters))
    assert audit.count(ten, **filters) == total


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 1001}, {"offset": -1}])
def test_entries_refuses_bad_paging(db: StateDB, query: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        audit.entries(db, **query)


# --- concurrency -----------------------------------------------------------------------------

APPEND_WORKER = """
import pathlib, sys, time
from gateway import audit
from gateway.statedb import StateDB
url, actor, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
ready, go = pathlib.Path(sys.argv[4]), pathlib.Path(sys.argv[5])
db = StateDB(url)
ready.touch()
while not go.exists():
    time.sleep(0.005)
for i in range(n):
    audit.append(db, actor=actor, action="test.append", detail={"i": i})
db.close()
"""


def test_two_processes_and_threads_appending_at_once_keep_one_chain(
    db: StateDB, db_url: str, tmp_path: Path
) -> None:
    per_process, per_thread = 200, 50
    go = tmp_path / "go"
    workers = ["gateway-proc", "api-proc"]
    readies = {name: tmp_path / f"ready-{name}" for name in workers}

    def paths(name: str) -> list[str]:
        return [str(readies[name]), str(go)]

    procs = spawn_workers(
        APPEND_WORKER, [[db_url, name, str(per_process), *paths(name)] for name in workers]
    )
    errors: list[BaseException] = []

    def thread_appends(name: str) -> None:
        try:
            for i in range(per_thread):
                audit.append(db, actor=name, action="test.append", detail={"i": i})
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=thread_appends, args=(f"thread-{k}",)) for k in range(2)]
    try:
        wait_for(lambda: all(r.exists() for r in readies.values()), "workers to start")
        go.touch()
        for t in threads:
            t.start()
        outputs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for t in threads:
            t.join(timeout=240)
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    assert errors == []

    total = 2 * per_process + 2 * per_thread
    everything = audit.entries(db, limit=1000, newest_first=False)
    assert seqs(everything) == list(range(1, total + 1))
    for writer, n in [*((w, per_process) for w in workers), ("thread-0", per_thread)]:
        mine = [e.detail["i"] for e in everything if e.actor == writer]
        assert mine == list(range(n)), writer  # each writer's entries, in its own order
    result = audit.verify(db)
    assert result.ok and result.entries == total
