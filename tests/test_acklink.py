"""Acknowledgement links and codes: signing, every refusal, replay across processes, the
engine-side queue, and links in the messages each recipient gets (real SQLite state DB)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alerting.ack_models import AckCodeRow
from alerting.acklink import (
    CODE_ALPHABET,
    MAX_CODE_FAILURES,
    MAX_CODE_FAILURES_TOTAL,
    AckLinks,
    AckSigner,
    Verdict,
)
from alerting.ackqueue import AckQueue
from alerting.contacts import Contacts, ContactsFile
from alerting.dispatch import DispatchConfig, NotificationSink
from alerting.engine import AlertEngine
from alerting.model import AlertState, Condition, NotificationBatch, Severity
from alerting.notifiers.cloud_sms import extract_fields
from alerting.outbox import Outbox
from gateway import audit
from gateway.clock import ManualClock
from gateway.reading import Event
from gateway.statedb import StateDB

KEY = bytes(range(32))
PUBLIC = "https://archwatch.example.org"
HOUR = 3600


@dataclass
class Sink:
    """A notification sink keeping the batches (where the outbox is not under test)."""

    batches: list[NotificationBatch] = field(default_factory=list)

    async def enqueue(self, batch: NotificationBatch) -> None:
        self.batches.append(batch)


@dataclass
class Events:
    events: list[Event] = field(default_factory=list)

    async def emit(self, event: Event) -> None:
        self.events.append(event)


def cond(room: str = "a101", value: float = 62.0) -> Condition:
    return Condition(
        rule_id="rh-band",
        rule_kind="band",
        severity=Severity.CRITICAL,
        labels={"site": "hq", "building": "b1", "room": room},
        active=True,
        at_ns=ManualClock().now_ns(),
        value=value,
        summary=f"{room} 相对湿度 {value}%",
        limit="45–55 %RH",
    )


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.sqlite'}"


@pytest.fixture
def db(db_url: str) -> Iterator[StateDB]:
    state = StateDB(db_url)
    state.migrate()
    yield state
    state.close()


@dataclass
class World:
    """A state DB with an engine, links signed with KEY, and a consumer for the queue."""

    db: StateDB
    clock: ManualClock
    engine: AlertEngine
    links: AckLinks
    queue: AckQueue

    async def fire(self, room: str = "a101") -> str:
        await self.engine.process([cond(room)])
        views = await self.engine.alerts()
        return next(v.alert.id for v in views if v.alert.labels["room"] == room)

    async def state(self, alert_id: str) -> AlertState:
        from alerting.engine import AlertFilter

        views = await self.engine.alerts(AlertFilter(states=None))
        return next(v.alert.state for v in views if v.alert.id == alert_id)


def make_world(
    db: StateDB, clock: ManualClock | None = None, sink: NotificationSink | None = None
) -> World:
    clock = clock or ManualClock()
    engine = AlertEngine(
        db, sink or Sink(), Events(), clock, dispatch=DispatchConfig(group_wait_s=0)
    )
    links = AckLinks(db, AckSigner(KEY, clock), public_url=PUBLIC)
    return World(db, clock, engine, links, AckQueue(db, engine))


@pytest.fixture
def world(db: StateDB) -> World:
    return make_world(db)


def tamper(token: str) -> str:
    body, mac = token.split(".")
    flipped = "A" if body[5] != "A" else "B"
    return f"{body[:5]}{flipped}{body[6:]}.{mac}"


def swap_alert(token: str, alert_id: str) -> str:
    """The same MAC over a payload naming another alert."""
    body, mac = token.split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    _, contact, expires, nonce = payload.split("|")
    other = f"{alert_id}|{contact}|{expires}|{nonce}".encode()
    return f"{base64.urlsafe_b64encode(other).rstrip(b'=').decode()}.{mac}"


async def _case_token(w: World, name: str, alert_id: str, other_id: str) -> str:
    token = w.links.signer.sign(alert_id, "keeper")
    if name == "tampered":
        return tamper(token)
    if name == "wrong key":
        return AckSigner(b"\x01" * 32, w.clock).sign(alert_id, "keeper")
    if name == "expired":
        w.clock.advance(24 * HOUR + 1)
    if name == "short lifetime, expired":
        token = w.links.signer.sign(alert_id, "keeper", ttl_s=60)
        w.clock.advance(61)
    if name == "short lifetime, still valid":
        token = w.links.signer.sign(alert_id, "keeper", ttl_s=60)
        w.clock.advance(59)
    if name == "replayed":
        assert w.links.use(token).ok
    if name == "wrong alert":
        return swap_alert(token, other_id)
    if name == "unknown alert":
        return w.links.signer.sign("f" * 32, "keeper")
    if name == "acknowledged by someone else":
        await w.engine.acknowledge(alert_id, "guard", "到场")
    if name == "acknowledgement queued by someone else":
        assert w.links.use(w.links.signer.sign(alert_id, "guard")).ok
    if name == "resolved":
        await w.engine.resolve(alert_id, "guard", "已处理")
    return token


CASES = [
    ("valid", Verdict.OK),
    ("tampered", Verdict.FORGED),
    ("wrong key", Verdict.FORGED),
    ("expired", Verdict.EXPIRED),
    ("short lifetime, expired", Verdict.EXPIRED),
    ("short lifetime, still valid", Verdict.OK),
    ("replayed", Verdict.REPLAYED),
    ("wrong alert", Verdict.FORGED),
    ("unknown alert", Verdict.UNKNOWN_ALERT),
    ("acknowledged by someone else", Verdict.ALREADY_ACKNOWLEDGED),
    ("acknowledgement queued by someone else", Verdict.ALREADY_ACKNOWLEDGED),
    ("resolved", Verdict.RESOLVED),
]


@pytest.mark.parametrize(("name", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_sign_and_verify(world: World, name: str, expected: Verdict) -> None:
    alert_id = await world.fire("a101")
    other_id = await world.fire("a102")
    token = await _case_token(world, name, alert_id, other_id)
    check = world.links.check(token)
    assert check.verdict == expected, check.reason
    assert check.reason  # every verdict explains itself
    if expected == Verdict.OK:
        assert check.claims is not None and check.claims.contact_id == "keeper"
        assert check.alert is not None and check.alert.id == alert_id
        assert check.alert.room == "a101" and check.alert.value == 62.0
    # Using the link: a good one works once; a refused one is refused alike and audited.
    used = world.links.use(token)
    assert used.verdict == expected
    assert world.links.use(token).verdict != Verdict.OK
    if expected != Verdict.OK:
        refused = audit.entries(world.db, action="ack_link.refused")
        assert refused and refused[0].detail["verdict"] == expected.value


def test_tokens_are_url_safe_and_carry_no_secret(world: World) -> None:
    token = world.links.signer.sign("a" * 32, "keeper.zhang")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert KEY.hex() not in token
    assert world.links.url_for("a" * 32, "keeper").startswith(f"{PUBLIC}/ack/")
    # Two links for the same alert and person differ (nonce): each works once.
    assert world.links.signer.sign("a" * 32, "k") != world.links.signer.sign("a" * 32, "k")


@pytest.mark.parametrize("bad", ["", ".", "a.b", "x" * 5000, "é.é", "..", "\x00.\x00", "YQ.YQ"])
def test_garbage_is_forged(world: World, bad: str) -> None:
    assert world.links.check(bad).verdict == Verdict.FORGED


async def test_a_used_link_is_refused_after_a_restart_and_in_another_process(
    world: World, db_url: str
) -> None:
    alert_id = await world.fire()
    token = world.links.signer.sign(alert_id, "keeper")
    assert world.links.use(token, "我去看看").ok
    # A restarted API: a new StateDB on the same file.
    restarted = StateDB(db_url)
    try:
        again = AckLinks(restarted, AckSigner(KEY, world.clock), public_url=PUBLIC)
        assert again.use(token).verdict == Verdict.REPLAYED
    finally:
        restarted.close()
    # Another process altogether.
    script = (
        "import sys\n"
        "from alerting.acklink import AckLinks, AckSigner\n"
        "from gateway.clock import ManualClock\n"
        "from gateway.statedb import StateDB\n"
        "db = StateDB(sys.argv[1])\n"
        "links = AckLinks(db, AckSigner(bytes(range(32)), ManualClock()), public_url='x')\n"
        "print(links.use(sys.argv[2]).verdict.value)\n"
    )
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", script, db_url, token],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == "replayed"


async def test_the_queue_applies_an_acknowledgement_once_with_the_person_identity(
    world: World,
) -> None:
    alert_id = await world.fire()
    other_id = await world.fire("a102")
    assert world.links.use(world.links.signer.sign(alert_id, "keeper"), "已到现场").ok
    assert await world.state(alert_id) == AlertState.FIRING  # queued, not yet applied

    [outcome] = await world.queue.run_once()
    assert outcome.status == "done"
    assert await world.state(alert_id) == AlertState.ACKNOWLEDGED
    [acked] = audit.entries(world.db, action="alert.acknowledged")
    assert acked.actor == "keeper" and acked.target == alert_id
    assert acked.detail["note"] == "已到现场"
    [used] = audit.entries(world.db, action="ack_link.used")
    assert used.actor == "keeper" and used.detail["via"] == "link"
    assert await world.queue.run_once() == []  # nothing applied twice

    # The alert resolves before the gateway gets to a queued request: recorded as failed.
    assert world.links.use(world.links.signer.sign(other_id, "guard")).ok
    await world.engine.resolve(other_id, "system", "")
    [failed] = await world.queue.run_once()
    assert failed.status == "failed" and failed.error and other_id in failed.error


async def test_a_request_applied_before_a_crash_is_done_not_failed(world: World) -> None:
    alert_id = await world.fire()
    assert world.links.use(world.links.signer.sign(alert_id, "keeper")).ok
    # The engine applied it, then the gateway died before marking the row.
    await world.engine.acknowledge(alert_id, "keeper", "")
    [outcome] = await world.queue.run_once()
    assert outcome.status == "done"


def sms_code(text: str) -> str:
    """The code in an SMS text, as the cloud SMS templates' parser reads it."""
    return extract_fields("", text).code


