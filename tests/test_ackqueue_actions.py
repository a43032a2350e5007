"""The operator-action queue applies resolutions as well as acknowledgements; the engine
re-reads silences another process wrote; the shared silence rules; exact label filters.

Queue and filter tests run on SQLite and on the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from alerting import state_models
from alerting.acklink import AckLinks, AckSigner, Check, Verdict
from alerting.ackqueue import (
    QUEUE_LOCK_KEY,
    AckQueue,
    AckRequest,
    audit_actor,
    pending_in,
    queue_action,
    requests_for,
)
from alerting.dispatch import DispatchConfig
from alerting.engine import AlertEngine, new_silence
from alerting.model import AlertState, Condition, NotificationBatch, Severity
from gateway import audit
from gateway.clock import ManualClock
from gateway.reading import Event
from gateway.statedb import StateDB

T0 = 1_767_225_600_000_000_000
S = 1_000_000_000
DAY = 86_400


@dataclass
class Sink:
    batches: list[NotificationBatch] = field(default_factory=list)

    async def enqueue(self, batch: NotificationBatch) -> None:
        self.batches.append(batch)

    def told(self) -> list[tuple[str, str]]:
        return [(b.kind, a.labels["room"]) for b in self.batches for a in b.alerts]


@dataclass
class Events:
    events: list[Event] = field(default_factory=list)

    async def emit(self, event: Event) -> None:
        self.events.append(event)


def cond(clock: ManualClock, room: str = "a101", building: str = "b1") -> Condition:
    return Condition(
        rule_id="rh-band",
        rule_kind="band",
        severity=Severity.CRITICAL,
        labels={"site": "hq", "building": building, "room": room},
        active=True,
        at_ns=clock.now_ns(),
        value=62.0,
        summary=f"{room} 相对湿度 62%",
    )


@dataclass
class Rig:
    db: StateDB
    clock: ManualClock
    sink: Sink
    engine: AlertEngine
    queue: AckQueue

    async def fire(self, room: str = "a101", building: str = "b1") -> str:
        [*_, change] = await self.engine.process([cond(self.clock, room, building)])
        assert change.after == AlertState.FIRING
        return change.alert.id

    def enqueue(
        self, alert_id: str, action: str, user: str, note: str = "", via: str = "api"
    ) -> int:
        with self.db.session(write=True) as session:
            return queue_action(
                session,
                alert_id=alert_id,
                user=user,
                note=note,
                via=via,
                action=action,  # type: ignore[arg-type]
                now_ns=self.clock.now_ns(),
            )

    async def tick(self, seconds: int = 1) -> None:
        for _ in range(seconds):
            self.clock.advance(1)
            for batch in await self.engine.tick():
                # Delivery reports who it told: they get the resolution notice.
                await self.engine.record_recipients(batch.id, ["duty-officer"])


def make_rig(db: StateDB) -> Rig:
    clock, sink = ManualClock(T0), Sink()
    engine = AlertEngine(db, sink, Events(), clock, dispatch=DispatchConfig(group_wait_s=0))
    return Rig(db, clock, sink, engine, AckQueue(db, engine))


def _waiting_for_the_queue_lock(db: StateDB) -> bool:
    """Whether a PostgreSQL session waits for an advisory lock (the queue's)."""
    with db.session() as session:
        waiting = session.execute(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ).scalar_one()
    return int(waiting) > 0


@pytest.mark.parametrize("via", ["link", "code"])
async def test_a_link_or_code_and_an_api_ack_cannot_both_be_queued(db: StateDB, via: str) -> None:
    rig = make_rig(db)
    alert_id = await rig.fire()
    links = AckLinks(db, AckSigner(bytes(range(32)), rig.clock), public_url="https://aw.example")
    token = links.signer.sign(alert_id, "lisi")
    code = links.issue_code(alert_id, "lisi")
    use: Callable[[], Check] = {
        "link": lambda: links.use(token),
        "code": lambda: links.acknowledge_by_code(code, "lisi"),
    }[via]
    with ThreadPoolExecutor(1) as pool:
        # The API's check-then-queue (api.alert_actions.request_action) is under way: it
        # holds the queue lock, found nothing queued and queued its ack, not yet committed.
        with db.session(write=True) as session:
            db.lock(session, QUEUE_LOCK_KEY)
            assert pending_in(session, [alert_id]) == {}
            queue_action(
                session,
                alert_id=alert_id,
                user="zhangsan",
                note="",
                via="api",
                action="ack",
                now_ns=rig.clock.now_ns(),
            )
            opened = pool.submit(use)
            # The link's transaction runs into the lock (PostgreSQL: seen in pg_locks;
            # SQLite: its write lock, held here, serialises every writer) or, without the
            # lock, goes ahead. Wait for either (SQLite: a moment, it cannot be seen); the
            # answer below does not depend on when.
            for _ in range(200 if db.dialect == "postgresql" else 4):
                if opened.done() or (
                    db.dialect == "postgresql" and _waiting_for_the_queue_lock(db)
                ):
                    break
                await asyncio.sleep(0.05)
        result = opened.result(timeout=60)
    assert result.verdict == Verdict.ALREADY_ACKNOWLEDGED, result.reason
    queued = [(r.user, r.via, r.action) for r in requests_for(db, alert_id)]
    assert queued == [("zhangsan", "api", "ack")]
    [outcome] = await rig.queue.run_once()
    assert outcome.status == "done"
    alert = state_models.get_alert(db, alert_id)
    assert alert is not None and alert.acked_by == "zhangsan"


async def test_a_queued_resolution_resolves_notifies_and_names_the_person(db: StateDB) -> None:
    rig = make_rig(db)
    alert_id = await rig.fire()
    await rig.tick()
    assert rig.sink.told() == [("firing", "a101")]

    rig.enqueue(alert_id, "resolve", "zhangsan", "空调已修好")
    [outcome] = await rig.queue.run_once()
    assert (outcome.status, outcome.error) == ("done", None)

    alert = state_models.get_alert(db, alert_id)
    assert alert is not None
    assert (alert.state, alert.resolved_by, alert.resolved_note) == (
        AlertState.RESOLVED,
        "zhangsan",
        "空调已修好",
    )
    await rig.tick()
    assert rig.sink.told()[1:] == [("resolved", "a101")]  # those told hear it is over
    [entry] = audit.entries(db, action="alert.resolved")
    assert entry.actor == "user:zhangsan"  # as the API's own entries name the person
    assert entry.detail["via"] == "api" and entry.detail["note"] == "空调已修好"
    assert await rig.queue.run_once() == []  # nothing applied twice
    assert audit.verify(db).ok


async def test_a_queued_acknowledgement_records_the_user_and_channel(db: StateDB) -> None:
    rig = make_rig(db)
    alert_id = await rig.fire()
    rig.enqueue(alert_id, "ack", "lisi", "正在处理", via="console")
    [outcome] = await rig.queue.run_once()
    assert outcome.status == "done"
    alert = state_models.get_alert(db, alert_id)
    assert alert is not None
    assert (alert.state, alert.acked_by, alert.acked_note) == (
        AlertState.ACKNOWLEDGED,
        "lisi",
        "正在处理",
    )
    [entry] = audit.entries(db, action="alert.acknowledged")
    assert (entry.actor, entry.detail["via"], entry.detail["note"]) == (
        "user:lisi",
        "console",
        "正在处理",
    )


async def test_ack_then_resolve_queued_together_apply_in_order(db: StateDB) -> None:
    rig = make_rig(db)
    alert_id = await rig.fire()
    rig.enqueue(alert_id, "ack", "lisi")
    rig.enqueue(alert_id, "resolve", "zhangsan")
    outcomes = await rig.queue.run_once()
    assert [(o.request.action, o.status) for o in outcomes] == [
        ("ack", "done"),
        ("resolve", "done"),
    ]
    actions = [e.action for e in audit.entries(db, newest_first=False)]
    assert actions == ["alert.fired", "alert.acknowledged", "alert.resolved"]


async def test_a_resolution_applied_before_a_crash_counts_as_done(db: StateDB) -> None:
    rig = make_rig(db)
    alert_id = await rig.fire()
    rig.enqueue(alert_id, "resolve", "zhangsan")
    # The gateway applied it, then died before marking the row: a new one starts.
    await rig.engine.resolve(alert_id, "zhangsan", via="api")
    restarted = make_rig(db)
    [outcome] = await restarted.queue.run_once()
    assert (outcome.status, outcome.error) == ("done", None)
    assert len(audit.entries(db, action="alert.resolved")) == 1


@pytest.mark.parametrize(
    ("action", "before", "reason"),
    [
        ("resolve", "resolved-by-other", "no open alert"),
        ("ack", "resolved-by-other", "no open alert"),
        ("ack", "acknowledged-by-other", "not firing"),
    ],
)
async def test_an_action_overtaken_by_events_fails_with_the_reason(
    db: StateDB, action: str, before: str, reason: str
) -> None:
    rig = make_rig(db)
    alert_id = await rig.fire()
    rig.enqueue(alert_id, action, "zhangsan")
    if before == "resolved-by-other":
        await rig.engine.resolve(alert_id, "wangwu")
    else:
        await rig.engine.acknowledge(alert_id, "wangwu")
    [outcome] = await rig.queue.run_once()
    assert outcome.status == "failed"
    assert outcome.error is not None and reason in outcome.error
    [request] = requests_for(db, alert_id)
    assert request.status == "failed" and request.error == outcome.error


# --- silences written by another process ------------------------------------------------------


async def test_the_engine_rereads_silences_another_process_writes(db: StateDB) -> None:
    rig = make_rig(db)
    await rig.engine.start()
    # The API process writes the silence row itself (it has no engine).
    silence = new_silence(
        ["room=a101"],
        author="zhangsan",
        reason="检修",
        now_ns=rig.clock.now_ns(),
        ends_at_ns=rig.clock.now_ns() + 3600 * S,
    )
    state_models.save_silence(db, silence)
    await rig.fire("a101")
    await rig.fire("a102")
    await rig.tick(5)
    assert rig.sink.told() == [("firing", "a102")]

    state_models.expire_silence(db, silence.id, "zhangsan", rig.clock.now_ns())
    await rig.tick(70)
    assert ("firing", "a101") in rig.sink.told()


async def test_a_failing_silence_read_keeps_the_silences_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    db.migrate()
    rig = make_rig(db)
    await rig.engine.create_silence(
        ["room=a101"], author="zhangsan", reason="检修", ends_at_ns=rig.clock.now_ns() + 3600 * S
    )

    def broken(*_args: object) -> list[object]:
        raise OSError("disk gone")

    monkeypatch.setattr(state_models, "load_silences", broken)
    await rig.fire("a101")
    await rig.tick(5)
    assert rig.sink.told() == []
    db.close()


# --- the shared silence rules ------------------------------------------------------------------

NOW = T0


@pytest.mark.parametrize(
    ("matchers", "start_s", "end_s", "message"),
    [
        (["room=~("], None, 60, "matcher room=~'('"),
        (["room"], None, 60, "matcher 'room'"),
        ([], None, 60, "at least one matcher"),
        (["room=~.*"], None, 60, "mute every alert"),
        (["room!=a101"], None, 60, "mute every alert"),
        (["room=a101"], None, -60, "end in the future"),
        (["room=a101"], 120, 60, "end after it starts"),
        (["room=a101"], None, 31 * DAY, "at most 30 days"),
        (["room=a101"], 31 * DAY, 32 * DAY, "at most 30 days ahead"),
        (["room=a101"] * 21, None, 60, "at most 20 matchers"),
    ],
)
def test_bad_silences_are_refused_saying_why(
    matchers: list[str], start_s: int | None, end_s: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("*", r"\*")):
        new_silence(
            matchers,
            author="zhangsan",
            reason="检修",
            now_ns=NOW,
            starts_at_ns=None if start_s is None else NOW + start_s * S,
            ends_at_ns=NOW + end_s * S,
        )


def test_a_silence_starting_in_the_past_starts_now() -> None:
    silence = new_silence(
        ["room=a101", "room!=a102"],
        author="zhangsan",
        reason="检修",
        now_ns=NOW,
        starts_at_ns=NOW - 3600 * S,
        ends_at_ns=NOW + 30 * DAY * S,
    )
    assert (silence.starts_at_ns, silence.ends_at_ns) == (NOW, NOW + 30 * DAY * S)


async def test_the_engine_applies_the_same_rules(tmp_path: Path) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    db.migrate()
    rig = make_rig(db)
    with pytest.raises(ValueError, match="at most 30 days"):
        await rig.engine.create_silence(
            ["room=a101"], author="a", reason="r", ends_at_ns=rig.clock.now_ns() + 31 * DAY * S
        )
    assert audit.count(db) == 0
    db.close()


def test_expiring_twice_or_an_unknown_silence_is_refused(tmp_path: Path) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    db.migrate()
    made = new_silence(["room=a101"], author="a", reason="r", now_ns=NOW, ends_at_ns=NOW + 3600 * S)
    state_models.save_silence(db, made)
    ended = state_models.expire_silence(db, made.id, "b", NOW + 60 * S)
    assert (ended.ends_at_ns, ended.expired_by) == (NOW + 60 * S, "b")
    with pytest.raises(state_models.SilenceEnded):
        state_models.expire_silence(db, made.id, "c", NOW + 61 * S)
    with pytest.raises(KeyError):
        state_models.expire_silence(db, "0" * 32, "c", NOW)
    later = new_silence(
        ["room=a101"],
        author="a",
        reason="r",
        now_ns=NOW,
        starts_at_ns=NOW + 600 * S,
        ends_at_ns=NOW + 3600 * S,
    )
    state_models.save_silence(db, later)
    cancelled = state_models.expire_silence(db, later.id, "b", NOW)
    assert not any(cancelled.active(t) for t in range(NOW, NOW + 3600 * S, 60 * S))
    db.close()


# --- exact label filters ------------------------------------------------------------------------


async def test_label_filters_are_exact_and_case_sensitive(db: StateDB) -> None:
    rig = make_rig(db)
    ids = {}
    for building, room in [("b1", "a101"), ("b1", "A101"), ("b2", "a101"), ("B1", "x1")]:
        ids[building, room] = await rig.fire(room, building)
        rig.clock.advance(1)

    def found(**kw: object) -> tuple[set[tuple[str, str]], int]:
        alerts, total = state_models.page_alerts(db, **kw)  # type: ignore[arg-type]
        return {k for k, v in ids.items() if v in {a.id for a in alerts}}, total

    assert found(room="a101") == ({("b1", "a101"), ("b2", "a101")}, 2)
    assert found(building="b1", room="a101") == ({("b1", "a101")}, 1)
    assert found(building="b1") == ({("b1", "a101"), ("b1", "A101")}, 2)
    assert found(visible_buildings=frozenset({"b1"})) == ({("b1", "a101"), ("b1", "A101")}, 2)
    # Paged after the filter: newest first, the total counts every match.
    alerts, total = state_models.page_alerts(db, building="b1", limit=1, offset=1)
    assert total == 2 and [a.id for a in alerts] == [ids["b1", "a101"]]


@pytest.mark.parametrize(
    ("via", "user", "actor"),
    [
        ("api", "zhangsan", "user:zhangsan"),
        ("console", "zhangsan", "user:zhangsan"),
        ("api", "apikey:duty-bot", "apikey:duty-bot"),
        ("link", "duty-1", "duty-1"),  # a contact id, from a signed link
        ("code", "duty-1", "duty-1"),
    ],
)
def test_the_audit_log_names_the_person_as_the_api_does(via: str, user: str, actor: str) -> None:
    request = AckRequest(1, "a1", user, "", via, 0, "ack")
    assert audit_actor(request) == actor
