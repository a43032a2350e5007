"""Delivery end to end: outbox -> worker -> apprise json:// -> a recording HTTP server.

Backoff runs on a ManualClock advanced by the worker's injected sleep; the checks are on
order and counts of requests, never on elapsed time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alerting.contacts import Contacts, ContactsFile
from alerting.delivery import DeliveryPolicy, DeliveryWorker
from alerting.model import AlertSnapshot, AlertState, NotificationBatch, Severity
from alerting.outbox import Outbox, OutboxMessage
from gateway import audit
from gateway.clock import ManualClock
from gateway.metrics import Metrics
from gateway.reading import Event
from gateway.statedb import StateDB
from tests.receiver import RecordingServer


@pytest.fixture
def receiver() -> Iterator[RecordingServer]:
    server = RecordingServer()
    server.start()
    yield server
    server.stop()


class ListSink:
    """An EventSink keeping what it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def emit(self, event: Event) -> None:
        self.events.append(event)


def make_contacts(urls_by_contact: dict[str, list[str]]) -> Contacts:
    data = {
        "contacts": [
            {"id": cid, "name": cid, "urls": urls} for cid, urls in urls_by_contact.items()
        ]
    }
    return Contacts(ContactsFile.model_validate(data, context={"env": {}}))


def make_batch(
    batch_id: str = "b1", *, kind: str = "firing", value: float = 27.5
) -> NotificationBatch:
    labels = {"site": "demo", "building": "main", "room": "a101", "sensor": "a101-t"}
    alert = AlertSnapshot(
        id="al-1",
        fingerprint="fp1",
        rule_id="climate-band",
        rule_kind="band",
        severity=Severity.CRITICAL,
        labels=labels,
        state=AlertState.FIRING,
        value=value,
        summary="温度超出库房范围",
        limit="14–24 °C",
        started_at_ns=1_767_225_600_000_000_000,
    )
    return NotificationBatch(
        id=batch_id,
        kind=kind,
        group_key="a101/critical",
        group_labels={"building": "main", "room": "a101", "severity": "critical"},
        severity=Severity.CRITICAL,
        alerts=(alert,),
        created_at_ns=1_767_225_600_000_000_000,
    )


@dataclass
class Rig:
    db: StateDB
    clock: ManualClock
    contacts: Contacts
    outbox: Outbox
    worker: DeliveryWorker
    events: ListSink
    metrics: Metrics

    async def drain(self, rounds: int = 50) -> None:
        """Run the worker, advancing the clock to each next due time, until nothing is due."""
        for _ in range(rounds):
            delay = await self.worker.run_once()
            if delay is None:
                return
            self.clock.advance(delay)
        raise AssertionError("outbox did not drain")


def make_rig(
    db: StateDB,
    contacts: Contacts,
    *,
    clock: ManualClock | None = None,
    policy: DeliveryPolicy | None = None,
    events: ListSink | None = None,
    metrics: Metrics | None = None,
    on_delivered: Callable[[OutboxMessage], Awaitable[None]] | None = None,
) -> Rig:
    clock = clock or ManualClock()
    outbox = Outbox(db, clock, contacts=contacts, names={"a101": "一号库房"})
    events = events or ListSink()
    metrics = metrics or Metrics()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    worker = DeliveryWorker(
        outbox,
        contacts,
        db=db,
        events=events,
        metrics=metrics,
        clock=clock,
        policy=policy or DeliveryPolicy(attempts_per_url=3, backoff_initial_s=5),
        sleep=sleep,
        on_delivered=on_delivered,
    )
    return Rig(db, clock, contacts, outbox, worker, events, metrics)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    state.migrate()
    yield state
    state.close()


