"""The notifiers archwatch knows by name: Chinese workplace messengers, SMS, mail, JSON, ntfy.

Body limits are the services' own, in the unit they count (WeCom counts UTF-8 bytes, so a
Chinese character costs three). Where apprise already sends a smaller message type than the
service's maximum, its limit wins: apprise's ``wecombot`` posts ``msgtype: text`` (2048
bytes), not markdown (4096 bytes).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from alerting.notifiers.base import Attempt, Notifier
from alerting.notifiers.registry import register


@register
class WeComBotNotifier(Notifier):
    """WeCom (企业微信) group robot: ``wecombot://KEY``; the key is the whole credential."""

    schemes = ("wecombot",)
    channel = "wecombot"
    body_limit = 2048
    limit_unit: ClassVar[Literal["bytes", "chars"]] = "bytes"
    has_title = False


@register
class WeChatNotifier(Notifier):
    """WeCom application message: ``wechat://corpid:corpsecret@agentid/targets``."""

    schemes = ("wechat",)
    channel = "wechat"
    body_limit = 2048
    limit_unit: ClassVar[Literal["bytes", "chars"]] = "bytes"
    has_title = False
    # apprise logs WeCom's own errcode too; only the HTTP status is classified here.
    status_pattern = re.compile(r"error=(\d{3})\b|HTTP\s+(\d{3})")

    def status_from_logs(self, lines: list[str]) -> int | None:
        status = None
        for line in lines:
            for match in self.status_pattern.finditer(line):
                status = int(match.group(1) or match.group(2))
        return status


@register
class DingTalkNotifier(Notifier):
    """DingTalk (钉钉) robot: ``dingtalk://[secret@]token/``; ~20 KB per message."""

    schemes = ("dingtalk",)
    channel = "dingtalk"
    body_limit = 20_000
    limit_unit: ClassVar[Literal["bytes", "chars"]] = "bytes"


@register
class FeishuNotifier(Notifier):
    """Feishu (飞书) custom bot: ``feishu://token``."""

    schemes = ("feishu",)
    channel = "feishu"
    body_limit = 20_000
    limit_unit: ClassVar[Literal["bytes", "chars"]] = "bytes"
    has_title = False


@register
class LarkNotifier(Notifier):
    """Lark (Feishu's international edition) bot: ``lark://token``."""

    schemes = ("lark",)
    channel = "lark"
    body_limit = 20_000
    limit_unit: ClassVar[Literal["bytes", "chars"]] = "bytes"
    # The Lark plugin logs "Lark notification failed: 400 - ...", not "error=400".
    status_pattern = re.compile(r"failed: (\d{3})\b")


@register
class SMSEagleNotifier(Notifier):
    """SMSEagle SMS gateway: ``smseagle://token@host/phone``. SMS: the short template."""

    schemes = ("smseagle", "smseagles")
    channel = "smseagle"
    # Two concatenated Chinese SMS segments (67 UCS-2 characters each) with room to spare.
    body_limit = 134
    has_title = False
    short = True
    host_is_secret = False


@register
class MailNotifier(Notifier):
    """E-mail: ``mailto://user:password@host?to=...``. apprise's e-mail plugin logs no SMTP
    reply code, so every send failure counts as recoverable (bounded by the attempts)."""

    schemes = ("mailto", "mailtos")
    channel = "mailto"
    body_limit = 64_000
    host_is_secret = False
    path_is_secret = False


@register
class JsonNotifier(Notifier):
    """A plain JSON POST (``json://host:port/path``): the demo receiver, or any webhook.

    The HTTP status comes from apprise's captured warning ``... error=503.``; a refused
    connection logs none and is recoverable.
    """

    schemes = ("json", "jsons")
    channel = "json"
    body_limit = 256_000
    host_is_secret = False
    path_is_secret = False


@register
class NtfyNotifier(Notifier):
    """ntfy (self-hosted push): ``ntfy://[user:pass@]host/topic``; the topic is the secret."""

    schemes = ("ntfy", "ntfys")
    channel = "ntfy"
    # ntfy turns longer messages into attachments.
    body_limit = 4096
    limit_unit: ClassVar[Literal["bytes", "chars"]] = "bytes"
    host_is_secret = False


_PROVIDER_CODE = re.compile(r"\bcode=([A-Za-z][\w.]*)")


class _CloudSmsNotifier(Notifier):
    """Aliyun and Tencent Cloud SMS: approved templates filled from the short text's fields.

    The body is not sent as such (the provider sends its template), so its limit only bounds
    what the fields are read from. Both answer errors as codes, often with HTTP 200: the
    plugin logs ``code=...``, and throttling and provider faults are recoverable, a bad
    signature, template, number or key is not. The apprise plugin is loaded (and apprise
    imported) only when a URL of the scheme is first used.
    """

    body_limit = 500
    short = True
    host_is_secret = False

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._load_plugin()

    def _load_plugin(self) -> None:
        raise NotImplementedError

    def _code_is_recoverable(self, code: str) -> bool:
        raise NotImplementedError

    def classify(self, attempt: Attempt) -> bool:
        codes = [c for c in _PROVIDER_CODE.findall(attempt.detail) if c != "none"]
        if codes and not attempt.invalid:
            return self._code_is_recoverable(codes[-1])
        return super().classify(attempt)


@register
class AliyunSmsNotifier(_CloudSmsNotifier):
    """Aliyun SMS: ``aliyunsms://id:secret@sign/template/phone`` (see ``aliyun_sms``)."""

    schemes = ("aliyunsms",)
    channel = "aliyunsms"

    def _load_plugin(self) -> None:
        from alerting.notifiers import aliyun_sms  # noqa: F401  (registers the plugin)

    def _code_is_recoverable(self, code: str) -> bool:
        from alerting.notifiers import aliyun_sms

        return aliyun_sms.is_recoverable(code)


@register
class TencentSmsNotifier(_CloudSmsNotifier):
    """Tencent Cloud SMS: ``tencentsms://id:key@appid/sign/template/phone``."""

    schemes = ("tencentsms",)
    channel = "tencentsms"
    # The SmsSdkAppId in the host is an account identifier, not shown.
    host_is_secret = True

    def _load_plugin(self) -> None:
        from alerting.notifiers import tencent_sms  # noqa: F401  (registers the plugin)

    def _code_is_recoverable(self, code: str) -> bool:
        from alerting.notifiers import tencent_sms

        return tencent_sms.is_recoverable(code)