def other_code(code: str, step: int = 1) -> str:
    """A well-formed code that is not ``code`` (its last character moved on)."""
    last = CODE_ALPHABET[(CODE_ALPHABET.index(code[-1]) + step) % len(CODE_ALPHABET)]
    return code[:-1] + last


async def test_short_codes(world: World) -> None:
    alert_id = await world.fire()
    code = world.links.issue_code(alert_id, "guard")
    assert len(code) == 6 and set(code) <= set(CODE_ALPHABET)
    # Stored hashed: the code itself is nowhere in the database file.
    with world.db.session() as session:
        from alerting.ack_models import AckCodeRow

        [row] = session.query(AckCodeRow).all()
        assert code not in row.code_hash
    assert world.links.acknowledge_by_code(code, "keeper").verdict == Verdict.FORGED
    wrong = other_code(code)
    assert world.links.acknowledge_by_code(wrong, "guard").verdict == Verdict.FORGED
    done = world.links.acknowledge_by_code(f" {code} ", "guard", "收到")
    assert done.ok and done.alert is not None and done.alert.id == alert_id
    assert world.links.acknowledge_by_code(code, "guard").verdict == Verdict.REPLAYED
    [outcome] = await world.queue.run_once()
    assert outcome.status == "done" and outcome.request.via == "code"
    assert await world.state(alert_id) == AlertState.ACKNOWLEDGED

    later = await world.fire("a102")
    old = world.links.issue_code(later, "guard")
    world.clock.advance(24 * HOUR + 1)
    assert world.links.acknowledge_by_code(old, "guard").verdict == Verdict.EXPIRED


