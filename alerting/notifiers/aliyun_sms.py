"""Aliyun SMS (阿里云短信, dysmsapi ``SendSms``) as an apprise plugin: ``aliyunsms://``.

URL::

    aliyunsms://{access_key_id}:{access_key_secret}@{sign_name}/{template_code}/{phone}[/{phone}...]
        [?region=cn-hangzhou][&params=severity,room,value,code][&varlen=35][&endpoint=URL]

``sign_name`` is the approved signature (percent-encode Chinese: ``%E6%A1%A3...``),
``template_code`` the approved template (``SMS_123456789``), phones mainland numbers
(``13800000000``) or international ones with their country code. ``params`` maps template
variables to notification fields (see :mod:`alerting.notifiers.cloud_sms`). ``endpoint``
replaces ``https://dysmsapi.aliyuncs.com`` (a proxy, or a test server).

Signing is Aliyun's RPC signature version 1.0: every request parameter (common ones
included, ``Signature`` excluded) percent-encoded per RFC 3986, sorted by name, joined with
``&``; ``StringToSign = METHOD & %2F & percent(canonical query)``;
``Signature = Base64(HMAC-SHA1(secret + "&", StringToSign))``. The functions above the
plugin class are pure (no clock, no randomness, no I/O) so tests can check them against
Aliyun's published example.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from alerting.notifiers.cloud_sms import CloudSmsPlugin, register

SCHEME = "aliyunsms"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com"
API_VERSION = "2017-05-25"

# Codes worth retrying: the provider is busy or rate-limits us; the same request may pass
# later. Everything else (bad signature, unknown template, bad number, no balance) fails
# the same way every time, so the worker moves on to the contact's next URL.
RECOVERABLE_CODES = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",
        "Throttling",
        "Throttling.User",
        "Throttling.Api",
        "ServiceUnavailable",
        "InternalError",
        "isp.SYSTEM_ERROR",
        "isp.GATEWAY_ERROR",
        "SignatureNonceUsed",
    }
)


def is_recoverable(code: str) -> bool:
    """Whether an Aliyun error ``code`` is worth retrying on the same URL."""
    return code in RECOVERABLE_CODES or code.startswith(("Throttling", "isp."))


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Aliyun specifies it: only ``A-Za-z0-9-_.~`` stay as they are."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The sorted, percent-encoded ``name=value&...`` string (``Signature`` excluded)."""
    pairs = sorted((k, v) for k, v in params.items() if k != "Signature")
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs)


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&percent(canonical query)``."""
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def sign(secret: str, method: str, params: Mapping[str, str]) -> str:
    """The ``Signature`` parameter value for ``params`` (Base64 of HMAC-SHA1)."""
    key = f"{secret}&".encode()
    digest = hmac.new(key, string_to_sign(method, params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def timestamp(now: datetime) -> str:
    """ISO 8601 UTC, to the second, as Aliyun wants it: ``2016-02-23T12:46:24Z``."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def send_sms_params(
    *,
    access_key_id: str,
    access_key_secret: str,
    sign_name: str,
    template_code: str,
    phones: list[str],
    template_param: Mapping[str, str],
    region: str,
    now: datetime,
    nonce: str,
    method: str = "POST",
) -> dict[str, str]:
    """Every parameter of one signed ``SendSms`` request, ``Signature`` included."""
    params = {
        "AccessKeyId": access_key_id,
        "Action": "SendSms",
        "Format": "JSON",
        "PhoneNumbers": ",".join(phones),
        "RegionId": region,
        "SignName": sign_name,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": nonce,
        "SignatureVersion": "1.0",
        "TemplateCode": template_code,
        "TemplateParam": json.dumps(dict(template_param), ensure_ascii=False),
        "Timestamp": timestamp(now),
        "Version": API_VERSION,
    }
    params["Signature"] = sign(access_key_secret, method, params)
    return params


class NotifyAliyunSms(CloudSmsPlugin):
    """apprise plugin for Aliyun SMS (see the module docstring for the URL)."""

    service_name = "Aliyun SMS"
    service_url = "https://www.aliyun.com/product/sms"
    secure_protocol = SCHEME
    default_endpoint = DEFAULT_ENDPOINT
    default_region = "cn-hangzhou"
    # Aliyun's per-variable limit for notification templates as we understand it; raise
    # or lower it with ``varlen=`` to match the template's variable type.
    default_varlen = 35
    templates = ("{schema}://{key_id}:{key_secret}@{sign_name}/{template}/{targets}",)

    def _send_sms(self, values: Mapping[str, str]) -> str | None:
        params = send_sms_params(
            access_key_id=self.key_id,
            access_key_secret=self.key_secret,
            sign_name=self.sign_name,
            template_code=self.template,
            phones=self.targets,
            template_param=values,
            region=self.region,
            now=datetime.now(UTC),
            nonce=uuid.uuid4().hex,
        )
        self.logger.debug("Aliyun SMS POST to %s", self.endpoint)
        try:
            reply = requests.post(
                f"{self.endpoint}/",
                data=canonical_query(params) + "&Signature=" + percent_encode(params["Signature"]),
                headers={
                    "User-Agent": self.app_id,
                    "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                    "Accept": "application/json",
                },
                verify=self.verify_certificate,
                timeout=self.request_timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            self.logger.warning("A connection error occurred sending Aliyun SMS.")
            self.logger.debug("Socket exception: %s", type(exc).__name__)
            return "connection"
        try:
            answer = reply.json()
        except ValueError:
            answer = {}
        code = str(answer.get("Code") or "") if isinstance(answer, dict) else ""
        if reply.status_code == 200 and code == "OK":
            return None
        message = str(answer.get("Message") or "") if isinstance(answer, dict) else ""
        return self._failed(reply.status_code, code, message)

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        return self._format_url(SCHEME, self.sign_name, [self.template], privacy, *args, **kwargs)

    @property
    def url_identifier(self) -> tuple[str, str, str, str]:
        return (SCHEME, self.key_id, self.sign_name, self.template)

    @staticmethod
    def parse_url(url: str) -> dict[str, Any] | None:
        results = CloudSmsPlugin.parse_common(url)
        if results is None:
            return None
        path = NotifyAliyunSms.split_path(results.get("fullpath") or "")
        results["sign_name"] = NotifyAliyunSms.unquote(results.get("host") or "")
        results["template"] = path[0] if path else None
        results["targets"] = path[1:]
        return results


register(NotifyAliyunSms, SCHEME)
