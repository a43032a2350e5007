"""Tencent Cloud SMS (腾讯云短信, API 3.0 ``SendSms`` 2021-01-11) as an apprise plugin.

URL::

    tencentsms://{secret_id}:{secret_key}@{sdk_app_id}/{sign_name}/{template_id}/{phone}[/...]
        [?region=ap-guangzhou][&params=severity,room,value,code][&varlen=6][&endpoint=URL]

``sdk_app_id`` is the SMS application's ``SmsSdkAppId`` (``1400...``), ``sign_name`` the
approved signature (percent-encode Chinese), ``template_id`` the approved template's
number. Mainland numbers may be given as ``13800000000`` (sent as ``+8613800000000``).
Tencent fills ``{1}``, ``{2}``... of the template in the order of ``params``.

Signing is TC3-HMAC-SHA256: a canonical request (method, ``/``, empty query, the
``content-type`` and ``host`` headers, the SHA-256 of the JSON body), a string to sign
(algorithm, timestamp, ``date/sms/tc3_request`` credential scope, SHA-256 of the canonical
request), a signing key derived by chained HMAC-SHA256 (``"TC3" + key`` -> date -> service
-> ``tc3_request``), and the ``Authorization`` header. The functions above the plugin class
are pure so tests can check them against Tencent's published example.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from alerting.notifiers.cloud_sms import (
    AppriseImproperlyConfigured,
    CloudSmsPlugin,
    endpoint_host,
    register,
)

SCHEME = "tencentsms"
DEFAULT_ENDPOINT = "https://sms.tencentcloudapi.com"
SERVICE = "sms"
ACTION = "SendSms"
API_VERSION = "2021-01-11"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host"


def is_recoverable(code: str) -> bool:
    """Whether a Tencent error ``code`` is worth retrying on the same URL.

    Rate limits (``RequestLimitExceeded``, ``LimitExceeded.PhoneNumberThirtySecondLimit``...)
    and Tencent's own faults (``InternalError.*``, ``FailedOperation.ContainSensitiveWord``
    aside) pass later; authentication, template, signature and parameter errors never do.
    """
    head = code.split(".", 1)[0]
    return head in {"RequestLimitExceeded", "LimitExceeded", "InternalError", "ResourceUnavailable"}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def canonical_request(payload: bytes, *, host: str, content_type: str = CONTENT_TYPE) -> str:
    """The canonical request of a ``POST /`` with a JSON ``payload``."""
    headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    return "\n".join(["POST", "/", "", headers, SIGNED_HEADERS, sha256_hex(payload)])


def utc_date(ts: int) -> str:
    """The UTC date of ``ts``: the credential scope's date is UTC, never local."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d")


def credential_scope(ts: int, service: str = SERVICE) -> str:
    return f"{utc_date(ts)}/{service}/tc3_request"


def string_to_sign(canonical: str, *, ts: int, service: str = SERVICE) -> str:
    scope = credential_scope(ts, service)
    return f"{ALGORITHM}\n{ts}\n{scope}\n{sha256_hex(canonical.encode('utf-8'))}"


def signing_key(secret_key: str, *, ts: int, service: str = SERVICE) -> bytes:
    """The derived key: HMAC chain over the date, the service and ``tc3_request``."""
    secret_date = _hmac(("TC3" + secret_key).encode("utf-8"), utc_date(ts))
    secret_service = _hmac(secret_date, service)
    return _hmac(secret_service, "tc3_request")


def signature(secret_key: str, canonical: str, *, ts: int, service: str = SERVICE) -> str:
    key = signing_key(secret_key, ts=ts, service=service)
    message = string_to_sign(canonical, ts=ts, service=service)
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(
    secret_id: str, secret_key: str, canonical: str, *, ts: int, service: str = SERVICE
) -> str:
    """The ``Authorization`` header value."""
    sig = signature(secret_key, canonical, ts=ts, service=service)
    return (
        f"{ALGORITHM} Credential={secret_id}/{credential_scope(ts, service)}, "
        f"SignedHeaders={SIGNED_HEADERS}, Signature={sig}"
    )


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """One ready ``SendSms`` request: headers and the exact body bytes that were signed."""

    headers: dict[str, str]
    body: bytes


