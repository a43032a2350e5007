"""The outbox: durable enqueue, de-duplication, retry state, rendering, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses

from alerting.contacts import Contacts, ContactsFile
from alerting.dispatch import NotificationSink
from alerting.outbox import Outbox
from alerting.templates import render
from gateway.clock import ManualClock
from gateway.statedb import StateDB
from tests.test_delivery_e2e import make_batch


def contacts() -> Contacts:
    data = {
        "contacts": [
            {
                "id": "keeper",
                "urls": ["json://127.0.0.1:9/k"],
                "routes": [{"severities": ["warning", "critical"], "rooms": ["a101"]}],
            },
            {"id": "guard", "language": "en", "urls": ["json://127.0.0.1:9/g"]},
            {"id": "other", "urls": ["json://127.0.0.1:9/o"], "routes": [{"rooms": ["b9"]}]},
        ]
    }
    return Contacts(ContactsFile.model_validate(data, context={"env": {}}))


async def test_an_enqueued_batch_survives_a_restart_and_is_stored_once(
    db: StateDB, db_url: str
) -> None:
    clock = ManualClock()
    outbox = Outbox(db, clock, contacts=contacts(), names={"a101": "一号库房"})
    sink: NotificationSink = outbox  # what the dispatcher is handed
    await sink.enqueue(make_batch("b0"))
    told = await outbox.enqueue_batch(make_batch("b1"))
    assert told == ["keeper", "guard"]  # routed: "other" watches room b9 only
    # A second process (new engine) sees the rows as soon as enqueue returned.
    other = StateDB(db_url)
    try:
        again = Outbox(other, clock, contacts=contacts())
        rows = again.all()
        assert [(m.contact_id, m.status, m.dedup_key) for m in rows] == [
            ("keeper", "pending", "b0:keeper"),
            ("guard", "pending", "b0:guard"),
            ("keeper", "pending", "b1:keeper"),
            ("guard", "pending", "b1:guard"),
        ]
        assert rows[2].alert_ids == ("al-1",) and rows[2].batch_id == "b1"
        assert "一号库房" in rows[0].subject
        assert rows[1].subject.startswith("[CRITICAL]")
        await again.enqueue(make_batch("b1"))  # handed over again after a crash
        assert len(again.all()) == 4
    finally:
        other.close()


async def test_explicit_recipients_are_used_and_unknown_ones_skipped(db: StateDB) -> None:
    outbox = Outbox(db, ManualClock(), contacts=contacts())
    batch = dataclasses.replace(make_batch("r1", kind="resolved"), recipients=("other", "gone"))
    assert await outbox.enqueue_batch(batch) == ["other"]


async def test_enqueue_message_dedups_on_its_key(db: StateDB) -> None:
    outbox = Outbox(db, ManualClock())
    for _ in range(2):
        await outbox.enqueue_message(
            "keeper",
            "主题",
            "正文",
            alert_ids=["a"],
            kind="firing",
            severity="critical",
            dedup_key="k1",
        )
    (msg,) = outbox.all()
    assert (msg.subject, msg.body, msg.short_body) == ("主题", "正文", None)


async def test_retry_state_due_order_and_final_states(db: StateDB) -> None:
    clock = ManualClock()
    outbox = Outbox(db, clock)
    for key in ("m1", "m2", "m3"):
        await outbox.enqueue_message(
            "keeper", key, "b", alert_ids=[key], kind="firing", severity="warning", dedup_key=key
        )
    m1, m2, m3 = outbox.all()
    outbox.record_attempt(
        m1.id, url_index=0, attempt=1, due_at_ns=clock.now_ns() + 10**10, error="x"
    )
    assert [m.subject for m in outbox.due()] == ["m2", "m3"]
    assert outbox.next_due_ns() == clock.now_ns()
    outbox.mark_delivered(m2.id, channel="json", url_index=0)
    outbox.mark_failed(m3.id, error="every URL")
    assert outbox.due() == []
    assert outbox.next_due_ns() == clock.now_ns() + 10**10
    clock.advance(10)
    (due,) = outbox.due()
    assert (due.id, due.attempt, due.attempts_total, due.last_error) == (m1.id, 1, 1, "x")
    assert outbox.counts() == {"pending": 1, "delivered": 1, "failed": 1}
    delivered = outbox.get(m2.id)
    assert delivered is not None and delivered.channel == "json"
    assert delivered.finished_at_ns == clock.now_ns() - 10**10


def test_templates_chinese_english_and_short() -> None:
    batch = make_batch()
    subject, body = render(batch, names={"a101": "一号库房"})
    assert subject == "[紧急] 一号库房（a101） 告警"
    assert body == (
        "一号库房（a101）：温度超出库房范围；当前值 27.5；限值 14–24 °C；自 2026-01-01 08:00:00 起"
    )
    subject_en, body_en = render(batch, language="en")
    assert subject_en == "[CRITICAL] a101 alert"
    assert "value 27.5; limit 14–24 °C; since 2026-01-01 08:00:00" in body_en
    _, short = render(batch, short=True, names={"a101": "一号库房"})
    assert short.startswith("[紧急] 一号库房（a101） 告警 ") and "01-01 08:00" in short
    drill = dataclasses.replace(batch, drill_id="d1", kind="resolved")
    assert render(drill)[0] == "【演练】[紧急] a101 已恢复"