async def test_guessing_codes_is_cut_off(world: World) -> None:
    alert_id = await world.fire()
    code = world.links.issue_code(alert_id, "guard")
    wrong = [other_code(code, i) for i in range(1, 6)]
    for guess in wrong:
        assert world.links.acknowledge_by_code(guess, "guard").verdict == Verdict.FORGED
    assert world.links.acknowledge_by_code(code, "guard").verdict == Verdict.TOO_MANY_ATTEMPTS
    world.clock.advance(16 * 60)  # the window passed
    assert world.links.acknowledge_by_code(code, "guard").ok


async def test_the_code_alone_acknowledges_as_the_person_it_was_sent_to(world: World) -> None:
    first, second = await world.fire("a101"), await world.fire("a102")
    codes = {
        (alert, contact): world.links.issue_code(alert, contact)
        for alert in (first, second)
        for contact in ("keeper", "guard")
    }
    assert len(set(codes.values())) == 4  # unique across alerts and contacts
    code = codes[(second, "guard")]
    # Typed on a phone: lower case, a space, O for 0 and I/L for 1 all read the same.
    typed = code.lower().replace("0", "o").replace("1", "l")
    done = world.links.acknowledge_by_code(f" {typed[:3]} {typed[3:]} ", note="收到")
    assert done.ok and done.contact_id == "guard" and done.alert is not None
    assert done.alert.id == second
    assert world.links.acknowledge_by_code(code).verdict == Verdict.REPLAYED
    [outcome] = await world.queue.run_once()
    assert outcome.status == "done" and outcome.request.user == "guard"
    assert await world.state(second) == AlertState.ACKNOWLEDGED
    assert await world.state(first) == AlertState.FIRING
    # Naming the wrong person with a right code is still refused.
    assert world.links.acknowledge_by_code(codes[(first, "guard")], "keeper").verdict == (
        Verdict.FORGED
    )
    for i, bad in enumerate(("", "12345", "ABCDEFG", "ABCDE!", "ÄBCDEF")):
        got = world.links.acknowledge_by_code(bad, address=f"192.0.2.{i}")
        assert got.verdict == Verdict.FORGED


