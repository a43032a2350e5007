"""Inhibition (a confirmed fire mutes its room's climate alerts) and silences.

Engine tests run on SQLite; silences' persistence also on the real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.dispatch import DispatchConfig
from alerting.engine import AlertEngine, AlertFilter
from alerting.inhibit import Inhibitor, InhibitRule, Labelled
from alerting.model import AlertState, Condition, NotificationBatch, Severity
from alerting.silence import Matcher, Silence
from gateway import audit
from gateway.clock import ManualClock
from gateway.reading import Event
from gateway.statedb import StateDB

T0 = 1_767_225_600_000_000_000
S = 1_000_000_000


def cond(
    clock: ManualClock,
    kind: str,
    *,
    room: str = "A101",
    active: bool = True,
    sensor: str | None = None,
    severity: Severity = Severity.WARNING,
    drill: str | None = None,
) -> Condition:
    labels = {"site": "hq", "building": "b1", "room": room, "sensor": sensor or f"{room}-{kind}"}
    if drill:
        labels["drill_id"] = drill
    return Condition(
        rule_id=f"{kind}-rule",
        rule_kind=kind,
        severity=severity,
        labels=labels,
        active=active,
        at_ns=clock.now_ns(),
        summary=f"{room} {kind}",
    )


@dataclass
class Outbox:
    batches: list[NotificationBatch] = field(default_factory=list)

    async def enqueue(self, batch: NotificationBatch) -> None:
        self.batches.append(batch)

    def told(self) -> list[tuple[str, str, str]]:
        return [(b.kind, a.rule_kind, a.labels["room"]) for b in self.batches for a in b.alerts]


@dataclass
class Events:
    events: list[Event] = field(default_factory=list)

    async def emit(self, event: Event) -> None:
        self.events.append(event)


def open_db(url: str) -> StateDB:
    state = StateDB(url)
    state.migrate()
    return state


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def any_url(request: pytest.FixtureRequest, sqlite_url: str) -> str:
    if request.param == "sqlite":
        return sqlite_url
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(sqlite_url: str) -> Iterator[StateDB]:
    state = open_db(sqlite_url)
    yield state
    state.close()


def engine_on(db: StateDB, clock: ManualClock, outbox: Outbox, events: Events) -> AlertEngine:
    return AlertEngine(db, outbox, events, clock, dispatch=DispatchConfig(group_wait_s=0))


async def tick_for(engine: AlertEngine, clock: ManualClock, seconds: int) -> None:
    for _ in range(seconds):
        clock.advance(1)
        await engine.tick()


# --- inhibition ----------------------------------------------------------------------------------


def labelled(
    alert_id: str, kind: str, room: str, state: str = "firing", drill: str = ""
) -> Labelled:
    labels = {"site": "hq", "building": "b1", "room": room, "rule_kind": kind}
    if drill:
        labels["drill_id"] = drill
    return Labelled(alert_id, AlertState(state), labels)


FIRE = labelled("fire", "confirmed_fire", "A101")
INHIBIT_CASES = {
    "band-same-room": ([FIRE, labelled("x", "band", "A101")], {"x": "fire"}),
    "every-climate-kind": (
        [FIRE]
        + [
            labelled(k, k, "A101")
            for k in ("threshold", "fluctuation", "rate_of_change", "condensation")
        ],
        {k: "fire" for k in ("threshold", "fluctuation", "rate_of_change", "condensation")},
    ),
    "other-room-not-muted": ([FIRE, labelled("x", "band", "A102")], {}),
    "smoke-and-leak-not-muted": (
        [FIRE, labelled("s", "smoke", "A101"), labelled("w", "water_leak", "A101")],
        {},
    ),
    "pending-fire-mutes-nothing": (
        [labelled("fire", "confirmed_fire", "A101", "pending"), labelled("x", "band", "A101")],
        {},
    ),
    "acknowledged-fire-still-mutes": (
        [labelled("fire", "confirmed_fire", "A101", "acknowledged"), labelled("x", "band", "A101")],
        {"x": "fire"},
    ),
    "drill-fire-does-not-mute-real": (
        [labelled("fire", "confirmed_fire", "A101", drill="d1"), labelled("x", "band", "A101")],
        {},
    ),
    "drill-fire-mutes-drill": (
        [
            labelled("fire", "confirmed_fire", "A101", drill="d1"),
            labelled("x", "band", "A101", drill="d1"),
        ],
        {"x": "fire"},
    ),
}


@pytest.mark.parametrize(("alerts", "muted"), INHIBIT_CASES.values(), ids=INHIBIT_CASES.keys())
def test_default_inhibit_rule(alerts: list[Labelled], muted: dict[str, str]) -> None:
    assert Inhibitor().inhibited(alerts) == muted


def test_inhibit_rules_are_data() -> None:
    leak_mutes_door = InhibitRule(
        source=(Matcher("rule_kind", "=", "water_leak"),),
        target=(Matcher("rule_kind", "=~", "door.*"),),
        equal=("room",),
    )
    alerts = [labelled("w", "water_leak", "A1"), labelled("d", "door_held", "A1"), FIRE]
    assert Inhibitor([leak_mutes_door]).inhibited(alerts) == {"d": "w"}


async def test_confirmed_fire_mutes_climate_alerts_of_its_room(db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox()
    engine = engine_on(db, clock, outbox, Events())
    critical = Severity.CRITICAL
    await engine.process(
        [
            cond(clock, "confirmed_fire", severity=critical),
            cond(clock, "band"),
            cond(clock, "band", room="A102"),
        ]
    )
    await tick_for(engine, clock, 5)
    assert sorted(outbox.told()) == [
        ("firing", "band", "A102"),
        ("firing", "confirmed_fire", "A101"),
    ]
    views = {(v.alert.rule_kind, v.alert.labels["room"]): v for v in await engine.alerts()}
    fire = views["confirmed_fire", "A101"]
    assert views["band", "A101"].inhibited_by == fire.alert.id  # shown, marked inhibited
    assert views["band", "A101"].alert.state == AlertState.FIRING
    assert views["band", "A102"].inhibited_by is None

    # The fire is over; the room's humidity still is out of band: now it is news.
    await engine.process([cond(clock, "confirmed_fire", severity=critical, active=False)])
    await tick_for(engine, clock, 2)
    assert outbox.told()[-1] == ("firing", "band", "A101")


# --- silences ------------------------------------------------------------------------------------

MATCHER_CASES = [
    ("room=A101", {"room": "A101"}, True),
    ("room=A101", {"room": "A1011"}, False),
    ("room!=A101", {"room": "A102"}, True),
    ("room=~A10[12]", {"room": "A102"}, True),
    ("room=~A10[12]", {"room": "A1023"}, False),  # the whole value must match
    ("room!~A10.*", {"room": "B201"}, True),
    ('summary="有 空格"', {"summary": "有 空格"}, True),
    ("sensor=", {"room": "A101"}, True),  # a missing label is the empty string
    ("drill_id=~.+", {"room": "A101"}, False),
]


@pytest.mark.parametrize(("text", "labels", "hit"), MATCHER_CASES)
def test_matchers(text: str, labels: dict[str, str], hit: bool) -> None:
    assert Matcher.parse(text).matches(labels) is hit


@pytest.mark.parametrize("text", ["room", "=A101", "room~A101", "room=~(unclosed", "9x=1"])
def test_bad_matchers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="matcher"):
        Matcher.parse(text)


NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True)
VALUES = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), max_size=12)


@given(name=NAMES, op=st.sampled_from(["=", "!="]), value=VALUES)
def test_matcher_text_round_trips(name: str, op: str, value: str) -> None:
    matcher = Matcher.parse(f'{name}{op}"{value}"')
    assert (matcher.name, matcher.op, matcher.value) == (name, op, value)
    assert matcher.matches({name: value}) is (op == "=")


async def test_silenced_alerts_are_shown_not_sent_until_the_silence_expires(db: StateDB) -> None:
    clock, outbox, events = ManualClock(T0), Outbox(), Events()
    engine = engine_on(db, clock, outbox, events)
    silence = await engine.create_silence(
        ["room=~A10[12]", "rule_kind=band"],
        author="王五",
        reason="空调检修",
        ends_at_ns=clock.now_ns() + 2 * 3600 * S,
    )
    await engine.process(
        [
            cond(clock, "band"),
            cond(clock, "band", room="A102"),
            cond(clock, "band", room="A103"),
            cond(clock, "smoke", severity=Severity.CRITICAL),
        ]
    )
    await tick_for(engine, clock, 5)
    assert sorted(outbox.told()) == [("firing", "band", "A103"), ("firing", "smoke", "A101")]
    views = {(v.alert.rule_kind, v.alert.labels["room"]): v for v in await engine.alerts()}
    assert views["band", "A101"].silenced_by == (silence.id,)
    assert views["band", "A101"].muted and not views["band", "A103"].muted

    clock.advance(600)
    await engine.expire_silence(silence.id, "王五")
    await tick_for(engine, clock, 70)
    assert sorted(outbox.told()[2:]) == [("firing", "band", "A101"), ("firing", "band", "A102")]
    assert engine.silences(active_only=True) == []

    actions = [(e.actor, e.action) for e in audit.entries(db, limit=100, newest_first=False)]
    assert ("王五", "silence.created") in actions and ("王五", "silence.expired") in actions
    assert [e.kind for e in events.events if e.kind.startswith("silence")] == [
        "silence_created",
        "silence_expired",
    ]
    assert audit.verify(db).ok


async def test_a_silence_starts_and_ends_on_time(db: StateDB) -> None:
    clock, outbox = ManualClock(T0), Outbox()
    engine = engine_on(db, clock, outbox, Events())
    start, end = clock.now_ns() + 60 * S, clock.now_ns() + 120 * S
    await engine.create_silence(
        ["room=A101"], author="王五", reason="演练", starts_at_ns=start, ends_at_ns=end
    )
    await tick_for(engine, clock, 60)
    await engine.process([cond(clock, "band")])  # the silence has just begun
    await tick_for(engine, clock, 59)
    assert outbox.batches == []
    await tick_for(engine, clock, 1)  # and has just ended
    assert outbox.told() == [("firing", "band", "A101")]


@pytest.mark.parametrize(
    ("matchers", "author", "reason", "end_s"),
    [
        ([], "a", "r", 60),
        (["room=A1"], " ", "r", 60),
        (["room=A1"], "a", "", 60),
        (["room=A1"], "a", "r", 0),
    ],
    ids=["no-matcher", "no-author", "no-reason", "ends-before-start"],
)
async def test_incomplete_silences_are_refused(
    db: StateDB, matchers: list[str], author: str, reason: str, end_s: int
) -> None:
    clock = ManualClock(T0)
    engine = engine_on(db, clock, Outbox(), Events())
    with pytest.raises(ValueError):
        await engine.create_silence(
            matchers, author=author, reason=reason, ends_at_ns=clock.now_ns() + end_s * S
        )
    assert engine.silences() == [] and audit.count(db) == 0


async def test_silences_are_persisted(any_url: str) -> None:
    clock, outbox = ManualClock(T0), Outbox()
    db = open_db(any_url)
    try:
        first = engine_on(db, clock, outbox, Events())
        made: Silence = await first.create_silence(
            ["room=A101", "severity=~warning|info"],
            author="王五",
            reason="检修",
            ends_at_ns=clock.now_ns() + 3600 * S,
        )
        second = engine_on(db, clock, outbox, Events())
        await second.process([cond(clock, "band")])
        await tick_for(second, clock, 5)
        assert outbox.batches == []
        assert [s.id for s in second.silences(active_only=True)] == [made.id]
        [view] = await second.alerts(AlertFilter())
        assert view.silenced_by == (made.id,)
    finally:
        db.close()