async def wait_for(condition: Any, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_delivered_once_with_the_chinese_message(
    db: StateDB, receiver: RecordingServer
) -> None:
    contacts = make_contacts({"keeper": [receiver.url("/keeper")]})
    told: list[tuple[str | None, str]] = []

    async def on_delivered(message: OutboxMessage) -> None:
        told.append((message.batch_id, message.contact_id))

    rig = make_rig(db, contacts, on_delivered=on_delivered)
    rig.outbox._on_enqueue = rig.worker.wake
    task = asyncio.create_task(rig.worker.run())
    try:
        assert await rig.outbox.enqueue_batch(make_batch()) == ["keeper"]
        await wait_for(lambda: rig.outbox.counts().get("delivered") == 1)
        await wait_for(lambda: len(told) == 1)
    finally:
        task.cancel()
    assert told == [("b1", "keeper")]  # reported for resolution notices
    assert receiver.paths() == ["/keeper"]
    payload = receiver.requests[0].json()
    assert "一号库房" in payload["title"] and "紧急" in payload["title"]
    assert "温度超出库房范围" in payload["message"]
    assert "27.5" in payload["message"] and "14–24 °C" in payload["message"]
    assert "2026-01-01 08:00:00" in payload["message"]  # since when, in Asia/Shanghai
    assert rig.metrics.get("notifications_sent", channel="json") == 1
    sent = audit.entries(db, action="notification.sent")
    assert len(sent) == 1
    assert sent[0].detail["channel"] == "json" and sent[0].detail["alert_ids"] == ["al-1"]
    assert str(receiver.port) not in sent[0].detail_json  # the URL is never in the audit log
    # Whom, through which channel: also in the store's events (Grafana annotations).
    [event] = rig.events.events
    assert event.kind == "notification_sent" and event.severity == "critical"
    assert event.tags == {
        "contact": "keeper",
        "channel": "json",
        "notification": "firing",
        "alert_id": "al-1",
    }
    assert event.drill_id is None and "一号库房" in event.title + event.text
    assert str(receiver.port) not in repr(event)  # nor in the event
    # The same batch handed over again (a crash in dispatch) is not sent twice.
    await rig.outbox.enqueue(make_batch())
    await rig.drain()
    assert receiver.paths() == ["/keeper"]


async def test_receiver_down_is_retried_with_backoff_and_arrives_when_it_returns(
    db: StateDB, receiver: RecordingServer
) -> None:
    port = receiver.port
    receiver.stop()
    contacts = make_contacts({"keeper": [f"json://127.0.0.1:{port}/keeper"]})
    rig = make_rig(db, contacts, policy=DeliveryPolicy(attempts_per_url=5, backoff_initial_s=5))
    await rig.outbox.enqueue(make_batch())
    dues = []
    for _ in range(3):  # three attempts while it is down
        delay = await rig.worker.run_once()
        assert delay is not None
        dues.append(delay)
        rig.clock.advance(delay)
    assert dues == [5.0, 10.0, 20.0]  # exponential backoff, in simulated time
    receiver.port = port
    receiver.start()
    await rig.drain()
    assert receiver.paths() == ["/keeper"]
    (msg,) = rig.outbox.all()
    assert msg.status == "delivered" and msg.attempts_total == 4


async def test_failover_to_the_second_url_after_the_configured_attempts(
    db: StateDB, receiver: RecordingServer
) -> None:
    receiver.statuses["/first"] = [503]
    contacts = make_contacts({"keeper": [receiver.url("/first"), receiver.url("/second")]})
    rig = make_rig(db, contacts, policy=DeliveryPolicy(attempts_per_url=3, backoff_initial_s=1))
    await rig.outbox.enqueue(make_batch())
    await rig.drain()
    assert receiver.paths() == ["/first", "/first", "/first", "/second"]
    (msg,) = rig.outbox.all()
    assert msg.status == "delivered" and msg.url_index == 1


async def test_a_client_error_fails_over_at_once(db: StateDB, receiver: RecordingServer) -> None:
    receiver.statuses["/first"] = [403]
    contacts = make_contacts({"keeper": [receiver.url("/first"), receiver.url("/second")]})
    rig = make_rig(db, contacts)
    await rig.outbox.enqueue(make_batch())
    await rig.drain()
    assert receiver.paths() == ["/first", "/second"]


async def test_all_urls_exhausted_gives_one_event_metric_and_error(
    db: StateDB, receiver: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses["/"] = [500]
    contacts = make_contacts({"keeper": [receiver.url("/a"), receiver.url("/b")]})
    rig = make_rig(db, contacts, policy=DeliveryPolicy(attempts_per_url=2, backoff_initial_s=1))
    await rig.outbox.enqueue(make_batch())
    with caplog.at_level(logging.INFO):
        await rig.drain()
        await rig.drain()  # nothing more happens afterwards
    assert receiver.paths() == ["/a", "/a", "/b", "/b"]
    assert [e.kind for e in rig.events.events] == ["notification_failed"]
    assert rig.events.events[0].tags == {"contact": "keeper"}
    assert rig.metrics.total("notifications_failed") == 1
    assert rig.metrics.total("notifications_sent") == 0
    errors = [
        r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "alerting.delivery"
    ]
    assert len(errors) == 1 and "al-1" in errors[0].getMessage()
    failed = audit.entries(db, action="notification.failed")
    assert len(failed) == 1 and failed[0].detail["channels"] == ["json", "json"]
    assert rig.outbox.counts() == {"failed": 1}


async def test_a_restarted_worker_delivers_pending_messages_exactly_once(
    db: StateDB, tmp_path: Path, receiver: RecordingServer
) -> None:
    port = receiver.port
    receiver.stop()
    contacts = make_contacts(
        {"keeper": [f"json://127.0.0.1:{port}/keeper"], "guard": [f"json://127.0.0.1:{port}/guard"]}
    )
    clock = ManualClock()
    first = make_rig(db, contacts, clock=clock)
    await first.outbox.enqueue(make_batch("b1"))
    await first.outbox.enqueue(make_batch("b2", value=30.0))
    assert await first.worker.run_once() is not None  # both attempted, both failed
    del first
    # "Restart": new objects on the same database file.
    db2 = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        second = make_rig(db2, contacts, clock=clock)
        receiver.port = port
        receiver.start()
        await second.drain()
        assert sorted(receiver.paths()) == ["/guard", "/guard", "/keeper", "/keeper"]
        third = make_rig(db2, contacts, clock=clock)
        clock.advance(3600)
        await third.drain()
        assert len(receiver.paths()) == 4
        assert second.outbox.counts() == {"delivered": 4}
    finally:
        db2.close()


async def test_a_drill_notification_event_is_marked_and_placed(
    db: StateDB, receiver: RecordingServer
) -> None:
    """The notification_sent event carries the alert's place and drill id (from the alert)."""
    from alerting.lifecycle import Alert
    from alerting.state_models import save_alerts

    snap = make_batch().alerts[0]
    labels = {**snap.labels, "drill_id": "d7"}
    save_alerts(
        db,
        [
            Alert(
                id=snap.id,
                fingerprint=snap.fingerprint,
                rule_id=snap.rule_id,
                rule_kind=snap.rule_kind,
                severity=snap.severity,
                labels=labels,
                state=AlertState.FIRING,
                started_at_ns=snap.started_at_ns,
                last_active_ns=snap.started_at_ns,
                fired_at_ns=snap.started_at_ns,
            )
        ],
    )
    rig = make_rig(db, make_contacts({"keeper": [receiver.url("/keeper")]}))
    await rig.outbox.enqueue(make_batch())
    await rig.drain()
    [event] = rig.events.events
    assert event.kind == "notification_sent" and event.drill_id == "d7"
    assert event.all_tags()["drill_id"] == "d7"
    assert (event.tags["site"], event.tags["building"], event.tags["room"]) == (
        "demo",
        "main",
        "a101",
    )
