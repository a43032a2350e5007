"""The Aliyun and Tencent Cloud SMS apprise plugins against a recording HTTP server.

No provider is reachable here, so each URL's ``endpoint`` points at a server on 127.0.0.1
that records the exact request (method, path, headers, body) and answers as the provider
would: its success JSON, or its error JSON with the provider's codes. The signatures the
server receives are checked with the independent reference implementations.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import apprise
import pytest

from alerting.delivery import DeliveryPolicy, send_once
from alerting.notifiers import Notifier, notifier_for
from alerting.notifiers.aliyun_sms import NotifyAliyunSms
from alerting.notifiers.tencent_sms import NotifyTencentSms
from alerting.templates import render
from gateway.statedb import StateDB
from tests.test_delivery_e2e import make_batch, make_contacts, make_rig
from tests.test_sms_signing import _aliyun_reference, tencent_reference_signature

KEY_ID = "LTAIk3yId0001"
SECRET = "S3cr3tSmsK3y"
SIGN = "档案馆"
ALIYUN_OK = {"Code": "OK", "Message": "OK", "BizId": "9006197469364984", "RequestId": "r1"}
TENCENT_OK = {
    "Response": {
        "SendStatusSet": [
            {"SerialNo": "5000:1", "PhoneNumber": "+8613800000000", "Code": "Ok", "Fee": 1}
        ],
        "RequestId": "r1",
    }
}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ProviderServer:
    """Records requests; answers ``replies`` in turn (the last repeats) as (status, JSON)."""

    replies: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with owner._lock:
                    owner.requests.append(
                        Request(self.command, self.path, dict(self.headers.items()), body)
                    )
                    script = owner.replies
                    status, reply = script.pop(0) if len(script) > 1 else script[0]
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    srv = ProviderServer()
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def aliyun_url(port: int, *phones: str, query: str = "") -> str:
    targets = "/".join(phones or ("13800000000",))
    return (
        f"aliyunsms://{KEY_ID}:{SECRET}@{quote(SIGN)}/SMS_476230001/{targets}"
        f"?endpoint=http://127.0.0.1:{port}{query}"
    )


def tencent_url(port: int, *phones: str, query: str = "") -> str:
    targets = "/".join(phones or ("13800000000",))
    return (
        f"tencentsms://{KEY_ID}:{SECRET}@1400000001/{quote(SIGN)}/2215541/{targets}"
        f"?endpoint=http://127.0.0.1:{port}{query}"
    )


def short_text() -> tuple[str, str]:
    """What the delivery worker hands an SMS notifier: the short Chinese template."""
    title, body = render(make_batch(value=31.5), names={"a101": "一号库房"}, short=True)
    return title, body + " 确认码 A7K2"


def assert_no_secret(caplog: pytest.LogCaptureFixture, *texts: object) -> None:
    for record in caplog.records:
        message = record.getMessage()
        assert SECRET not in message, f"{record.name} leaked: {message}"
        assert KEY_ID not in message, f"{record.name} leaked: {message}"
    for text in texts:
        for secret in (SECRET, KEY_ID):
            assert secret not in str(text) and secret not in repr(text)


# ------------------------------------------------------------------ the exact requests


def test_aliyun_sends_one_signed_form_post(
    server: ProviderServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    server.replies = [(200, ALIYUN_OK)]
    notifier = notifier_for(aliyun_url(server.port, "13800000000", "13900000000"))
    before = datetime.now(UTC).replace(microsecond=0)
    attempt = send_once(notifier, *short_text())
    assert attempt.ok, attempt.detail
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/")
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    params = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
    assert {k: params[k] for k in ("Action", "Version", "Format", "RegionId")} == {
        "Action": "SendSms",
        "Version": "2017-05-25",
        "Format": "JSON",
        "RegionId": "cn-hangzhou",
    }
    assert params["AccessKeyId"] == KEY_ID
    assert params["SignatureMethod"] == "HMAC-SHA1" and params["SignatureVersion"] == "1.0"
    assert params["PhoneNumbers"] == "13800000000,13900000000"
    assert params["SignName"] == SIGN
    assert params["TemplateCode"] == "SMS_476230001"
    assert json.loads(params["TemplateParam"]) == {
        "severity": "紧急",
        "room": "一号库房（a101）",
        "value": "31.5",
        "code": "A7K2",
    }
    sent_at = datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= sent_at <= datetime.now(UTC)
    unsigned = {k: v for k, v in params.items() if k != "Signature"}
    assert params["Signature"] == _aliyun_reference(SECRET, "POST", unsigned)
    assert_no_secret(debug_logs, attempt, notifier)


def test_aliyun_uses_a_fresh_nonce_per_request(server: ProviderServer) -> None:
    server.replies = [(200, ALIYUN_OK)]
    notifier = notifier_for(aliyun_url(server.port))
    assert send_once(notifier, *short_text()).ok
    assert send_once(notifier, *short_text()).ok
    nonces = {dict(parse_qsl(r.body.decode()))["SignatureNonce"] for r in server.requests}
    assert len(nonces) == 2


def test_tencent_sends_one_signed_json_post(
    server: ProviderServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    server.replies = [(200, TENCENT_OK)]
    url = tencent_url(server.port, "13800000000", "+85251234567", query="&region=ap-beijing")
    notifier = notifier_for(url)
    attempt = send_once(notifier, *short_text())
    assert attempt.ok, attempt.detail
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/")
    headers = request.headers
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Host"] == f"127.0.0.1:{server.port}"
    assert headers["X-TC-Action"] == "SendSms"
    assert headers["X-TC-Version"] == "2021-01-11"
    assert headers["X-TC-Region"] == "ap-beijing"
    assert json.loads(request.body) == {
        "PhoneNumberSet": ["+8613800000000", "+85251234567"],
        "SmsSdkAppId": "1400000001",
        "SignName": SIGN,
        "TemplateId": "2215541",
        # Tencent's notification variables hold 6 characters: the room by its name.
        "TemplateParamSet": ["紧急", "一号库房", "31.5", "A7K2"],
    }
    ts = int(headers["X-TC-Timestamp"])
    date = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
    expected = tencent_reference_signature(
        SECRET, host=headers["Host"], body=request.body, ts=ts, service="sms"
    )
    assert headers["Authorization"] == (
        f"TC3-HMAC-SHA256 Credential={KEY_ID}/{date}/sms/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={expected}"
    )
    assert_no_secret(debug_logs, attempt, notifier)


def test_template_variables_follow_the_params_option(server: ProviderServer) -> None:
    server.replies = [(200, TENCENT_OK)]
    url = tencent_url(server.port, query="&params=room,severity,code&varlen=12")
    assert send_once(notifier_for(url), *short_text()).ok
    sent = json.loads(server.requests[0].body)["TemplateParamSet"]
    assert sent == ["一号库房（a101）", "紧急", "A7K2"]


# ------------------------------------------------------------ provider errors


@dataclass(frozen=True)
class ErrorCase:
    name: str
    status: int
    reply: Any
    recoverable: bool


ALIYUN_ERRORS = [
    ErrorCase(
        "throttled", 200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发流控"}, True
    ),
    ErrorCase("user-throttling", 400, {"Code": "Throttling.User", "Message": "busy"}, True),
    ErrorCase("provider-fault", 500, {"Code": "isp.SYSTEM_ERROR", "Message": "系统错误"}, True),
    ErrorCase("bad-signature", 400, {"Code": "SignatureDoesNotMatch", "Message": "x"}, False),
    ErrorCase("unknown-key", 404, {"Code": "InvalidAccessKeyId.NotFound", "Message": "x"}, False),
    ErrorCase("bad-sign-name", 200, {"Code": "isv.SMS_SIGNATURE_ILLEGAL", "Message": "x"}, False),
    ErrorCase("bad-template", 200, {"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "x"}, False),
    ErrorCase("no-balance", 200, {"Code": "isv.AMOUNT_NOT_ENOUGH", "Message": "x"}, False),
]


def _tencent_error(code: str) -> dict[str, Any]:
    return {"Response": {"Error": {"Code": code, "Message": "x"}, "RequestId": "r"}}


def _tencent_status(code: str) -> dict[str, Any]:
    status = {"PhoneNumber": "+8613800000000", "Code": code, "Message": "x"}
    return {"Response": {"SendStatusSet": [status], "RequestId": "r"}}


TENCENT_ERRORS = [
    ErrorCase("throttled", 200, _tencent_error("RequestLimitExceeded"), True),
    ErrorCase(
        "number-rate", 200, _tencent_status("LimitExceeded.PhoneNumberThirtySecondLimit"), True
    ),
    ErrorCase("provider-fault", 200, _tencent_error("InternalError.Timeout"), True),
    ErrorCase("bad-signature", 200, _tencent_error("AuthFailure.SignatureFailure"), False),
    ErrorCase("bad-key", 200, _tencent_error("AuthFailure.SecretIdNotFound"), False),
    ErrorCase(
        "bad-template", 200, _tencent_status("FailedOperation.TemplateIncorrectOrUnapproved"), False
    ),
    ErrorCase(
        "bad-sign-name",
        200,
        _tencent_error("FailedOperation.SignatureIncorrectOrUnapproved"),
        False,
    ),
    ErrorCase(
        "bad-number", 200, _tencent_status("InvalidParameterValue.IncorrectPhoneNumber"), False
    ),
]


def _check_failure(notifier: Notifier, case: ErrorCase, caplog: pytest.LogCaptureFixture) -> None:
    attempt = send_once(notifier, *short_text())
    assert not attempt.ok
    assert notifier.classify(attempt) is case.recoverable
    assert attempt.status == (None if case.status == 200 else case.status)
    assert_no_secret(caplog, attempt, notifier)


@pytest.mark.parametrize("case", ALIYUN_ERRORS, ids=lambda c: c.name)
def test_aliyun_error_codes_fail_and_are_classified(
    case: ErrorCase, server: ProviderServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    server.replies = [(case.status, case.reply)]
    _check_failure(notifier_for(aliyun_url(server.port)), case, debug_logs)


@pytest.mark.parametrize("case", TENCENT_ERRORS, ids=lambda c: c.name)
def test_tencent_error_codes_fail_and_are_classified(
    case: ErrorCase, server: ProviderServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    server.replies = [(case.status, case.reply)]
    _check_failure(notifier_for(tencent_url(server.port)), case, debug_logs)


def test_a_200_without_the_provider_ok_is_a_failure(server: ProviderServer) -> None:
    server.replies = [(200, {"unexpected": True})]
    for url in (aliyun_url(server.port), tencent_url(server.port)):
        attempt = send_once(notifier_for(url), *short_text())
        assert not attempt.ok


# ------------------------------------------------------------ URLs and secrets


def test_apprise_knows_both_schemes_after_import() -> None:
    app = apprise.Apprise()
    assert app.add(f"aliyunsms://{KEY_ID}:{SECRET}@{quote(SIGN)}/SMS_1/13800000000")
    assert app.add(f"tencentsms://{KEY_ID}:{SECRET}@1400000001/{quote(SIGN)}/1/13800000000")
    assert isinstance(app[0], NotifyAliyunSms) and isinstance(app[1], NotifyTencentSms)
    assert app[0].sign_name == SIGN and app[1].sign_name == SIGN
    plugins: list[Any] = list(app)  # apprise's own URL helpers are untyped
    for plugin in plugins:
        shown = plugin.url(privacy=True)
        assert SECRET not in shown and KEY_ID not in shown
        # The full URL round-trips (apprise re-creates plugins from it).
        again = apprise.Apprise()
        assert again.add(plugin.url())
        copy: Any = again[0]
        assert copy.url() == plugin.url()


@pytest.mark.parametrize(
    "url",
    [
        f"aliyunsms://{KEY_ID}:{SECRET}@sign/SMS_1",  # no phone
        f"aliyunsms://{KEY_ID}@sign/SMS_1/13800000000",  # no secret
        f"aliyunsms://{KEY_ID}:{SECRET}@sign/SMS_1/13800000000?params=severity,temp",
        f"tencentsms://{KEY_ID}:{SECRET}@1400000001/sign",  # no template
        f"tencentsms://{KEY_ID}:{SECRET}@1400000001/s/1/13800000000?endpoint=ftp://x",
    ],
    ids=["no-phone", "no-secret", "bad-field", "no-template", "bad-endpoint"],
)
def test_incomplete_urls_are_refused_without_leaking(
    url: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    notifier = notifier_for(url)
    attempt = send_once(notifier, "t", "b")
    assert attempt.invalid and notifier.classify(attempt) is False
    assert_no_secret(debug_logs, attempt, notifier, notifier.label)


def test_unreachable_provider_is_recoverable_and_quiet(
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    srv = ProviderServer()
    srv.start()
    port = srv.port
    srv.stop()
    for url in (aliyun_url(port), tencent_url(port)):
        notifier = notifier_for(url)
        attempt = send_once(notifier, *short_text())
        assert not attempt.ok and attempt.status is None
        assert notifier.classify(attempt) is True
        assert_no_secret(debug_logs, attempt, notifier)


# ------------------------------------------------------------ through the delivery worker


@pytest.mark.parametrize(
    ("reply", "sms_attempts"),
    [
        ({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发流控"}, 3),
        ({"Code": "isv.SMS_TEMPLATE_ILLEGAL", "Message": "模板不合法"}, 1),
    ],
    ids=["throttled-is-retried", "bad-template-fails-over-at-once"],
)
async def test_worker_retries_throttling_and_fails_over_on_a_bad_template(
    reply: dict[str, str],
    sms_attempts: int,
    server: ProviderServer,
    tmp_path: Path,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    # Every SMS attempt gets the provider's error; the fallback json:// URL then gets a 200.
    server.replies = [(200, reply)] * sms_attempts + [(200, {"ok": True})]
    fallback = f"json://127.0.0.1:{server.port}/fallback"
    contacts = make_contacts({"keeper": [aliyun_url(server.port), fallback]})
    db = StateDB(f"sqlite:///{tmp_path}/state.sqlite")
    db.migrate()
    try:
        rig = make_rig(db, contacts, policy=DeliveryPolicy(attempts_per_url=3, backoff_initial_s=1))
        await rig.outbox.enqueue(make_batch())
        await rig.drain()
        paths = [r.path for r in server.requests]
        assert paths == ["/"] * sms_attempts + ["/fallback"]
        # The SMS carried the short template's fields, not the chat text.
        params = dict(parse_qsl(server.requests[0].body.decode()))
        assert json.loads(params["TemplateParam"])["value"] == "27.5"
        assert rig.outbox.counts() == {"delivered": 1}
        assert_no_secret(debug_logs, rig.outbox.all())
    finally:
        db.close()
