"""The alert lifecycle: for, keep-firing-for, re-activation, acknowledgement, persistence.

Pure transitions are table-driven on :class:`Lifecycle`; persistence, audit and events run
through :class:`AlertEngine` on SQLite and on the real PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from alerting.engine import AlertEngine, AlertFilter
from alerting.lifecycle import Alert, AlertError, Lifecycle
from alerting.model import AlertState, Condition, NotificationBatch, Severity
from gateway import audit
from gateway.clock import ManualClock
from gateway.reading import Event
from gateway.statedb import StateDB

T0 = 1_767_225_600_000_000_000
S = 1_000_000_000


def cond(
    active: bool = True,
    at: float = 0.0,
    *,
    room: str = "A101",
    rule: str = "band-a",
    kind: str = "band",
    severity: Severity = Severity.WARNING,
    for_s: float = 0.0,
    keep: float = 0.0,
    drill: str | None = None,
    value: float = 62.0,
) -> Condition:
    labels = {"site": "hq", "building": "b1", "room": room, "sensor": f"{room}-rh"}
    if drill:
        labels["drill_id"] = drill
    return Condition(
        rule_id=rule,
        rule_kind=kind,
        severity=severity,
        labels=labels,
        active=active,
        at_ns=T0 + int(at * S),
        value=value,
        summary=f"{room} 相对湿度 {value}%",
        limit="45–55 %RH",
        for_s=for_s,
        keep_firing_for_s=keep,
    )


# --- pure transitions, table-driven ------------------------------------------------------------

# Steps: (seconds, op) with op "on" / "off" (a condition), "tick", "ack", "resolve".
# Expected after each step: (state of the current alert, which alert: "a", "b"... by id).
P, F, A, R = "pending", "firing", "acknowledged", "resolved"
CASES = {
    "for-edge-inclusive": (
        {"for_s": 60},
        [(0, "on"), (59, "on"), (60, "on")],
        [(P, "a"), (P, "a"), (F, "a")],
    ),
    "gap-in-data-does-not-reset-for": (
        {"for_s": 60},
        [(0, "on"), (90, "on")],
        [(P, "a"), (F, "a")],
    ),
    "for-elapses-on-a-tick-without-new-data": (
        {"for_s": 60},
        [(0, "on"), (59, "tick"), (60, "tick")],
        [(P, "a"), (P, "a"), (F, "a")],
    ),
    "inactive-resets-for-quietly": (
        {"for_s": 60},
        [(0, "on"), (30, "off"), (40, "on"), (99, "on"), (100, "on")],
        [(P, "a"), (R, "a"), (P, "b"), (P, "b"), (F, "b")],
    ),
    "keep-firing-for-edge": (
        {"keep": 120},
        [(0, "on"), (10, "off"), (129, "tick"), (130, "tick")],
        [(F, "a"), (F, "a"), (F, "a"), (R, "a")],
    ),
    "keep-firing-for-cancelled-by-return": (
        {"keep": 120},
        [(0, "on"), (10, "off"), (100, "on"), (200, "off"), (319, "off"), (320, "tick")],
        [(F, "a"), (F, "a"), (F, "a"), (F, "a"), (F, "a"), (R, "a")],
    ),
    "no-keep-firing-for-resolves-at-once": (
        {},
        [(0, "on"), (5, "off")],
        [(F, "a"), (R, "a")],
    ),
    "reactivation-after-resolution-is-a-new-alert": (
        {},
        [(0, "on"), (1, "off"), (2, "on")],
        [(F, "a"), (R, "a"), (F, "b")],
    ),
    "ack-lasts-until-resolved": (
        {"keep": 30},
        [(0, "on"), (5, "ack"), (6, "on"), (10, "off"), (39, "tick"), (40, "tick")],
        [(F, "a"), (A, "a"), (A, "a"), (A, "a"), (A, "a"), (R, "a")],
    ),
    "manual-resolve-then-still-active-opens-a-new-alert": (
        {"for_s": 10},
        [(0, "on"), (10, "on"), (20, "resolve"), (21, "on"), (31, "on")],
        [(P, "a"), (F, "a"), (R, "a"), (P, "b"), (F, "b")],
    ),
}


@pytest.mark.parametrize(("opts", "steps", "expected"), CASES.values(), ids=CASES.keys())
def test_transitions(
    opts: dict[str, float], steps: list[tuple[float, str]], expected: list[tuple[str, str]]
) -> None:
    life = Lifecycle()
    names: dict[str, str] = {}
    current: Alert | None = None
    for (t, op), (state, name) in zip(steps, expected, strict=True):
        now = T0 + int(t * S)
        if op in ("on", "off"):
            changes = life.apply(cond(op == "on", t, **opts))  # type: ignore[arg-type]
            current = changes[-1].alert if changes else current
        elif op == "tick":
            life.tick(now)
        elif op == "ack":
            assert current is not None
            life.acknowledge(current.id, "张三", "已通知空调维修", now)
        else:
            assert current is not None
            life.resolve(current.id, "李四", "误报", now)
        assert current is not None
        assert (current.state.value, names.setdefault(name, current.id)) == (state, current.id), (
            f"after {op} at {t}s"
        )
    assert len(set(names.values())) == len(names)  # "a" and "b" are different alerts


def test_only_firing_alerts_can_be_acknowledged() -> None:
    life = Lifecycle()
    [opened] = life.apply(cond(for_s=60))
    with pytest.raises(AlertError, match="pending"):
        life.acknowledge(opened.alert.id, "张三", "", T0)
    with pytest.raises(AlertError, match="no open alert"):
        life.resolve("nope", "张三", "", T0)


def test_one_alert_per_fingerprint_and_drills_apart() -> None:
    life = Lifecycle()
    life.apply(cond(room="A101"))
    life.apply(cond(room="A101", at=1))
    life.apply(cond(room="A102", at=2))
    life.apply(cond(room="A101", at=3, drill="d-7"))
    alerts = life.open_alerts()
    assert len(alerts) == 3
    assert [a.drill for a in alerts] == [False, False, True]
    assert alerts[2].drill_id == "d-7"


# --- the engine: persistence, audit, events ----------------------------------------------------


@dataclass
class Outbox:
    """Stands in for delivery: keeps batches once per id, tells ``contacts``."""

    contacts: list[str] = field(default_factory=lambda: ["alice"])
    batches: list[NotificationBatch] = field(default_factory=list)
    engine: AlertEngine | None = None

    async def enqueue(self, batch: NotificationBatch) -> None:
        if any(b.id == batch.id for b in self.batches):
            return
        self.batches.append(batch)
        if batch.kind != "resolved" and self.engine is not None:
            await self.engine.record_recipients(batch.id, self.contacts)


@dataclass
class Events:
    events: list[Event] = field(default_factory=list)

    async def emit(self, event: Event) -> None:
        self.events.append(event)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def make_engine(db: StateDB, clock: ManualClock, outbox: Outbox, events: Events) -> AlertEngine:
    engine = AlertEngine(db, outbox, events, clock)
    outbox.engine = engine
    return engine


async def test_changes_are_persisted_audited_and_emitted(db: StateDB) -> None:
    clock, outbox, events = ManualClock(T0), Outbox(), Events()
    engine = make_engine(db, clock, outbox, events)

    await engine.process([cond(for_s=30)])
    assert events.events == [] and audit.count(db) == 0  # pending is nobody's news yet
    await engine.process([cond(at=30, for_s=30)])
    [view] = await engine.alerts()
    alert_id = view.alert.id
    assert view.alert.state == AlertState.FIRING and not view.drill
    clock.advance(40)
    await engine.acknowledge(alert_id, "张三", "已派人查看")
    clock.advance(20)
    await engine.resolve(alert_id, "张三", "空调已修复")

    assert events.kinds() == ["alert_fired", "alert_acknowledged", "alert_resolved"]
    fired = events.events[0]
    assert fired.ts_ns == T0 + 30 * S
    assert fired.tags == {
        "site": "hq",
        "building": "b1",
        "room": "A101",
        "sensor": "A101-rh",
        "alert_id": alert_id,
        "rule_id": "band-a",
    }
    assert fired.severity == "warning" and fired.drill_id is None
    entries = audit.entries(db, newest_first=False)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("system:alerting", "alert.fired", alert_id),
        ("张三", "alert.acknowledged", alert_id),
        ("张三", "alert.resolved", alert_id),
    ]
    assert entries[1].detail["note"] == "已派人查看"
    assert audit.verify(db).ok
    [stored] = await engine.alerts(AlertFilter(states=None))
    assert stored.alert.state == AlertState.RESOLVED
    assert (stored.alert.acked_by, stored.alert.acked_note) == ("张三", "已派人查看")


async def test_state_survives_a_restart_including_for_progress(db: StateDB) -> None:
    clock, events = ManualClock(T0), Events()
    first = make_engine(db, clock, Outbox(), events)
    await first.process([cond(for_s=60), cond(room="A102", rule="smoke", kind="smoke")])
    [pending_id] = [v.alert.id for v in await first.alerts() if v.alert.state == "pending"]

    second = make_engine(db, clock, Outbox(), events)
    changes = await second.process([cond(at=60, for_s=60)])

    assert [(c.alert.id, c.after) for c in changes] == [(pending_id, AlertState.FIRING)]
    states = sorted(v.alert.state.value for v in await second.alerts())
    assert states == ["firing", "firing"]
    assert second.counts() == {"pending": 0, "firing": 2, "acknowledged": 0}


async def test_a_pending_alert_restored_after_its_for_needs_a_fresh_reading_to_fire(
    db: StateDB,
) -> None:
    """The gateway stopped while an excursion was pending and restarted after its ``for``:
    the first tick must not fire it (the room may be back in band); the first reading
    decides."""
    clock, events = ManualClock(T0), Events()
    first = make_engine(db, clock, Outbox(), events)
    await first.process([cond(for_s=20)])
    await first.process([cond(at=10, for_s=20, room="A102")])

    second = make_engine(db, clock, Outbox(), events)
    assert await second.tick(T0 + 60 * S) == []
    assert second.counts() == {"pending": 2, "firing": 0, "acknowledged": 0}
    await second.process([cond(False, 61, for_s=20)])  # A101 back in band: closed quietly
    await second.process([cond(at=61, for_s=20, room="A102")])  # A102 still out: fires
    await second.tick(T0 + 62 * S)

    [firing] = await second.alerts()
    assert (firing.alert.labels["room"], firing.alert.state) == ("A102", AlertState.FIRING)
    assert [(e.kind, e.tags["room"]) for e in events.events] == [("alert_fired", "A102")]


async def test_drill_alerts_are_marked_and_never_counted_with_real_ones(db: StateDB) -> None:
    clock = ManualClock(T0)
    engine = make_engine(db, clock, Outbox(), Events())
    await engine.process(
        [cond(), cond(drill="drill-1"), cond(room="A102", drill="drill-1", rule="smoke")]
    )

    real = await engine.alerts()
    drills = await engine.alerts(AlertFilter(drill=True))
    both = await engine.alerts(AlertFilter(drill=None))
    assert [v.drill for v in real] == [False]
    assert sorted(v.alert.drill_id or "" for v in drills) == ["drill-1", "drill-1"]
    assert all(v.drill for v in drills) and len(both) == 3
    assert engine.counts() == {"pending": 0, "firing": 1, "acknowledged": 0}
    assert engine.counts(drill=True) == {"pending": 0, "firing": 2, "acknowledged": 0}
    assert engine.stats()["alerts_fired"] == 1 and engine.stats()["drill_alerts_fired"] == 2


async def test_keep_firing_for_countdown_survives_a_restart(db: StateDB) -> None:
    clock, events = ManualClock(T0), Events()
    first = make_engine(db, clock, Outbox(), events)
    await first.process([cond(keep=120)])
    await first.process([cond(False, 10, keep=120)])

    second = make_engine(db, clock, Outbox(), events)
    await second.tick(T0 + 129 * S)
    assert second.counts()["firing"] == 1
    await second.tick(T0 + 130 * S)

    assert second.counts()["firing"] == 0
    assert events.kinds() == ["alert_fired", "alert_resolved"]
    [resolved] = await second.alerts(AlertFilter(states=(AlertState.RESOLVED,)))
    assert resolved.alert.resolved_at_ns == T0 + 130 * S