async def test_guessing_codes_without_a_contact_is_cut_off_per_address(world: World) -> None:
    alert_id = await world.fire()
    code = world.links.issue_code(alert_id, "guard")
    for i in range(1, 6):
        got = world.links.acknowledge_by_code(other_code(code, i), address="198.51.100.7")
        assert got.verdict == Verdict.FORGED
    blocked = world.links.acknowledge_by_code(code, address="198.51.100.7")
    assert blocked.verdict == Verdict.TOO_MANY_ATTEMPTS
    # Someone else is not held up by that address's mistakes.
    ok = world.links.acknowledge_by_code(code, address="198.51.100.8")
    assert ok.ok and ok.contact_id == "guard"


async def test_naming_a_new_contact_each_time_does_not_escape_the_address_limit(
    world: World,
) -> None:
    alert_id = await world.fire()
    code = world.links.issue_code(alert_id, "guard")
    for i in range(1, 6):
        got = world.links.acknowledge_by_code(other_code(code, i), f"c{i}", address="192.0.2.9")
        assert got.verdict == Verdict.FORGED
    blocked = world.links.acknowledge_by_code(code, "guard", address="192.0.2.9")
    assert blocked.verdict == Verdict.TOO_MANY_ATTEMPTS


@pytest.mark.parametrize(
    ("failed_from", "then_from", "verdict"),
    [
        # One subscriber's IPv6 /64 is one address; the next /64 is someone else.
        ("2001:db8:1:2::{i}", "2001:db8:1:2::ff", Verdict.TOO_MANY_ATTEMPTS),
        ("2001:db8:1:2::{i}", "2001:db8:1:3::1", Verdict.OK),
        # An IPv4 client seen through an IPv6 socket is the same IPv4 client.
        ("::ffff:203.0.113.5", "203.0.113.5", Verdict.TOO_MANY_ATTEMPTS),
        ("203.0.113.5", "203.0.113.6", Verdict.OK),
    ],
)
async def test_which_addresses_count_as_one(
    world: World, failed_from: str, then_from: str, verdict: Verdict
) -> None:
    alert_id = await world.fire()
    code = world.links.issue_code(alert_id, "guard")
    for i in range(1, 6):
        address = failed_from.format(i=i)
        assert world.links.acknowledge_by_code(other_code(code, i), address=address).verdict == (
            Verdict.FORGED
        )
    assert world.links.acknowledge_by_code(code, address=then_from).verdict == verdict


