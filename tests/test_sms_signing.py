"""Request signing for Aliyun SMS and Tencent Cloud SMS, and the SMS template fields.

Two kinds of evidence, kept apart:

* the providers' own published worked examples, reproduced to the last character
  (``test_*_published_example``), and
* for the SendSms requests themselves, which no provider page works through, an
  independent step-by-step implementation of the documented algorithm written here with
  hashlib/hmac/urllib (not calling the module's helpers), plus fixed vectors derived from
  it (marked "derived" below): a regression guard, not provider evidence.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
from datetime import UTC, datetime
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.model import NotificationBatch
from alerting.notifiers import aliyun_sms, tencent_sms
from alerting.notifiers.cloud_sms import SmsFields, extract_fields, parse_params, template_values
from alerting.templates import ack_text, render
from tests.test_delivery_e2e import make_batch

# ---------------------------------------------------------------- Aliyun: published example


@pytest.mark.parametrize(
    ("timestamp_key", "signature"),
    [
        # "Request signatures" / "Sign signatures",
        # https://www.alibabacloud.com/help/doc-detail/28139.htm (the same example is on the
        # signature page of every RPC-style Aliyun API), spelling the parameter TimeStamp.
        ("TimeStamp", "CT9X0VtwR86fNWSnsc6v8YGOjuE="),
        # "Request syntax and signature method V2 for RPC APIs",
        # https://www.alibabacloud.com/help/en/sdk/product-overview/rpc-mechanism (Chinese:
        # https://help.aliyun.com/document_detail/25490.htm), spelling it Timestamp: the
        # name the RPC API actually takes, and the one SendSms uses here.
        ("Timestamp", "OLeaidS1JvxuMvnyHOwuJ+uX5qY="),
    ],
)
def test_aliyun_published_example(timestamp_key: str, signature: str) -> None:
    """Aliyun's RPC signature example (ECS ``DescribeRegions``, AccessKey ``testid`` /
    ``testsecret``) as each page prints it, with its published StringToSign and signature.
    The two spellings sign differently; both matching their page shows the canonical order
    and encoding are right."""
    params = {
        timestamp_key: "2016-02-23T12:46:24Z",
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "Version": "2014-05-26",
        "SignatureVersion": "1.0",
    }
    assert aliyun_sms.string_to_sign("GET", params) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
        "%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        f"%26{timestamp_key}%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
    )
    assert aliyun_sms.sign("testsecret", "GET", params) == signature


def test_aliyun_signature_parameter_itself_is_not_signed() -> None:
    params = {"Action": "SendSms", "Version": "2017-05-25"}
    before = aliyun_sms.sign("k", "POST", params)
    assert aliyun_sms.sign("k", "POST", {**params, "Signature": "old"}) == before


# ------------------------------------------------------- Aliyun: independent implementation


def _aliyun_reference(secret: str, method: str, params: dict[str, str]) -> str:
    """Aliyun's documented steps, written independently: urllib's quote with no safe
    characters, then the three documented substitutions of Java's URLEncoder recipe."""

    def enc(text: str) -> str:
        return quote(text, safe="~").replace("+", "%20").replace("*", "%2A")

    query = "&".join(enc(k) + "=" + enc(params[k]) for k in sorted(params))
    to_sign = method + "&" + enc("/") + "&" + enc(query)
    mac = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


SEND_AT = datetime(2026, 1, 1, 0, 30, 5, tzinfo=UTC)


def _aliyun_send_params() -> dict[str, str]:
    return aliyun_sms.send_sms_params(
        access_key_id="LTAI5tExampleKeyId",
        access_key_secret="ExampleSecret*~ +/=",
        sign_name="档案馆",
        template_code="SMS_476230001",
        phones=["13800000000", "8613900000000"],
        template_param={"severity": "紧急", "room": "一号库房（a101）", "value": "31.5"},
        region="cn-hangzhou",
        now=SEND_AT,
        nonce="0f8fad5b-d9cb-469f-a165-70867728950e",
    )


def test_aliyun_send_sms_request_parameters() -> None:
    params = _aliyun_send_params()
    assert params["Action"] == "SendSms"
    assert params["Version"] == "2017-05-25"
    assert params["SignatureMethod"] == "HMAC-SHA1"
    assert params["SignatureVersion"] == "1.0"
    assert params["Timestamp"] == "2026-01-01T00:30:05Z"
    assert params["PhoneNumbers"] == "13800000000,8613900000000"
    assert json.loads(params["TemplateParam"]) == {
        "severity": "紧急",
        "room": "一号库房（a101）",
        "value": "31.5",
    }


