"""Escalation on a manual clock: tiers in order, acknowledgement, rosters, restart while due.

A real AlertEngine announces the alert (its first notice is what starts the escalation);
what each tier was told is read from the outbox rows, as the delivery worker would.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from alerting.contacts import Contacts, ContactsFile
from alerting.dispatch import DispatchConfig
from alerting.engine import AlertEngine
from alerting.escalation import EscalationManager
from alerting.model import Condition, NotificationBatch, Severity
from alerting.outbox import Outbox, OutboxMessage
from gateway import audit
from gateway.clock import ManualClock
from gateway.reading import Event
from gateway.statedb import StateDB

TZ = ZoneInfo("Asia/Shanghai")
MIN = 60.0

CONTACTS = {
    "language": "zh",
    "contacts": [
        # Hears of every alert by its routes (the duty room's screen, say).
        {"id": "watch", "urls": ["json://127.0.0.1:9/watch"]},
        # Told only through escalation.
        *(
            {"id": cid, "urls": [f"json://127.0.0.1:9/{cid}"], "routes": []}
            for cid in ("keeper-day", "keeper-night", "keeper-holiday", "officer-day")
        ),
        {"id": "officer-night", "urls": ["json://127.0.0.1:9/on"], "routes": []},
        {"id": "director", "language": "en", "urls": ["json://127.0.0.1:9/d"], "routes": []},
    ],
    "escalation": {
        "rosters": [
            {
                "id": "keepers",
                "shifts": [
                    {"days": list(("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
                     "start": "08:00", "end": "20:00", "contacts": ["keeper-day"]},
                    {"days": list(("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
                     "start": "20:00", "end": "08:00", "contacts": ["keeper-night"]},
                ],
                "holidays": [{"date": "2026-01-01", "contacts": ["keeper-holiday"]}],
            },
            {
                "id": "security",
                "shifts": [
                    {"days": list(("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
                     "start": "08:00", "end": "20:00", "contacts": ["officer-day"]},
                    {"days": list(("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
                     "start": "20:00", "end": "08:00", "contacts": ["officer-night"]},
                ],
            },
        ],
        "policies": [
            {
                "severity": "critical",
                "tiers": [
                    {"roster": "keepers", "after": "5m"},
                    {"roster": "security", "after": "10m"},
                    {"contacts": ["director"]},
                ],
            }
        ],
    },
}  # fmt: skip


def at(local: str) -> int:
    """Nanoseconds of a local (site time zone) wall time."""
    return int(datetime.fromisoformat(local).replace(tzinfo=TZ).timestamp()) * 1_000_000_000


class _Events:
    async def emit(self, event: Event) -> None:
        pass


class _Sink:
    """The gateway's sink: outbox, then who was told (as alerting.service wires it)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.engine: AlertEngine | None = None

    async def enqueue(self, batch: NotificationBatch) -> None:
        told = await self.outbox.enqueue_batch(batch)
        if self.engine is not None and told:
            await self.engine.record_recipients(batch.id, told)


@dataclass
class Rig:
    db: StateDB
    clock: ManualClock
    contacts: Contacts
    outbox: Outbox
    engine: AlertEngine
    manager: EscalationManager

    def new_manager(self) -> EscalationManager:
        """A manager as a restarted gateway builds it (nothing carried over in memory)."""
        assert self.contacts.model.escalation is not None
        return EscalationManager(
            self.db,
            self.outbox,
            self.contacts,
            self.contacts.model.escalation,
            self.clock,
            timezone="Asia/Shanghai",
            names={"a101": "一号库房"},
            record_recipients=self.engine.record_recipients,
        )

    async def fire(
        self,
        *,
        drill: bool = False,
        room: str = "a101",
        kind: str = "smoke",
        severity: Severity = Severity.CRITICAL,
    ) -> str:
        labels = {"site": "s", "building": "main", "room": room, "sensor": f"{room}-{kind}"}
        if drill:
            labels["drill_id"] = "d1"
        cond = Condition(
            rule_id=kind,
            rule_kind=kind,
            severity=severity,
            labels=labels,
            active=True,
            at_ns=self.clock.now_ns(),
            value=1.0,
            summary="烟感报警" if kind == "smoke" else f"{kind} 告警",
        )
        changes = await self.engine.process([cond])
        await self.engine.tick(self.clock.now_ns())  # group wait 0: first notice now
        return changes[-1].alert.id

    async def advance(self, seconds: float, manager: EscalationManager | None = None) -> list[str]:
        """Move the clock; tick engine and escalation; return who escalation told now."""
        self.clock.advance(seconds)
        await self.engine.tick(self.clock.now_ns())
        steps = await (manager or self.manager).tick(self.clock.now_ns())
        return [c for s in steps for c in s.recipients]

    def escalations(self) -> list[OutboxMessage]:
        return [m for m in self.outbox.all() if m.kind == "escalation"]


