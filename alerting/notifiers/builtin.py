"""The notifiers archwatch knows by name: Chinese workplace messengers, SMS, mail, JSON, ntfy.

Body limits are the services' own, in the unit they count (WeCom counts UTF-8 bytes, so a
Chinese character costs three). Where apprise already sends a smaller message type than the
service's maximum, its limit wins: apprise's ``wecombot`` posts ``msgtype: text`` (2048
bytes), not markdown (4096 bytes).
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from alerting.notifiers.base import Notifier
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