def test_aliyun_send_sms_signature_matches_an_independent_implementation() -> None:
    params = _aliyun_send_params()
    unsigned = {k: v for k, v in params.items() if k != "Signature"}
    expected = _aliyun_reference("ExampleSecret*~ +/=", "POST", unsigned)
    assert params["Signature"] == expected
    # Derived vector (from the reference above, not from Aliyun): a regression guard.
    assert expected == "nBkpRpXjtbbxFgR9Bu02tq0mfeg="


def test_aliyun_timestamp_is_utc_whatever_the_zone() -> None:
    local = datetime.fromisoformat("2026-01-01T08:30:05+08:00")
    assert aliyun_sms.timestamp(local) == "2026-01-01T00:30:05Z"


UNRESERVED = set(string.ascii_letters + string.digits + "-_.~")


@given(st.text())
def test_aliyun_percent_encoding_keeps_only_unreserved_characters(text: str) -> None:
    encoded = aliyun_sms.percent_encode(text)
    assert unquote(encoded) == text
    bare = encoded.replace("%", "")
    assert set(bare) <= UNRESERVED | set("0123456789ABCDEF")
    assert "+" not in encoded and " " not in encoded and "*" not in encoded


# ---------------------------------------------------------------- Tencent: published example

TENCENT_DOC_PAYLOAD = (
    b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)