def make_contacts(data: Mapping[str, Any] = CONTACTS) -> Contacts:
    return Contacts(ContactsFile.model_validate(dict(data), context={"env": {}}))


def make_rig(
    db: StateDB,
    start: str,
    *,
    data: Mapping[str, Any] = CONTACTS,
) -> Rig:
    clock = ManualClock(at(start))
    contacts = make_contacts(data)
    outbox = Outbox(db, clock, contacts=contacts, names={"a101": "一号库房"})
    sink = _Sink(outbox)
    engine = AlertEngine(db, sink, _Events(), clock, dispatch=DispatchConfig(group_wait_s=0))
    sink.engine = engine
    rig = Rig(db, clock, contacts, outbox, engine, None)  # type: ignore[arg-type]
    rig.manager = rig.new_manager()
    return rig


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.realserver)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    state.migrate()
    yield state
    state.close()


async def test_tiers_are_told_in_order_each_after_its_wait(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-06 03:00:00")  # a Tuesday night
    alert_id = await rig.fire()
    assert await rig.advance(0) == ["keeper-night"]  # tier 1 with the first notice
    assert await rig.advance(5 * MIN - 1) == []
    assert await rig.advance(1) == ["officer-night"]  # 5 minutes unacknowledged
    assert await rig.advance(10 * MIN - 1) == []
    assert await rig.advance(1) == ["director"]
    assert await rig.advance(24 * 60 * MIN) == []  # the last tier: nothing further

    rows = rig.escalations()
    assert [(m.contact_id, m.dedup_key) for m in rows] == [
        ("keeper-night", f"esc:{alert_id}:1:keeper-night"),
        ("officer-night", f"esc:{alert_id}:2:officer-night"),
        ("director", f"esc:{alert_id}:3:director"),
    ]
    assert rows[0].subject == "[紧急] 一号库房（a101） 告警（值班通知）"
    assert rows[1].subject == "[紧急] 一号库房（a101） 告警升级（第 2 级）"
    assert "告警已 5 分钟无人确认，升级通知第 2 级" in rows[1].body
    assert "烟感报警" in rows[1].body and rows[1].alert_ids == (alert_id,)
    assert rows[2].subject == "[CRITICAL] 一号库房（a101） escalated (tier 3)"  # his language
    assert rows[1].short_body is not None and "烟感报警" in rows[1].short_body
    assert rig.manager.steps(alert_id) == [
        (1, ["keeper-night"]),
        (2, ["officer-night"]),
        (3, ["director"]),
    ]
    entries = audit.entries(db, action="alert.escalated", newest_first=False)
    assert [e.detail["tier"] for e in entries] == [1, 2, 3]

    # Everyone escalation told hears of the resolution, not only the route's recipient.
    await rig.engine.resolve(alert_id, "keeper-night", "误报，已复位")
    await rig.advance(1)
    resolved = sorted(m.contact_id for m in rig.outbox.all() if m.kind == "resolved")
    assert resolved == ["director", "keeper-night", "officer-night", "watch"]


async def test_acknowledgement_at_tier_2_stops_tier_3(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-06 03:00:00")
    alert_id = await rig.fire()
    await rig.advance(0)
    assert await rig.advance(5 * MIN) == ["officer-night"]
    rig.clock.advance(MIN)
    await rig.engine.acknowledge(alert_id, "officer-night", "已到现场")
    assert await rig.advance(10 * MIN) == []
    assert await rig.advance(24 * 60 * MIN) == []
    assert [m.contact_id for m in rig.escalations()] == ["keeper-night", "officer-night"]


async def test_tier_1_skips_whoever_already_got_the_first_notice(db: StateDB) -> None:
    people = cast(list[dict[str, Any]], CONTACTS["contacts"])
    data = {
        **CONTACTS,
        "contacts": [c if c["id"] != "keeper-night" else {**c, "routes": [{}]} for c in people],
    }
    rig = make_rig(db, "2026-01-06 03:00:00")
    rig.contacts = Contacts(ContactsFile.model_validate(data, context={"env": {}}))
    rig.outbox.contacts = rig.contacts
    rig.manager = rig.new_manager()
    await rig.fire()
    assert await rig.advance(0) == []  # keeper-night had it from the route already
    firing = sorted(m.contact_id for m in rig.outbox.all() if m.kind == "firing")
    assert firing == ["keeper-night", "watch"]
    assert await rig.advance(5 * MIN) == ["officer-night"]  # escalation goes on regardless


@pytest.mark.parametrize(
    ("fired", "tick_late_s", "officer"),
    [
        # Tier 2 falls due at 07:59:59 and is sent at 08:00:29: the night officer was on duty
        # when it fell due, so he is told, though the day shift took over meanwhile.
        ("2026-01-06 07:54:59", 30, "officer-night"),
        # Due at 08:00:00 sharp: the hand-over has happened, the day officer is told.
        ("2026-01-06 07:55:00", 0, "officer-day"),
        ("2026-01-06 19:55:00", 0, "officer-night"),  # evening hand-over at 20:00
        ("2026-01-06 23:58:00", 0, "officer-night"),  # across midnight
    ],
)
async def test_the_person_on_duty_when_the_tier_falls_due(
    db: StateDB, fired: str, tick_late_s: float, officer: str
) -> None:
    rig = make_rig(db, fired)
    await rig.fire()
    await rig.advance(0)
    assert await rig.advance(5 * MIN - 1) == []
    assert await rig.advance(1 + tick_late_s) == [officer]


async def test_a_holiday_has_its_own_keeper(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-01 10:00:00")  # New Year's Day, a Thursday
    await rig.fire()
    assert await rig.advance(0) == ["keeper-holiday"]
    assert await rig.advance(5 * MIN) == ["officer-day"]  # security has no holiday entry


async def test_a_drill_escalates_marked_as_a_drill(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-06 10:00:00")
    await rig.fire(drill=True)
    assert await rig.advance(0) == ["keeper-day"]
    assert await rig.advance(5 * MIN) == ["officer-day"]
    subjects = [m.subject for m in rig.escalations()]
    assert subjects and all(s.startswith("【演练】") for s in subjects)
    entries = audit.entries(db, action="alert.escalated")
    assert len(entries) == 2 and all(e.detail["drill"] is True for e in entries)


async def test_a_silenced_alert_does_not_escalate(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-06 10:00:00")
    await rig.engine.create_silence(
        ["room=a101"], author="keeper-day", reason="维修", ends_at_ns=at("2026-01-07 00:00")
    )
    await rig.fire()
    assert await rig.advance(0) == []
    assert await rig.advance(60 * MIN) == []
    assert rig.escalations() == []


async def test_restart_while_due_escalates_once(db_url: str) -> None:
    """Killed with tier 2 pending, restarted after it fell due: tier 2 once, at restart."""
    db = StateDB(db_url)
    db.migrate()
    try:
        rig = make_rig(db, "2026-01-06 03:00:00")
        alert_id = await rig.fire()
        assert await rig.advance(0) == ["keeper-night"]
        old = rig.manager
        # The gateway is down from here: nobody ticks for 20 minutes.
        rig.clock.advance(20 * MIN)
        restarted = rig.new_manager()
        assert await rig.advance(0, restarted) == ["officer-night"]
        assert await rig.advance(1, restarted) == []
        assert await rig.advance(0, old) == []  # the old process's memory holds nothing
        # Tier 3 gets its full 10 minutes from when tier 2 was actually told.
        assert await rig.advance(10 * MIN - 2, restarted) == []
        assert await rig.advance(1, restarted) == ["director"]
        assert [m.contact_id for m in rig.escalations()] == [
            "keeper-night",
            "officer-night",
            "director",
        ]
        assert [t for t, _ in restarted.steps(alert_id)] == [1, 2, 3]
    finally:
        db.close()


async def test_a_crash_between_enqueue_and_bookkeeping_sends_once(
    db: StateDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = make_rig(db, "2026-01-06 03:00:00")
    await rig.fire()
    await rig.advance(0)
    rig.clock.advance(5 * MIN)
    crashing = rig.new_manager()

    def crash(*args: object) -> bool:
        raise RuntimeError("killed")

    monkeypatch.setattr(crashing, "_advance", crash)
    with pytest.raises(RuntimeError):
        await crashing.tick(rig.clock.now_ns())  # messages stored, state not advanced
    assert [m.contact_id for m in rig.escalations()] == ["keeper-night", "officer-night"]
    restarted = rig.new_manager()
    assert await rig.advance(1, restarted) == ["officer-night"]  # the step is redone...
    # ...but the outbox holds its message once.
    assert [m.contact_id for m in rig.escalations()] == ["keeper-night", "officer-night"]
    assert await rig.advance(10 * MIN, restarted) == ["director"]


# --- several people per tier, several severities ----------------------------------------

_PEOPLE = cast(list[dict[str, Any]], CONTACTS["contacts"])
_ESCALATION = cast(dict[str, Any], CONTACTS["escalation"])
WIDE = {
    **CONTACTS,
    "contacts": [
        *_PEOPLE,
        *(
            {"id": cid, "urls": [f"json://127.0.0.1:9/{cid}"], "routes": []}
            for cid in ("deputy", "deputy-director")
        ),
    ],
    "escalation": {
        "rosters": _ESCALATION["rosters"],
        "policies": [
            {
                "severity": "critical",
                "tiers": [
                    {"roster": "keepers", "after": "5m"},
                    # The officer on duty and a named deputy, told together.
                    {"roster": "security", "contacts": ["deputy"], "after": "10m"},
                    {"contacts": ["director", "deputy-director"]},
                ],
            },
            {
                "severity": "warning",
                "tiers": [
                    {"roster": "keepers", "after": "30m"},
                    {"roster": "security"},
                ],
            },
            # No policy for "info": nobody is escalated to.
        ],
    },
}


async def test_a_tier_tells_several_people_at_once(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-06 03:00:00", data=WIDE)
    alert_id = await rig.fire()
    assert await rig.advance(0) == ["keeper-night"]
    assert await rig.advance(5 * MIN) == ["officer-night", "deputy"]  # roster, then named
    assert await rig.advance(10 * MIN - 1) == []
    assert await rig.advance(1) == ["director", "deputy-director"]
    assert await rig.advance(24 * 60 * MIN) == []
    told = [(m.contact_id, m.subject) for m in rig.escalations()]
    assert [c for c, _ in told] == [
        "keeper-night",
        "officer-night",
        "deputy",
        "director",
        "deputy-director",
    ]
    assert all("第 2 级" in subj for c, subj in told if c in ("officer-night", "deputy"))
    assert rig.manager.steps(alert_id) == [
        (1, ["keeper-night"]),
        (2, ["officer-night", "deputy"]),
        (3, ["director", "deputy-director"]),
    ]
    # Every one of them hears of the resolution.
    await rig.engine.resolve(alert_id, "deputy", "已处理")
    await rig.advance(1)
    resolved = sorted(m.contact_id for m in rig.outbox.all() if m.kind == "resolved")
    assert resolved == sorted(["watch", *[c for c, _ in told]])


async def test_each_severity_climbs_its_own_policy(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-06 03:00:00", data=WIDE)
    await rig.fire(kind="band", severity=Severity.WARNING)
    assert await rig.advance(0) == ["keeper-night"]
    assert await rig.advance(5 * MIN) == []  # the critical policy's 5 minutes do not apply
    assert await rig.advance(25 * MIN - 1) == []
    assert await rig.advance(1) == ["officer-night"]  # its own tier 2, 30 minutes on
    assert await rig.advance(24 * 60 * MIN) == []  # its last tier: no director, no deputy
    assert [m.contact_id for m in rig.escalations()] == ["keeper-night", "officer-night"]


async def test_a_severity_without_a_policy_does_not_escalate(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-06 03:00:00", data=WIDE)
    alert_id = await rig.fire(kind="battery_low", severity=Severity.INFO)
    assert await rig.advance(0) == []
    assert await rig.advance(24 * 60 * MIN) == []
    assert rig.escalations() == [] and rig.manager.steps(alert_id) == []
    # Its routes still tell whoever takes info alerts.
    assert [m.contact_id for m in rig.outbox.all() if m.kind == "firing"] == ["watch"]


# --- muted after the first notice: held, then resumed --------------------------------------


async def test_a_silence_set_after_tier_1_stops_the_escalation(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-06 10:00:00")
    alert_id = await rig.fire()
    assert await rig.advance(0) == ["keeper-day"]
    rig.clock.advance(MIN)
    silence = await rig.engine.create_silence(
        ["room=a101"], author="keeper-day", reason="维修", ends_at_ns=at("2026-01-07 00:00")
    )
    assert await rig.advance(4 * MIN) == []  # tier 2 was due now
    assert await rig.advance(10 * MIN) == []  # the director is never paged
    assert await rig.advance(10 * 60 * MIN) == []
    assert [m.contact_id for m in rig.escalations()] == ["keeper-day"]
    [held] = audit.entries(db, action="alert.escalation_held")
    assert held.target == alert_id and silence.id in held.detail["reason"]
    assert held.detail["tiers_notified"] == 1


async def test_a_confirmed_fire_holds_the_escalation_of_its_rooms_climate_alert(
    db: StateDB,
) -> None:
    rig = make_rig(db, "2026-01-06 03:00:00", data=WIDE)
    band = await rig.fire(kind="band", severity=Severity.WARNING)
    assert await rig.advance(0) == ["keeper-night"]
    rig.clock.advance(MIN)
    fire = await rig.fire(kind="confirmed_fire")
    await rig.advance(0)  # the fire's own tier 1
    for minutes in (5, 10, 45):  # 04:01: the band's tier 2 fell due at 03:30, held
        await rig.advance(minutes * MIN)
    about_band = [m.contact_id for m in rig.escalations() if band in m.alert_ids]
    assert about_band == ["keeper-night"]
    [held] = audit.entries(db, action="alert.escalation_held")
    assert held.target == band and fire in held.detail["reason"]
    # The fire escalates on its own policy meanwhile.
    assert [t for t, _ in rig.manager.steps(fire)] == [1, 2, 3]

    # The fire is out, the humidity still off: the band's escalation resumes where it was,
    # with tier 1's full 30 minutes from now, not at once.
    await rig.engine.resolve(fire, "officer-night", "已扑灭")
    assert await rig.advance(1) == []
    assert await rig.advance(30 * MIN - 1) == []
    assert await rig.advance(1) == ["officer-night"]
    assert [t for t, _ in rig.manager.steps(band)] == [1, 2]


async def test_a_silence_that_expires_resumes_where_it_was_not_all_at_once(
    db: StateDB,
) -> None:
    rig = make_rig(db, "2026-01-06 10:00:00")
    alert_id = await rig.fire()
    assert await rig.advance(0) == ["keeper-day"]
    rig.clock.advance(MIN)
    await rig.engine.create_silence(
        ["room=a101"], author="keeper-day", reason="检修半小时", ends_at_ns=at("2026-01-06 10:31")
    )
    # Tiers 2 (10:05) and 3 (10:15 had tier 2 gone out) both fall due during the silence.
    assert await rig.advance(4 * MIN) == []
    assert await rig.advance(25 * MIN) == []  # 10:30
    assert await rig.advance(MIN) == []  # 10:31: the silence ends; tier 1 is not told again
    assert await rig.advance(5 * MIN - 1) == []  # tier 1's full 5 minutes, from 10:31
    assert await rig.advance(1) == ["officer-day"]  # 10:36: tier 2 alone
    assert await rig.advance(10 * MIN - 1) == []
    assert await rig.advance(1) == ["director"]  # 10:46: tier 3 after tier 2's own wait
    assert [m.contact_id for m in rig.escalations()] == ["keeper-day", "officer-day", "director"]
    actions = [e.action for e in audit.entries(db, newest_first=False) if e.target == alert_id]
    assert [a for a in actions if a.startswith("alert.escalat")] == [
        "alert.escalated",
        "alert.escalation_held",
        "alert.escalation_resumed",
        "alert.escalated",
        "alert.escalated",
    ]


async def test_an_alert_acknowledged_while_held_never_escalates_again(db: StateDB) -> None:
    rig = make_rig(db, "2026-01-06 10:00:00")
    alert_id = await rig.fire()
    await rig.advance(0)
    silence = await rig.engine.create_silence(
        ["room=a101"], author="keeper-day", reason="维修", ends_at_ns=at("2026-01-07 00:00")
    )
    assert await rig.advance(10 * MIN) == []
    await rig.engine.acknowledge(alert_id, "keeper-day", "在修")
    await rig.engine.expire_silence(silence.id, "keeper-day")
    assert await rig.advance(24 * 60 * MIN) == []
    assert [m.contact_id for m in rig.escalations()] == ["keeper-day"]


# --- end to end: the acknowledgement link stops the escalation ----------------------------


async def test_the_ack_links_post_stops_the_escalation(db: StateDB, tmp_path: Path) -> None:
    """Tier 1's message carries a link; the keeper opens it and presses the button (the
    API's POST); the gateway applies the queued acknowledgement; tier 2 is never told."""
    import re

    from fastapi.testclient import TestClient

    from alerting.acklink import AckLinks, AckSigner
    from alerting.ackqueue import AckQueue
    from api.main import create_app
    from gateway.settings import Settings

    key, public = bytes(range(32)), "https://archwatch.example.org"
    rig = make_rig(db, "2026-01-06 03:00:00")
    links = AckLinks(db, AckSigner(key, rig.clock), public_url=public)
    rig.outbox.decorate = links.decorate  # as the gateway wires it (alerting.service)
    alert_id = await rig.fire()
    assert await rig.advance(0) == ["keeper-night"]
    [message] = rig.escalations()
    [token] = re.findall(re.escape(public) + r"/ack/(\S+)", message.body)

    (tmp_path / "signing.key").write_text(key.hex() + "\n", encoding="ascii")
    settings = Settings(data_dir=tmp_path, public_url=public, timezone="Asia/Shanghai")
    client = TestClient(create_app(settings, db=db, clock=rig.clock))
    page = client.get(f"/ack/{token}")
    assert page.status_code == 200 and "keeper-night" in page.text
    [nonce] = re.findall(r'name="page_nonce" value="([^"]+)"', page.text)
    posted = client.post(f"/ack/{token}", data={"token": token, "page_nonce": nonce})
    assert posted.status_code == 200

    [outcome] = await AckQueue(db, rig.engine).run_once()  # the gateway's next tick
    assert outcome.status == "done"
    assert await rig.advance(5 * MIN) == []
    assert await rig.advance(24 * 60 * MIN) == []
    assert [m.contact_id for m in rig.escalations()] == ["keeper-night"]
    [acked] = audit.entries(db, action="alert.acknowledged")
    assert acked.target == alert_id and acked.actor == "keeper-night"
