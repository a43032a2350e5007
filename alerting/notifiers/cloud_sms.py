"""What Aliyun SMS and Tencent Cloud SMS share: template fields and the apprise plugin base.

Chinese SMS providers send only templates approved in advance, with a few short variables
(``${severity}``...), never free text. So the notification text is not sent; the fields an
SMS needs are read from archwatch's short text (:func:`alerting.templates.render`,
``short=True``): the severity and room from its title line, the value after ``当前值`` /
``value``, and the acknowledgement code after ``确认码`` / ``ack code``. A field that the
text does not carry is sent as ``-`` (the providers refuse empty variables).

Which fields go into which template variable is the URL's ``params`` option: a comma list
of ``name`` or ``variable:field`` items, e.g. ``params=level:severity,room,value,code``.
Aliyun fills ``TemplateParam`` by variable name; Tencent fills ``TemplateParamSet`` in order.
Each value is cut to ``varlen`` characters (the providers' per-variable limits).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import apprise.exception
import apprise.manager_plugins
import apprise.plugins.base
from apprise.common import NotifyType
from apprise.url import PrivacyMode

from alerting.templates import KIND, SEVERITY

# apprise's annotations are partial (untyped helpers, ``None``-typed class attributes that
# every plugin overrides); its classes are used as untyped values here, as plugins do.
NotifyBase: Any = apprise.plugins.base.NotifyBase
AppriseImproperlyConfigured: Any = apprise.exception.AppriseImproperlyConfigured
NotificationManager: Any = apprise.manager_plugins.NotificationManager

FIELDS = ("severity", "room", "value", "code", "kind")
DEFAULT_PARAMS = "severity,room,value,code"
EMPTY = "-"

_SEVERITIES = sorted({w for table in SEVERITY.values() for w in table.values()}, key=len)
_KINDS = sorted({w for table in KIND.values() for w in table.values()}, key=len, reverse=True)
# The title line: "[紧急] 一号库房（a101） 告警" (after an optional drill marker).
_TITLE = re.compile(
    r"\[(?P<severity>"
    + "|".join(map(re.escape, _SEVERITIES))
    + r")\]\s+(?P<room>.+?)\s+(?P<kind>"
    + "|".join(map(re.escape, _KINDS))
    + r")(?=\s|$)",
    re.MULTILINE,
)
# Mirrors alerting.templates' "当前值 {value}" / "value {value}" (变化量 / change for rates).
_VALUE = re.compile(r"(?:当前值|变化量|\bvalue|\bchange) (?P<value>[^\s；;/]+)")
# The short acknowledgement code an SMS recipient types into the console, as
# alerting.templates.ack_text writes it: "确认码 K7Q2", "确认码（a101） K7Q2", "ack code K7Q2".
_CODE = re.compile(
    r"(?:确认码|\back code)(?:\s*[（(][^）)]*[）)])?[:：\s]*(?P<code>[A-Za-z0-9-]{3,16})"
)


@dataclass(frozen=True, slots=True)
class SmsFields:
    """The template variables one notification offers (``-`` when absent)."""

    severity: str = EMPTY
    room: str = EMPTY
    value: str = EMPTY
    code: str = EMPTY
    kind: str = EMPTY

    def get(self, name: str) -> str:
        value: str = getattr(self, name)
        return value


def extract_fields(title: str, body: str) -> SmsFields:
    """The SMS fields carried by an archwatch notification ``title`` and ``body``."""
    text = f"{title}\n{body}" if title else body
    found: dict[str, str] = {}
    head = _TITLE.search(text)
    if head:
        found.update(severity=head["severity"], room=head["room"].strip(), kind=head["kind"])
    value = _VALUE.search(text)
    if value:
        found["value"] = value["value"]
    code = _CODE.search(text)
    if code:
        found["code"] = code["code"]
    return SmsFields(**found)


def parse_params(spec: str) -> tuple[tuple[str, str], ...]:
    """``"level:severity,room"`` -> ``(("level", "severity"), ("room", "room"))``.

    Raises ValueError naming an unknown field, so a typo fails when the URL is loaded.
    """
    out: list[tuple[str, str]] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, field = item.partition(":")
        name, field = name.strip(), (field or name).strip()
        if field not in FIELDS or not name:
            raise ValueError(f"unknown SMS template field '{field}' (known: {', '.join(FIELDS)})")
        out.append((name, field))
    if not out:
        raise ValueError("params names no template field")
    return tuple(out)


_ROOM_LABEL = re.compile(r"^(?P<name>.+)（(?P<id>[^（）]+)）$")


def fit_value(field: str, value: str, varlen: int) -> str:
    """``value`` within ``varlen`` characters; a room label ``一号库房（a101）`` that is too
    long becomes its name, else its id, before it is cut."""
    if len(value) <= varlen:
        return value
    label = _ROOM_LABEL.match(value) if field == "room" else None
    if label:
        for part in (label["name"], label["id"]):
            if len(part) <= varlen:
                return part
    return value[:varlen]


def template_values(
    fields: SmsFields, params: tuple[tuple[str, str], ...], *, varlen: int
) -> dict[str, str]:
    """Template variable -> value, each within ``varlen`` characters (insertion-ordered)."""
    return {name: fit_value(field, fields.get(field) or EMPTY, varlen) for name, field in params}


def endpoint_host(endpoint: str) -> str:
    """The ``host[:port]`` of ``endpoint`` (what the ``Host`` header carries)."""
    return urlsplit(endpoint).netloc


class CloudSmsPlugin(NotifyBase):  # type: ignore[misc]
    """Shared apprise plugin part: credentials, template, targets, options, redaction.

    Subclasses set the class attributes and implement :meth:`_send_sms`, which returns the
    provider's error code (``None`` on success) after logging its failure once.
    """

    title_maxlen = 250
    body_maxlen = 2000
    request_rate_per_sec = 0
    default_endpoint: ClassVar[str] = ""
    default_region: ClassVar[str] = ""
    default_varlen: ClassVar[int] = 35

    def __init__(
        self,
        key_id: str | None = None,
        key_secret: str | None = None,
        sign_name: str | None = None,
        template: str | None = None,
        targets: list[str] | None = None,
        region: str | None = None,
        params: str | None = None,
        endpoint: str | None = None,
        varlen: int | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not key_id or not key_secret:
            raise AppriseImproperlyConfigured(f"{self.service_name}: credentials are missing")
        if not sign_name or not template:
            raise AppriseImproperlyConfigured(f"{self.service_name}: sign name or template missing")
        self.key_id = key_id
        self.key_secret = key_secret
        self.sign_name = sign_name
        self.template = template
        self.region = region or self.default_region
        self.endpoint = (endpoint or self.default_endpoint).rstrip("/")
        if not self.endpoint.startswith(("http://", "https://")):
            raise AppriseImproperlyConfigured(f"{self.service_name}: bad endpoint")
        try:
            self.params = parse_params(params or DEFAULT_PARAMS)
            self.varlen = int(varlen) if varlen else self.default_varlen
        except ValueError as exc:
            raise AppriseImproperlyConfigured(f"{self.service_name}: {exc}") from exc
        self.targets = [self.normalise_phone(t) for t in targets or [] if t.strip()]
        if not self.targets:
            raise AppriseImproperlyConfigured(f"{self.service_name}: no phone number")

    @staticmethod
    def normalise_phone(raw: str) -> str:
        """The number as the provider expects it (subclasses add country codes)."""
        return re.sub(r"[^\d+]", "", raw)

    def send(
        self, body: str, title: str = "", notify_type: str = NotifyType.INFO, **kwargs: Any
    ) -> bool:
        values = template_values(extract_fields(title, body), self.params, varlen=self.varlen)
        self.throttle()
        code = self._send_sms(values)
        if code is None:
            self.logger.info("Sent %s to %d number(s).", self.service_name, len(self.targets))
            return True
        return False

    def _send_sms(self, values: Mapping[str, str]) -> str | None:
        raise NotImplementedError

    def _format_url(
        self, scheme: str, host: str, path: list[str], privacy: bool, *args: Any, **kwargs: Any
    ) -> str:
        """``scheme://key:secret@host/path.../targets.../?params``, secrets masked on privacy."""
        params = self._common_url_params(privacy, *args, **kwargs)
        secret = PrivacyMode.Secret
        segments = "/".join(self.quote(p, safe="") for p in [*path, *self.targets])
        return "{schema}://{key}:{secret}@{host}/{segments}/?{params}".format(
            schema=scheme,
            key=self.pprint(self.key_id, privacy, mode=secret, safe=""),
            secret=self.pprint(self.key_secret, privacy, mode=secret, safe=""),
            host=self.quote(host, safe=""),
            segments=segments,
            params=self.urlencode(params),
        )

    def _failed(self, status: int, code: str, message: str) -> str:
        """Log one failure line the archwatch notifier can classify; return the code.

        ``code=`` carries the provider's error code when it sent one, ``error=`` the HTTP
        status when it is not 200 (see ``alerting.notifiers.builtin``).
        """
        http = f" error={status}." if status != 200 else ""
        code = code or "none"
        # The provider's message may quote request parameters; never the secret, but cut it.
        self.logger.warning(
            "Failed to send %s notification: code=%s %s%s",
            self.service_name,
            code,
            message[:200],
            http,
        )
        return code

    def _common_url_params(self, privacy: bool, *args: Any, **kwargs: Any) -> dict[str, str]:
        params = {"region": self.region, "varlen": str(self.varlen)}
        params["params"] = ",".join(f"{n}:{f}" for n, f in self.params)
        if self.endpoint != self.default_endpoint:
            params["endpoint"] = self.endpoint
        params.update(self.url_parameters(*args, privacy=privacy, **kwargs))
        return params

    def __len__(self) -> int:
        return 1

    @staticmethod
    def parse_common(url: str) -> dict[str, Any] | None:
        """apprise's parse with the options every cloud SMS URL takes."""
        results: dict[str, Any] | None = NotifyBase.parse_url(url, verify_host=False)
        if not results:
            return None
        qsd: dict[str, str] = results.get("qsd") or {}
        results["key_id"] = NotifyBase.unquote(results.get("user") or "")
        results["key_secret"] = NotifyBase.unquote(results.get("password") or "")
        for option in ("region", "params", "endpoint", "varlen"):
            if qsd.get(option):
                results[option] = NotifyBase.unquote(qsd[option])
        return results


def register(plugin: type[CloudSmsPlugin], scheme: str) -> None:
    """Make ``scheme://`` known to apprise (idempotent; apprise's plugin table is global)."""
    manager = NotificationManager()
    if scheme not in manager:
        manager.add(plugin, schemas=scheme)