def test_tencent_published_example() -> None:
    """Tencent Cloud's "Signature v3" worked example (CVM ``DescribeInstances``, SecretId
    ``AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE``, SecretKey ``Gu5t9xGARNpq86cd98joQYCN3EXAMPLE``,
    timestamp 1551113065), published on the API "Signature v3" page of each product, e.g.
    https://intl.cloud.tencent.com/document/product/267/30852 and, for SMS,
    https://www.tencentcloud.com/document/product/382/40467 . Published intermediate values:
    HashedRequestPayload, HashedCanonicalRequest, the string to sign and the Authorization
    header below.
    """
    assert tencent_sms.sha256_hex(TENCENT_DOC_PAYLOAD) == (
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    canonical = tencent_sms.canonical_request(TENCENT_DOC_PAYLOAD, host="cvm.tencentcloudapi.com")
    assert canonical == (
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\n"
        "host:cvm.tencentcloudapi.com\n\ncontent-type;host\n"
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    assert tencent_sms.string_to_sign(canonical, ts=1551113065, service="cvm") == (
        "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )
    assert tencent_sms.authorization(
        "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
        "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
        canonical,
        ts=1551113065,
        service="cvm",
    ) == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE/2019-02-25/cvm/"
        "tc3_request, SignedHeaders=content-type;host, "
        "Signature=72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"
    )


# ------------------------------------------------------ Tencent: independent implementation


def tencent_reference_signature(
    secret_key: str, *, host: str, body: bytes, ts: int, service: str = "sms"
) -> str:
    """TC3-HMAC-SHA256 as documented, written out step by step (shared with the plugin
    tests, which check the recorded request with it)."""
    date = datetime.fromtimestamp(ts, UTC).date().isoformat()
    canonical = (
        "POST\n/\n\n"
        + f"content-type:application/json; charset=utf-8\nhost:{host}\n\n"
        + "content-type;host\n"
        + hashlib.sha256(body).hexdigest()
    )
    to_sign = "\n".join(
        [
            "TC3-HMAC-SHA256",
            str(ts),
            f"{date}/{service}/tc3_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("TC3" + secret_key).encode()
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


# 2026-01-01 07:59:59 in Shanghai is still 2025-12-31 in UTC: the scope must say 2025-12-31.
BEFORE_UTC_MIDNIGHT = 1767225599


def _tencent_request() -> tencent_sms.SignedRequest:
    return tencent_sms.send_sms_request(
        secret_id="AKIDExampleSecretId",
        secret_key="ExampleSecretKey",
        sdk_app_id="1400000001",
        sign_name="档案馆",
        template_id="2215541",
        phones=["+8613800000000"],
        template_params=["紧急", "一号库房", "31.5", "A7K2"],
        region="ap-guangzhou",
        host="sms.tencentcloudapi.com",
        ts=BEFORE_UTC_MIDNIGHT,
    )


def test_tencent_send_sms_request() -> None:
    request = _tencent_request()
    assert json.loads(request.body) == {
        "PhoneNumberSet": ["+8613800000000"],
        "SmsSdkAppId": "1400000001",
        "SignName": "档案馆",
        "TemplateId": "2215541",
        "TemplateParamSet": ["紧急", "一号库房", "31.5", "A7K2"],
    }
    headers = request.headers
    assert headers["X-TC-Action"] == "SendSms"
    assert headers["X-TC-Version"] == "2021-01-11"
    assert headers["X-TC-Region"] == "ap-guangzhou"
    assert headers["X-TC-Timestamp"] == str(BEFORE_UTC_MIDNIGHT)
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["Host"] == "sms.tencentcloudapi.com"


def test_tencent_send_sms_signature_matches_an_independent_implementation() -> None:
    request = _tencent_request()
    expected = tencent_reference_signature(
        "ExampleSecretKey",
        host="sms.tencentcloudapi.com",
        body=request.body,
        ts=BEFORE_UTC_MIDNIGHT,
    )
    assert request.headers["Authorization"] == (
        "TC3-HMAC-SHA256 Credential=AKIDExampleSecretId/2025-12-31/sms/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={expected}"
    )
    # Derived vector (from the reference above, not from Tencent): a regression guard.
    assert expected == "c44e1f4ff2f43a4a85cb9950f18d3294cca60ed92898180da101ed7408fbb769"


# ------------------------------------------------------------------- template fields


def _short(batch: NotificationBatch, language: str) -> tuple[str, str]:
    return render(batch, language=language, names={"a101": "一号库房"}, short=True)


def test_fields_come_from_the_chinese_short_text() -> None:
    title, body = _short(make_batch(value=31.5), "zh")
    fields = extract_fields(title, body + " 确认码 A7K2")
    assert fields == SmsFields(
        severity="紧急", room="一号库房（a101）", value="31.5", code="A7K2", kind="告警"
    )


def test_fields_come_from_the_english_short_text() -> None:
    title, body = _short(make_batch(value=31.5, kind="resolved"), "en")
    fields = extract_fields(title, body + " ack code 9F3Q")
    assert (fields.severity, fields.value, fields.code, fields.kind) == (
        "CRITICAL",
        "31.5",
        "9F3Q",
        "resolved",
    )


@pytest.mark.parametrize(
    "line",
    ["确认码 K7Q2", "确认码（a101） K7Q2", "确认码：K7Q2", "ack code K7Q2", "ack code (a101) K7Q2"],
)
def test_the_ack_code_is_found_in_each_written_form(line: str) -> None:
    assert extract_fields("[紧急] a101 告警", f"a101：漏水 {line}").code == "K7Q2"


@pytest.mark.parametrize("language", ["zh", "en"])
def test_the_ack_code_is_found_as_the_templates_write_it(language: str) -> None:
    title, body = _short(make_batch(value=31.5), language)
    codes = [("a101", "K7Q2"), ("a102", "M3P8")]
    sms = body + " " + ack_text(links=[], codes=codes, language=language, short=True)
    assert extract_fields(title, sms).code == "K7Q2"


def test_missing_fields_are_sent_as_a_dash() -> None:
    fields = extract_fields("", "free text with no template fields")
    assert template_values(fields, parse_params("severity,room,value,code"), varlen=12) == {
        "severity": "-",
        "room": "-",
        "value": "-",
        "code": "-",
    }


def test_params_rename_reorder_and_cut_to_the_variable_limit() -> None:
    fields = SmsFields(severity="紧急", room="一号库房（a101）", value="-12.25", code="A7K2")
    spec = parse_params("code,place:room,level:severity,value")
    values = template_values(fields, spec, varlen=5)
    assert list(values.items()) == [
        ("code", "A7K2"),
        ("place", "一号库房"),
        ("level", "紧急"),
        ("value", "-12.2"),
    ]


@pytest.mark.parametrize(
    ("room", "varlen", "sent"),
    [
        ("一号库房（a101）", 12, "一号库房（a101）"),
        ("一号库房（a101）", 6, "一号库房"),
        ("东区地下二层特藏库房（b2-07）", 6, "b2-07"),
        ("东区地下二层特藏库房（b2-07）", 4, "东区地下"),
        ("a101", 2, "a1"),
    ],
)
def test_a_long_room_label_keeps_its_name_or_id(room: str, varlen: int, sent: str) -> None:
    values = template_values(SmsFields(room=room), parse_params("room"), varlen=varlen)
    assert values == {"room": sent}


def test_an_unknown_field_is_refused() -> None:
    try:
        parse_params("severity,temperature")
    except ValueError as exc:
        assert "temperature" in str(exc)
    else:
        raise AssertionError("an unknown field was accepted")
