"""One contract kit run against every registered notifier (Alertmanager's notify test kit).

Each case points the real apprise plugin at the local recording server: self-hosted
services (json, ntfy, smseagle, generic) by their own URL; cloud services (WeCom, DingTalk,
Feishu, Lark) by pointing the plugin class's endpoint attribute at it. mailto has no HTTP
status, so it runs the unreachable case only. Every case checks that no secret of its URL
appears in a log record (DEBUG included), an error text or a repr.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from apprise.plugins import dingtalk, feishu, lark, wechat, wecombot
from pydantic import ValidationError

from alerting.contacts import ContactsFile
from alerting.delivery import DeliveryPolicy, send_once
from alerting.notifiers import NOTIFIERS, Attempt, Notifier, notifier_for
from gateway.statedb import StateDB
from tests import receiver as recording
from tests.test_delivery_e2e import RecordingServer, make_batch, make_contacts, make_rig

SECRET = "S3cr3tT0ken"


@dataclass(frozen=True)
class Case:
    scheme: str
    url: Callable[[int], str]  # URL for a server on this port
    send_path: str  # path prefix of the request that carries the message
    redirect: Callable[[pytest.MonkeyPatch, int], None] | None = None
    http: bool = True


def _point(cls: type, attr: str, template: str) -> Callable[[pytest.MonkeyPatch, int], None]:
    def apply(mp: pytest.MonkeyPatch, port: int) -> None:
        mp.setattr(cls, attr, template.format(port=port, key="{key}", token="{token}"))
        # apprise throttles some plugins (Lark: 5.5 s per request); not what is tested here.
        mp.setattr(cls, "request_rate_per_sec", 0)

    return apply


def _wechat(mp: pytest.MonkeyPatch, port: int) -> None:
    mp.setattr(wechat.NotifyWeChat, "token_url", f"http://127.0.0.1:{port}/gettoken")
    mp.setattr(wechat.NotifyWeChat, "notify_url", f"http://127.0.0.1:{port}/wechat")
    # Two requests per send (token, message) on one plugin object: skip the 5.5 s throttle.
    mp.setattr(wechat.NotifyWeChat, "request_rate_per_sec", 0)


def _sms_provider(mp: pytest.MonkeyPatch, port: int) -> None:
    # Aliyun and Tencent answer 200 with a body that says whether the SMS was accepted.
    ok = {**json.loads(recording.OK_BODY), "Code": "OK", "Response": {"SendStatusSet": []}}
    mp.setattr(recording, "OK_BODY", json.dumps(ok).encode())


CASES = [
    Case(
        "wecombot",
        lambda p: f"wecombot://{SECRET}wecom",
        "/wecom",
        _point(wecombot.NotifyWeComBot, "notify_url", "http://127.0.0.1:{port}/wecom?key={key}"),
    ),
    Case("wechat", lambda p: f"wechat://corp1:{SECRET}wechat@1000002/@all", "/wechat", _wechat),
    Case(
        "dingtalk",
        lambda p: f"dingtalk://{SECRET}ding/",
        "/ding",
        _point(
            dingtalk.NotifyDingTalk,
            "notify_url",
            "http://127.0.0.1:{port}/ding?access_token={token}",
        ),
    ),
    Case(
        "feishu",
        lambda p: f"feishu://{SECRET}feishu",
        "/feishu",
        _point(feishu.NotifyFeishu, "notify_url", "http://127.0.0.1:{port}/feishu/{token}/"),
    ),
    Case(
        "lark",
        lambda p: f"lark://{SECRET}lark",
        "/lark",
        _point(lark.NotifyLark, "notify_url", "http://127.0.0.1:{port}/lark/"),
    ),
    Case(
        "smseagle",
        lambda p: f"smseagle://{SECRET}sms@127.0.0.1:{p}/8613800000000",
        "/",
    ),
    Case(
        "aliyunsms",
        lambda p: (
            f"aliyunsms://ak:{SECRET}ali@sign/SMS_1/13800000000?endpoint=http://127.0.0.1:{p}"
        ),
        "/",
        _sms_provider,
    ),
    Case(
        "tencentsms",
        lambda p: (
            f"tencentsms://id:{SECRET}tc@1400000001/s/1/13800000000?endpoint=http://127.0.0.1:{p}"
        ),
        "/",
        _sms_provider,
    ),
    Case("json", lambda p: f"json://duty:{SECRET}json@127.0.0.1:{p}/hook", "/hook"),
    Case("ntfy", lambda p: f"ntfy://duty:{SECRET}ntfy@127.0.0.1:{p}/{SECRET}topic", "/"),
    Case(
        "mailto",
        lambda p: (
            f"mailto://duty:{SECRET}mail@127.0.0.1:{p}?to=keeper@example.cn&from=aw@example.cn"
        ),
        "/",
        http=False,
    ),
    Case("generic", lambda p: f"form://duty:{SECRET}form@127.0.0.1:{p}/form", "/form"),
]
HTTP_CASES = [c for c in CASES if c.http]


def test_every_registered_notifier_has_a_case() -> None:
    covered = {c.scheme for c in CASES}
    for scheme, cls in NOTIFIERS.items():
        assert cls.channel in covered, f"no contract case for {scheme}"
    assert notifier_for("form://x/y").channel == "generic"


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_secret(caplog: pytest.LogCaptureFixture, *texts: object) -> None:
    for record in caplog.records:
        assert SECRET not in record.getMessage(), f"{record.name} leaked: {record.getMessage()}"
        if record.exc_text:
            assert SECRET not in record.exc_text
    for text in texts:
        assert SECRET not in str(text) and SECRET not in repr(text)


def _setup(case: Case, server: RecordingServer, mp: pytest.MonkeyPatch) -> Notifier:
    if case.redirect is not None:
        case.redirect(mp, server.port)
    return notifier_for(case.url(server.port))


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.scheme)
def test_accepted_message_is_one_request_within_the_body_limit(
    case: Case,
    server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    notifier = _setup(case, server, monkeypatch)
    title, body = notifier.fit("[紧急] 一号库房 告警", "温度超出库房范围。" * 30_000)
    assert notifier.measure(body) <= notifier.body_limit
    assert body.endswith("…（已截断）")
    attempt = send_once(notifier, title, body)
    assert attempt.ok, attempt.detail
    sends = [
        p for p in server.paths() if p.startswith(case.send_path) and not p.startswith("/gettoken")
    ]
    assert len(sends) == 1  # not split into several messages
    assert_no_secret(debug_logs, attempt, notifier, notifier.label)


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.scheme)
@pytest.mark.parametrize(
    ("status", "recoverable"), [(503, True), (500, True), (429, True), (400, False), (403, False)]
)
def test_http_failures_are_classified(
    case: Case,
    status: int,
    recoverable: bool,
    server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    notifier = _setup(case, server, monkeypatch)
    server.statuses[case.send_path] = [status]
    attempt = send_once(notifier, "t", "body")
    assert not attempt.ok
    assert attempt.status == status
    assert notifier.classify(attempt) is recoverable
    assert_no_secret(debug_logs, attempt, notifier)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.scheme)
def test_unreachable_service_is_recoverable(
    case: Case,
    server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    notifier = _setup(case, server, monkeypatch)
    server.stop()  # nothing listens on the port any more
    attempt = send_once(notifier, "t", "body")
    assert not attempt.ok and attempt.status is None
    assert notifier.classify(attempt) is True
    assert_no_secret(debug_logs, attempt, notifier)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.scheme)
def test_a_url_apprise_refuses_is_not_retried(
    case: Case, debug_logs: pytest.LogCaptureFixture
) -> None:
    scheme = "form" if case.scheme == "generic" else case.scheme
    # apprise accepts a bare ntfy:// (the cloud, no topic); an unknown mode it refuses.
    url = "ntfy://h/t?mode=nope" if scheme == "ntfy" else f"{scheme}://"
    notifier = notifier_for(url)
    attempt = send_once(notifier, "t", "body")
    assert attempt == Attempt(ok=False, invalid=True, detail="apprise refused the URL")
    assert notifier.classify(attempt) is False


@pytest.mark.parametrize("case", HTTP_CASES, ids=lambda c: c.scheme)
@pytest.mark.parametrize(("status", "attempts"), [(503, 3), (400, 1)])
async def test_worker_retries_recoverable_and_fails_over_otherwise(
    case: Case,
    status: int,
    attempts: int,
    server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch,
    debug_logs: pytest.LogCaptureFixture,
    tmp_path: object,
) -> None:
    _setup(case, server, monkeypatch)
    server.statuses["/fallback"] = [200]  # first: "/" (ntfy, smseagle) would match it too
    server.statuses[case.send_path] = [status]
    contacts = make_contacts({"keeper": [case.url(server.port), server.url("/fallback")]})
    db = StateDB(f"sqlite:///{tmp_path}/state.sqlite")
    db.migrate()
    try:
        rig = make_rig(db, contacts, policy=DeliveryPolicy(attempts_per_url=3, backoff_initial_s=1))
        await rig.outbox.enqueue(make_batch())
        await rig.drain()
        paths = [p for p in server.paths() if not p.startswith("/gettoken")]
        assert paths[-1] == "/fallback"
        assert len(paths) == attempts + 1
        assert rig.outbox.counts() == {"delivered": 1}
        assert_no_secret(debug_logs, rig.outbox.all(), contacts.get("keeper"), contacts)
    finally:
        db.close()


def test_contact_repr_and_validation_errors_hide_urls() -> None:
    data = {"contacts": [{"id": "k", "urls": [f"wecombot://{SECRET}"]}]}
    contact = ContactsFile.model_validate(data, context={"env": {}}).contacts[0]
    assert SECRET not in repr(contact) and SECRET not in str(contact)
    assert SECRET not in str(contact.channels)
    bad = {"contacts": [{"id": "k", "urls": [f"nosuchscheme://{SECRET}"]}]}
    with pytest.raises(ValidationError) as info:
        ContactsFile.model_validate(bad, context={"env": {}})
    assert SECRET not in str(info.value.errors(include_input=False))
