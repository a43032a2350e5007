"""Dispatch timing (group wait, group interval, repeat), resolution notices, exactly-once.

Time moves only by ``ManualClock.advance`` and ``engine.tick``; nothing sleeps. Restart
tests run on SQLite and on the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alerting.dispatch import DispatchConfig
from alerting.engine import AlertEngine
from alerting.model import Condition, NotificationBatch, Severity
from gateway.clock import ManualClock
from gateway.reading import Event
from gateway.statedb import StateDB

T0 = 1_767_225_600_000_000_000
S = 1_000_000_000


def cond(
    clock: ManualClock,
    sensor: str,
    *,
    active: bool = True,
    room: str = "A101",
    kind: str = "band",
    severity: Severity = Severity.WARNING,
    drill: str | None = None,
) -> Condition:
    labels = {"site": "hq", "building": "b1", "room": room, "sensor": sensor}
    if drill:
        labels["drill_id"] = drill
    return Condition(
        rule_id=f"{kind}-rule",
        rule_kind=kind,
        severity=severity,
        labels=labels,
        active=active,
        at_ns=clock.now_ns(),
        value=63.0,
        summary=f"{room} {sensor} 超限",
    )


@dataclass
class Outbox:
    """Stands in for delivery: durable, keeps a batch once per id, tells ``contacts``."""

    contacts: list[str] = field(default_factory=lambda: ["alice", "bob"])
    batches: list[NotificationBatch] = field(default_factory=list)
    engine: AlertEngine | None = None
    down: bool = False

    async def enqueue(self, batch: NotificationBatch) -> None:
        if self.down:
            raise ConnectionError("outbox unavailable")
        if any(b.id == batch.id for b in self.batches):
            return
        self.batches.append(batch)
        if batch.kind != "resolved" and self.engine is not None:
            await self.engine.record_recipients(batch.id, self.contacts)

    def summary(self) -> list[tuple[str, list[str]]]:
        return [(b.kind, sorted(a.labels["sensor"] for a in b.alerts)) for b in self.batches]


class Events:
    async def emit(self, event: Event) -> None:
        pass


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    state.migrate()
    yield state
    state.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateDB]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    state = StateDB(url)
    state.migrate()
    yield state
    state.close()


def engine_on(db: StateDB, clock: ManualClock, outbox: Outbox) -> AlertEngine:
    engine = AlertEngine(db, outbox, Events(), clock, dispatch=DispatchConfig())
    outbox.engine = engine
    return engine


async def run_until(engine: AlertEngine, clock: ManualClock, seconds: float) -> None:
    """Tick once a second for ``seconds`` (what ``run`` does with a real clock)."""
    for _ in range(int(seconds)):
        clock.advance(1)
        await engine.tick()


async def test_group_wait_collects_a_room_into_one_batch(sqlite_db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox()
    engine = engine_on(sqlite_db, clock, outbox)
    await engine.process([cond(clock, "rh-1")])
    await run_until(engine, clock, 3)
    await engine.process([cond(clock, "rh-2"), cond(clock, "t-9", room="B201")])
    await run_until(engine, clock, 5)
    await engine.process([cond(clock, "rh-3"), cond(clock, "smoke-1", severity=Severity.CRITICAL)])
    await run_until(engine, clock, 1)
    assert outbox.batches == []  # 9 s after the first: still collecting

    await run_until(engine, clock, 1)  # 10 s: room A101 warning goes out, with all three
    assert outbox.summary() == [("firing", ["rh-1", "rh-2", "rh-3"])]
    [batch] = outbox.batches
    assert batch.group_labels == {"room": "A101", "severity": "warning"}
    assert batch.recipients is None and batch.drill_id is None

    await run_until(engine, clock, 10)  # each other group waits its own 10 s
    assert outbox.summary()[1:] == [("firing", ["t-9"]), ("firing", ["smoke-1"])]
    assert [b.group_labels["severity"] for b in outbox.batches] == [
        "warning",
        "warning",
        "critical",
    ]
    await run_until(engine, clock, 600)
    assert len(outbox.batches) == 3  # no repeat before the repeat interval


async def test_new_alert_in_a_notified_group_waits_for_the_group_interval(
    sqlite_db: StateDB,
) -> None:
    clock, outbox = ManualClock(T0), Outbox()
    engine = engine_on(sqlite_db, clock, outbox)
    await engine.process([cond(clock, "rh-1")])
    await run_until(engine, clock, 10)
    assert outbox.summary() == [("firing", ["rh-1"])]
    await run_until(engine, clock, 5)
    await engine.process([cond(clock, "rh-2")])
    await run_until(engine, clock, 20)
    await engine.process([cond(clock, "rh-3")])
    await run_until(engine, clock, 34)
    assert len(outbox.batches) == 1  # 59 s since the group's message

    await run_until(engine, clock, 1)
    assert outbox.summary() == [("firing", ["rh-1"]), ("firing", ["rh-2", "rh-3"])]


async def test_repeats_only_while_unacknowledged(sqlite_db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox()
    engine = engine_on(sqlite_db, clock, outbox)
    await engine.process([cond(clock, "rh-1"), cond(clock, "rh-2")])
    await run_until(engine, clock, 10)
    await run_until(engine, clock, 1799)
    assert len(outbox.batches) == 1

    await run_until(engine, clock, 1)  # 30 min after the first message
    assert outbox.summary()[-1] == ("repeat", ["rh-1", "rh-2"])
    rh1 = next(a.id for a in outbox.batches[0].alerts if a.labels["sensor"] == "rh-1")
    await engine.acknowledge(rh1, "张三", "已处理")
    await run_until(engine, clock, 1)
    assert outbox.summary()[-1] == ("acknowledged", ["rh-1"])
    assert outbox.batches[-1].alerts[0].acked_by == "张三"

    await run_until(engine, clock, 1800)
    assert outbox.summary()[-1] == ("repeat", ["rh-2"])  # the acknowledged one is quiet
    rh2 = outbox.batches[-1].alerts[0].id
    await engine.acknowledge(rh2, "李四", "")
    count = len(outbox.batches)
    await run_until(engine, clock, 3 * 1800)
    assert outbox.summary()[count:] == [("acknowledged", ["rh-2"])]


async def test_resolution_notice_goes_once_to_exactly_those_told(sqlite_db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox(contacts=["alice", "bob"])
    engine = engine_on(sqlite_db, clock, outbox)
    await engine.process([cond(clock, "rh-1")])
    await run_until(engine, clock, 10)
    outbox.contacts = ["carol"]  # the duty roster changed after alice and bob were told
    await engine.create_silence(
        ["room=A101"], author="王五", reason="维修", ends_at_ns=clock.now_ns() + 3600 * S
    )
    await engine.process([cond(clock, "rh-2")])  # silenced: nobody is told of it
    await run_until(engine, clock, 100)

    await engine.process([cond(clock, "rh-1", active=False), cond(clock, "rh-2", active=False)])
    await run_until(engine, clock, 300)

    assert outbox.summary() == [("firing", ["rh-1"]), ("resolved", ["rh-1"])]
    assert outbox.batches[-1].recipients == ("alice", "bob")
    assert outbox.batches[-1].alerts[0].state == "resolved"


async def test_drill_and_real_alerts_never_share_a_message(sqlite_db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox()
    engine = engine_on(sqlite_db, clock, outbox)
    await engine.process([cond(clock, "rh-1"), cond(clock, "rh-1", drill="drill-3")])
    await run_until(engine, clock, 10)
    assert sorted((b.drill_id or "", len(b.alerts)) for b in outbox.batches) == [
        ("", 1),
        ("drill-3", 1),
    ]
    assert engine.stats()["notifications_sent"] == 1
    assert engine.stats()["drill_notifications_sent"] == 1


async def test_exactly_once_across_a_restart(db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox()
    first = engine_on(db, clock, outbox)
    await first.process([cond(clock, "rh-1"), cond(clock, "rh-2")])
    await run_until(first, clock, 10)
    assert outbox.summary() == [("firing", ["rh-1", "rh-2"])]

    # A new process on the same state database; evaluation resumes with the same conditions.
    second = engine_on(db, clock, outbox)
    await second.process([cond(clock, "rh-1"), cond(clock, "rh-2")])
    await run_until(second, clock, 600)
    assert len(outbox.batches) == 1

    await second.process([cond(clock, "rh-1", active=False)])
    await run_until(second, clock, 5)
    third = engine_on(db, clock, outbox)
    await run_until(third, clock, 1200)
    assert outbox.summary() == [
        ("firing", ["rh-1", "rh-2"]),
        ("resolved", ["rh-1"]),
        ("repeat", ["rh-2"]),
    ]
    assert outbox.batches[1].recipients == ("alice", "bob")


async def test_batch_written_but_not_handed_over_is_handed_over_after_a_crash(
    db: StateDB,
) -> None:
    clock, outbox = ManualClock(T0), Outbox(down=True)
    first = engine_on(db, clock, outbox)
    await first.process([cond(clock, "smoke-1", kind="smoke", severity=Severity.CRITICAL)])
    await run_until(first, clock, 30)  # the outbox refuses: the batch stays in the nflog
    assert outbox.batches == []

    outbox.down = False
    second = engine_on(db, clock, outbox)  # the crashed process never retried
    await second.process([cond(clock, "smoke-1", kind="smoke", severity=Severity.CRITICAL)])
    await run_until(second, clock, 120)

    assert outbox.summary() == [("firing", ["smoke-1"])]
    assert outbox.batches[0].created_at_ns == T0 + 10 * S  # the batch planned before the crash


async def test_outbox_outage_delays_but_does_not_lose_or_duplicate(sqlite_db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox(down=True)
    engine = engine_on(sqlite_db, clock, outbox)
    await engine.process([cond(clock, "rh-1")])
    await run_until(engine, clock, 60)
    await engine.process([cond(clock, "rh-1", active=False)])
    await run_until(engine, clock, 60)
    outbox.down = False
    await run_until(engine, clock, 60)
    assert outbox.summary() == [("firing", ["rh-1"]), ("resolved", ["rh-1"])]


async def test_resolution_due_at_a_crash_is_sent_after_the_restart(db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox(contacts=["alice"])
    first = engine_on(db, clock, outbox)
    await first.process([cond(clock, "rh-1")])
    await run_until(first, clock, 10)
    await first.process([cond(clock, "rh-1", active=False)])  # resolved, then the crash

    outbox.contacts = ["bob"]
    second = engine_on(db, clock, outbox)
    await run_until(second, clock, 120)
    third = engine_on(db, clock, outbox)
    await run_until(third, clock, 120)

    assert outbox.summary() == [("firing", ["rh-1"]), ("resolved", ["rh-1"])]
    assert outbox.batches[-1].recipients == ("alice",)


async def test_run_drives_dispatch_from_the_clock(sqlite_db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox()
    engine = AlertEngine(sqlite_db, outbox, Events(), clock, tick_s=0.01)
    await engine.process([cond(clock, "rh-1")])
    task = asyncio.create_task(engine.run())
    try:
        clock.advance(10)
        deadline = time.monotonic() + 60
        while not outbox.batches and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert outbox.summary() == [("firing", ["rh-1"])]


async def test_the_rules_files_timing_drives_grouping_and_repeats(
    sqlite_db: StateDB, tmp_path: Path
) -> None:
    """An operator sets the timing in the rules file (``timing:``); the gateway's alerting
    service builds its dispatcher from it, and alerts go out and repeat on that timing."""
    from alerting.rules import Timing
    from alerting.service import AlertingService
    from gateway.metrics import Metrics
    from gateway.resources import demo_site_path
    from gateway.site import load_site

    src = demo_site_path().parent
    for name in ("site.yaml", "contacts.yaml"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    rules = (src / "rules.yaml").read_text(encoding="utf-8")
    for default, mine in (
        ("group_wait: 10s", "group_wait: 0s"),
        ("repeat_interval: 30m", "repeat_interval: 5m"),
    ):
        assert f"  {default}\n" in rules  # the example spells out the defaults
        rules = rules.replace(f"  {default}\n", f"  {mine}\n")
    (tmp_path / "rules.yaml").write_text(rules, encoding="utf-8")
    clock = ManualClock(T0)
    service = AlertingService(
        load_site(tmp_path / "site.yaml"),
        sqlite_db,
        Events(),
        clock,
        Metrics(),
        timezone="Asia/Shanghai",
    )
    assert service.engine.dispatcher.config == DispatchConfig(
        group_wait_s=0, group_interval_s=60, repeat_interval_s=300
    )
    assert Timing().dispatch() == DispatchConfig()  # no timing: section, the defaults

    # The behaviour on that timing: sent at once (no group wait), repeated after 5 minutes.
    outbox = Outbox()
    engine = AlertEngine(
        sqlite_db, outbox, Events(), clock, dispatch=service.engine.dispatcher.config
    )
    outbox.engine = engine
    await engine.process([cond(clock, "rh-1")])
    await engine.tick()
    assert outbox.summary() == [("firing", ["rh-1"])]
    await run_until(engine, clock, 299)
    assert len(outbox.batches) == 1
    await run_until(engine, clock, 1)
    assert outbox.summary() == [("firing", ["rh-1"]), ("repeat", ["rh-1"])]