def send_sms_request(
    *,
    secret_id: str,
    secret_key: str,
    sdk_app_id: str,
    sign_name: str,
    template_id: str,
    phones: list[str],
    template_params: list[str],
    region: str,
    host: str,
    ts: int,
) -> SignedRequest:
    """The signed ``SendSms`` request (pure: the timestamp is an argument)."""
    body = json.dumps(
        {
            "PhoneNumberSet": phones,
            "SmsSdkAppId": sdk_app_id,
            "SignName": sign_name,
            "TemplateId": template_id,
            "TemplateParamSet": template_params,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    canonical = canonical_request(body, host=host)
    headers = {
        "Authorization": authorization(secret_id, secret_key, canonical, ts=ts),
        "Content-Type": CONTENT_TYPE,
        "Host": host,
        "X-TC-Action": ACTION,
        "X-TC-Timestamp": str(ts),
        "X-TC-Version": API_VERSION,
        "X-TC-Region": region,
    }
    return SignedRequest(headers=headers, body=body)


def first_error(answer: Any) -> tuple[str, str] | None:
    """``(code, message)`` of the first failure in a SendSms reply, ``None`` when all sent."""
    response = answer.get("Response") if isinstance(answer, dict) else None
    if not isinstance(response, dict):
        return ("none", "no Response in the reply")
    error = response.get("Error")
    if isinstance(error, dict):
        return (str(error.get("Code") or "none"), str(error.get("Message") or ""))
    for status in response.get("SendStatusSet") or []:
        if isinstance(status, dict) and str(status.get("Code")) != "Ok":
            return (str(status.get("Code") or "none"), str(status.get("Message") or ""))
    return None


class NotifyTencentSms(CloudSmsPlugin):
    """apprise plugin for Tencent Cloud SMS (see the module docstring for the URL)."""

    service_name = "Tencent Cloud SMS"
    service_url = "https://cloud.tencent.com/product/sms"
    secure_protocol = SCHEME
    default_endpoint = DEFAULT_ENDPOINT
    default_region = "ap-guangzhou"
    # "非验证码短信：每个变量取值最多支持6个字符" (Tencent SMS FAQ, Template questions:
    # https://cloud.tencent.com/document/product/382/13301).
    default_varlen = 6
    templates = ("{schema}://{key_id}:{key_secret}@{sdk_app_id}/{sign_name}/{template}/{targets}",)

    def __init__(self, sdk_app_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not sdk_app_id:
            raise AppriseImproperlyConfigured("Tencent Cloud SMS: SmsSdkAppId missing")
        self.sdk_app_id = sdk_app_id

    @staticmethod
    def normalise_phone(raw: str) -> str:
        digits = CloudSmsPlugin.normalise_phone(raw)
        if digits.startswith("+"):
            return digits
        # An 11-digit number starting with 1 is a mainland mobile; Tencent wants E.164.
        if len(digits) == 11 and digits.startswith("1"):
            return "+86" + digits
        return "+" + digits.lstrip("0")

    def _send_sms(self, values: Mapping[str, str]) -> str | None:
        host = endpoint_host(self.endpoint)
        request = send_sms_request(
            secret_id=self.key_id,
            secret_key=self.key_secret,
            sdk_app_id=self.sdk_app_id,
            sign_name=self.sign_name,
            template_id=self.template,
            phones=self.targets,
            template_params=list(values.values()),
            region=self.region,
            host=host,
            ts=int(time.time()),
        )
        self.logger.debug("Tencent Cloud SMS POST to %s", self.endpoint)
        try:
            reply = requests.post(
                f"{self.endpoint}/",
                data=request.body,
                headers=request.headers,
                verify=self.verify_certificate,
                timeout=self.request_timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            self.logger.warning("A connection error occurred sending Tencent Cloud SMS.")
            self.logger.debug("Socket exception: %s", type(exc).__name__)
            return "connection"
        try:
            answer = reply.json()
        except ValueError:
            answer = None
        error = first_error(answer)
        if reply.status_code == 200 and error is None:
            return None
        code, message = error or ("none", "")
        if reply.status_code != 200 and answer is None:
            code = ""
        return self._failed(reply.status_code, code, message)

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        return self._format_url(
            SCHEME, self.sdk_app_id, [self.sign_name, self.template], privacy, *args, **kwargs
        )

    @property
    def url_identifier(self) -> tuple[str, str, str, str]:
        return (SCHEME, self.key_id, self.sdk_app_id, self.template)

    @staticmethod
    def parse_url(url: str) -> dict[str, Any] | None:
        results = CloudSmsPlugin.parse_common(url)
        if results is None:
            return None
        path = NotifyTencentSms.split_path(results.get("fullpath") or "")
        results["sdk_app_id"] = NotifyTencentSms.unquote(results.get("host") or "")
        results["sign_name"] = path[0] if path else None
        results["template"] = path[1] if len(path) > 1 else None
        results["targets"] = path[2:]
        return results


register(NotifyTencentSms, SCHEME)