async def test_a_flood_of_wrong_codes_does_not_lock_out_a_fresh_address(world: World) -> None:
    first, second = await world.fire("a101"), await world.fire("a102")
    code = world.links.issue_code(first, "guard")
    later = world.links.issue_code(second, "keeper")
    # Many addresses guessing, each below its own limit, past the total.
    for i in range(MAX_CODE_FAILURES_TOTAL):
        guess = other_code(code, 1 + i % 20)
        got = world.links.acknowledge_by_code(guess, address=f"10.0.{i // 4}.{i % 4}")
        assert got.verdict == Verdict.FORGED
    # A recipient on a phone that entered no wrong code gets through at once.
    ok = world.links.acknowledge_by_code(code, address="203.0.113.9")
    assert ok.ok and ok.contact_id == "guard"
    # An address that guessed during the flood is refused, even with a right code...
    refused = world.links.acknowledge_by_code(later, address="10.0.0.1")
    assert refused.verdict == Verdict.TOO_MANY_ATTEMPTS
    # ...and a fresh address gets one guess, not five, while the flood lasts.
    wrong = world.links.acknowledge_by_code(other_code(later), address="203.0.113.10")
    assert wrong.verdict == Verdict.FORGED
    again = world.links.acknowledge_by_code(later, address="203.0.113.10")
    assert again.verdict == Verdict.TOO_MANY_ATTEMPTS
    # Once the window has passed with no new wrong codes, the flood is over for everyone.
    world.clock.advance(16 * 60)
    done = world.links.acknowledge_by_code(later, address="10.0.0.1")
    assert done.ok and done.contact_id == "keeper"


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.realserver)]
)
async def test_parallel_guesses_cannot_outrun_the_limit(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'race.sqlite'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    state = StateDB(url)
    state.migrate()
    try:
        w = make_world(state)
        alert_id = await w.fire()
        code = w.links.issue_code(alert_id, "guard")
        attempts = 16
        start = threading.Barrier(attempts)

        def guess(i: int) -> Verdict:
            start.wait()
            # Every attempt from one address, every one wrong: all start together.
            return w.links.acknowledge_by_code(
                other_code(code, 1 + i), address="198.51.100.20"
            ).verdict

        with ThreadPoolExecutor(max_workers=attempts) as pool:
            verdicts = list(pool.map(guess, range(attempts)))
        assert verdicts.count(Verdict.FORGED) == MAX_CODE_FAILURES
        assert verdicts.count(Verdict.TOO_MANY_ATTEMPTS) == attempts - MAX_CODE_FAILURES
        refused = audit.entries(state, action="ack_code.refused")
        assert len(refused) == MAX_CODE_FAILURES
        # The right code from that address is refused too; from another it works.
        assert w.links.acknowledge_by_code(code, address="198.51.100.20").verdict == (
            Verdict.TOO_MANY_ATTEMPTS
        )
        assert w.links.acknowledge_by_code(code, address="198.51.100.21").ok
    finally:
        state.close()


async def test_an_old_six_digit_code_needs_its_contact(world: World) -> None:
    """Codes sent before codes became base32 are matched only with the contact named (the
    README says so: they expire within ack_link_hours; the link works meanwhile)."""
    alert_id = await world.fire()
    legacy = "314159"
    with world.db.session(write=True) as session:
        session.add(
            AckCodeRow(
                contact_id="guard",
                code_hash=world.links.signer.code_hash("guard", legacy),
                alert_id=alert_id,
                created_at_ns=world.clock.now_ns(),
                expires_at_ns=world.clock.now_ns() + 24 * HOUR * 1_000_000_000,
            )
        )
    alone = world.links.acknowledge_by_code(legacy, address="192.0.2.50")
    assert alone.verdict == Verdict.FORGED
    named = world.links.acknowledge_by_code(legacy, "guard", address="192.0.2.50")
    assert named.ok and named.contact_id == "guard"


@dataclass
class Tee:
    """The outbox as the engine's sink, keeping the batches too."""

    outbox: Outbox
    batches: list[NotificationBatch] = field(default_factory=list)

    async def enqueue(self, batch: NotificationBatch) -> None:
        self.batches.append(batch)
        await self.outbox.enqueue(batch)


def _contacts() -> Contacts:
    data = {
        "contacts": [
            {"id": "keeper", "urls": ["json://127.0.0.1:9/k"]},
            {"id": "guard", "language": "en", "urls": ["json://127.0.0.1:9/g"]},
        ]
    }
    return Contacts(ContactsFile.model_validate(data, context={"env": {}}))


async def test_each_recipient_gets_their_own_link_and_code(db: StateDB) -> None:
    clock = ManualClock()
    links = AckLinks(db, AckSigner(KEY, clock), public_url=PUBLIC + "/")
    outbox = Outbox(db, clock, contacts=_contacts(), decorate=links.decorate)
    sink = Tee(outbox)
    w = make_world(db, clock, sink=sink)
    alert_id = await w.fire()
    await w.engine.tick()
    messages = {m.contact_id: m for m in outbox.all()}
    assert set(messages) == {"keeper", "guard"}
    for contact, message in messages.items():
        [token] = re.findall(r"https://archwatch\.example\.org/ack/(\S+)", message.body)
        check = links.check(token)
        assert check.ok and check.claims is not None
        assert check.claims.contact_id == contact and check.claims.alert_id == alert_id
        # The SMS text carries no link (too long, and a credential), but says where to
        # type the code: the code-entry page, the same for everyone.
        assert message.short_body is not None and "/ack/" + token not in message.short_body
        assert f"{PUBLIC}/ack/code" in message.short_body
        code = sms_code(message.short_body)
        assert len(code) == 6 and set(code) <= set(CODE_ALPHABET)
    assert "点击确认" in messages["keeper"].body and "Acknowledge" in messages["guard"].body
    keeper_sms = messages["keeper"].short_body or ""
    assert f"确认码 {sms_code(keeper_sms)}（在 {PUBLIC}/ack/code 输入）" in keeper_sms
    guard_sms = messages["guard"].short_body or ""
    assert f"(enter it at {PUBLIC}/ack/code)" in guard_sms
    # The code alone acknowledges, as the person it was sent to.
    done = links.acknowledge_by_code(sms_code(guard_sms))
    assert done.ok and done.contact_id == "guard"

    # Resolution notices carry no link: nothing is left to acknowledge.
    [fired] = sink.batches
    await outbox.enqueue_batch(dataclasses.replace(fired, id="r1", kind="resolved"))
    resolved = [m for m in outbox.all() if m.kind == "resolved"]
    assert len(resolved) == 2
    assert all(PUBLIC not in m.body and "确认码" not in (m.short_body or "") for m in resolved)


async def test_escalation_messages_carry_a_link_too(db: StateDB) -> None:
    clock = ManualClock()
    links = AckLinks(db, AckSigner(KEY, clock), public_url=PUBLIC)
    outbox = Outbox(db, clock, contacts=_contacts(), decorate=links.decorate)
    w = make_world(db, clock)
    alert_id = await w.fire()
    for kind, key in (("escalation", "esc:1"), ("info", "note:1")):
        await outbox.enqueue_message(
            "guard",
            "s",
            "b",
            alert_ids=[alert_id],
            kind=kind,
            severity="critical",
            dedup_key=key,
            short_body="sms",
        )
    escalation, info = outbox.all()
    [token] = re.findall(r"https://archwatch\.example\.org/ack/(\S+)", escalation.body)
    claims = links.check(token).claims
    assert claims is not None and claims.contact_id == "guard" and claims.alert_id == alert_id
    assert "Acknowledge" in escalation.body and (escalation.short_body or "").startswith("sms ")
    assert info.body == "b" and info.short_body == "sms"  # nothing to acknowledge there
