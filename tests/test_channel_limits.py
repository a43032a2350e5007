"""Channel limits: a burst to one robot stays within its budget with every alert mentioned,
and an over-long WeCom message is summarised at a line boundary.

The real apprise plugins post to the local recording server (their endpoint pointed at it,
as in the notifier contract kit); counts come from its requests and from the outbox rows
(send times on the manual clock), never from elapsed time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from apprise.plugins import dingtalk, wecombot

from alerting.contacts import Contacts, ContactsFile
from alerting.delivery import DeliveryPolicy, DeliveryWorker
from alerting.model import AlertSnapshot, AlertState, NotificationBatch, Severity
from alerting.notifiers import notifier_for
from alerting.notifiers.builtin import WeChatNotifier, WeComBotNotifier
from alerting.outbox import Outbox
from alerting.ratelimit import Budget, ChannelLimiter, fit_summary
from gateway.clock import ManualClock
from gateway.metrics import Metrics
from gateway.reading import Event
from gateway.statedb import StateDB
from tests.receiver import RecordingServer

MINUTE_NS = 60 * 1_000_000_000


class _Events:
    async def emit(self, event: Event) -> None:
        pass


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    state.migrate()
    yield state
    state.close()


@pytest.fixture
def robots(monkeypatch: pytest.MonkeyPatch, server: RecordingServer) -> RecordingServer:
    """DingTalk and WeCom robots answered by the recording server."""
    ding = f"http://127.0.0.1:{server.port}/ding?access_token={{token}}"
    monkeypatch.setattr(dingtalk.NotifyDingTalk, "notify_url", ding)
    wecom = f"http://127.0.0.1:{server.port}/wecom?key={{key}}"
    monkeypatch.setattr(wecombot.NotifyWeComBot, "notify_url", wecom)
    for cls in (dingtalk.NotifyDingTalk, wecombot.NotifyWeComBot):
        monkeypatch.setattr(cls, "request_rate_per_sec", 0)  # apprise's own pacing: not tested
    return server


def alert(i: int, room: str) -> AlertSnapshot:
    return AlertSnapshot(
        id=f"al-{i}",
        fingerprint=f"fp{i}",
        rule_id="offline",
        rule_kind="offline",
        severity=Severity.CRITICAL,
        labels={"site": "s", "building": "main", "room": room, "sensor": f"{room}-t"},
        state=AlertState.FIRING,
        value=None,
        summary="传感器离线（停电？）",
        limit="",
        started_at_ns=1_767_225_600_000_000_000,
    )


def batch(batch_id: str, alerts: list[AlertSnapshot]) -> NotificationBatch:
    room = alerts[0].labels["room"]
    return NotificationBatch(
        id=batch_id,
        kind="firing",
        group_key=f"{room}/critical",
        group_labels={"room": room, "severity": "critical"},
        severity=Severity.CRITICAL,
        alerts=tuple(alerts),
        created_at_ns=1_767_225_600_000_000_000,
    )


def rig(
    db: StateDB, urls: dict[str, str], *, budgets: dict[str, Budget] | None = None
) -> tuple[ManualClock, Outbox, DeliveryWorker]:
    clock = ManualClock()
    data = {"contacts": [{"id": cid, "urls": [url]} for cid, url in urls.items()]}
    contacts = Contacts(ContactsFile.model_validate(data, context={"env": {}}))
    outbox = Outbox(db, clock, contacts=contacts)
    limiter = None
    if budgets is not None:
        limiter = ChannelLimiter(db, outbox, contacts, clock, budgets=budgets)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    worker = DeliveryWorker(
        outbox,
        contacts,
        db=db,
        events=_Events(),
        metrics=Metrics(),
        clock=clock,
        policy=DeliveryPolicy(),
        sleep=sleep,
        limiter=limiter,
    )
    return clock, outbox, worker


async def drain(clock: ManualClock, worker: DeliveryWorker) -> None:
    for _ in range(50):
        delay = await worker.run_once()
        if delay is None:
            return
        clock.advance(delay)
    raise AssertionError("outbox did not drain")


def sends_per_window(times: list[int]) -> int:
    """The most sends that fall in any one-minute window."""
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + MINUTE_NS) for start in times)


async def test_a_burst_of_30_to_one_dingtalk_robot_stays_within_20_a_minute(
    db: StateDB, robots: RecordingServer
) -> None:
    clock, outbox, worker = rig(db, {"duty-group": "dingtalk://t0ken/"})
    rooms = [f"r{i:02d}" for i in range(30)]  # a power cut: every room's sensors offline
    for i, room in enumerate(rooms):
        await outbox.enqueue_batch(batch(f"b{i}", [alert(i, room)]))
    await drain(clock, worker)

    posts = [r for r in robots.requests if r.path.startswith("/ding")]
    assert 1 <= len(posts) <= 20
    sent = " ".join(json.dumps(r.json(), ensure_ascii=False) for r in posts)
    assert all(room in sent for room in rooms), "every alert is mentioned"
    rows = outbox.all()
    delivered = [m for m in rows if m.status == "delivered"]
    assert len(delivered) == len(posts)
    assert sends_per_window([m.finished_at_ns or 0 for m in delivered]) <= 20
    # Nothing dropped: every original row was sent, or merged into a summary that was.
    merged = [m for m in rows if m.status == "merged"]
    assert {m.status for m in rows} <= {"delivered", "merged"}
    covered = {a for m in delivered for a in m.alert_ids}
    assert covered == {f"al-{i}" for i in range(30)}
    assert len(merged) + len([m for m in delivered if m.kind == "firing"]) == 30
    summary = next(m for m in delivered if m.kind == "summary")
    assert summary.subject.startswith("[紧急] 告警汇总：")


async def test_no_budget_left_waits_for_the_window_then_sends_one_summary(
    db: StateDB, robots: RecordingServer
) -> None:
    clock, outbox, worker = rig(
        db, {"duty-group": "dingtalk://t0ken/"}, budgets={"dingtalk": Budget(3, 60.0)}
    )
    for i in range(3):
        await outbox.enqueue_batch(batch(f"a{i}", [alert(i, f"a{i}")]))
    await drain(clock, worker)
    assert len(robots.requests) == 3  # within budget: one by one, as usual
    clock.advance(10)
    for i in range(3, 8):
        await outbox.enqueue_batch(batch(f"b{i}", [alert(i, f"b{i}")]))
    delay = await worker.run_once()
    assert len(robots.requests) == 3  # budget spent: nothing sent, nothing lost
    assert delay is not None and delay == pytest.approx(50.0)
    await drain(clock, worker)
    assert len(robots.requests) == 4  # the five waiting messages, as one summary
    text = json.dumps(robots.requests[-1].json(), ensure_ascii=False)
    assert all(f"b{i}" in text for i in range(3, 8))
    delivered = [m for m in outbox.all() if m.status == "delivered"]
    assert sends_per_window([m.finished_at_ns or 0 for m in delivered]) <= 3


async def test_other_channels_are_not_limited(db: StateDB, server: RecordingServer) -> None:
    clock, outbox, worker = rig(db, {"hook": server.url("/hook")})
    for i in range(30):
        await outbox.enqueue_batch(batch(f"b{i}", [alert(i, f"r{i}")]))
    await drain(clock, worker)
    assert len(server.requests) == 30


async def test_a_wecom_message_over_4096_bytes_is_summarised_not_cut(
    db: StateDB, robots: RecordingServer
) -> None:
    clock, outbox, worker = rig(db, {"group": "wecombot://k3y"})
    alerts = [alert(i, f"第{i:02d}号档案库房") for i in range(60)]
    await outbox.enqueue_batch(batch("big", alerts))
    (row,) = outbox.all()
    assert len(row.body.encode("utf-8")) > 4096
    await drain(clock, worker)
    (post,) = [r for r in robots.requests if r.path.startswith("/wecom")]
    payload = post.json()
    content = payload[payload["msgtype"]]["content"]  # text or markdown
    assert len(content.encode("utf-8")) <= WeComBotNotifier.body_limit
    lines = content.split("\n")
    assert lines[-1] == "…共 60 条"
    assert lines[0] == row.subject  # WeCom has no title field: the title leads the body
    original = row.body.split("\n")
    assert lines[1:-1] == original[: len(lines) - 2]  # whole lines, none cut in the middle
    assert len(lines) > 5


@pytest.mark.parametrize(
    ("url", "limit"),
    [
        ("wecombot://k3y", WeComBotNotifier.body_limit),
        ("wechat://corp:secret@1000002/@all", WeChatNotifier.body_limit),
        ("dingtalk://t0ken/", 20_000),
    ],
)
@pytest.mark.parametrize("language", ["zh", "en"])
def test_fit_summary_keeps_whole_lines_within_the_limit(
    url: str, limit: int, language: str
) -> None:
    notifier = notifier_for(url)
    lines = [f"第{i}行：温度超出库房范围；当前值 27.5；限值 14–24 °C" for i in range(2000)]
    title, body = fit_summary(notifier, "[紧急] 汇总", "\n".join(lines), language=language)
    assert notifier.measure(body) <= limit
    marker = "…共 2000 条" if language == "zh" else "… 2000 in total"
    assert body.endswith("\n" + marker)
    kept = body.split("\n")[:-1]
    if not notifier.has_title:
        assert kept[0] == "[紧急] 汇总" and title == ""
        kept = kept[1:]
    assert kept == lines[: len(kept)]


def test_a_short_body_is_left_alone() -> None:
    notifier = notifier_for("wecombot://k3y")
    assert fit_summary(notifier, "标题", "一行") == ("", "标题\n一行")
