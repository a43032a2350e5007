"""Signed acknowledgement links and short codes: acknowledging an alert from a phone.

A link binds one alert, one recipient (contact id), an expiry and a random nonce, signed with
HMAC-SHA256 under the data directory's key (:meth:`gateway.settings.Settings.signing_key`).
The token is URL-safe: ``base64url(payload) "." base64url(mac)``, where the payload is
``alert_id|contact_id|expires_s|nonce``. Opening a link changes nothing; only
:meth:`AckLinks.use` (the page's POST) does: it records the nonce in ``ack_link_uses`` (so the
link works once, in every process, after restarts) and queues an ``ack_requests`` row in the
same transaction, which the gateway's alert engine applies (:mod:`alerting.ackqueue`).

SMS recipients get a short code per alert instead (:meth:`AckLinks.issue_code`): six
characters of Crockford's base32 (digits and capitals without I, L, O, U; typed in any case,
``O`` read as ``0`` and ``I``/``L`` as ``1``), about 10⁹ possibilities, short enough for
Tencent's six-character template variables. The code alone is enough: it is unique among all
live codes (every alert, every contact) and names both the alert and the person it was sent
to, so the SMS need not tell anyone a contact id. It is stored only as an HMAC under the same
key and expires like the link.

Wrong codes are limited (:meth:`AckLinks.acknowledge_by_code`), counted in the state
database in the same write transaction that checks the code, so parallel requests from any
number of API processes cannot outrun the limits (as rows of ``ack_codes`` whose
``code_hash`` is a marker that no code digest equals, kept 24 hours; every refusal is also
audited as ``ack_code.refused``):

* :data:`MAX_CODE_FAILURES` wrong codes per client address (an IPv6 address counts by its
  /64, which one subscriber usually holds whole) over :data:`CODE_FAILURE_WINDOW_S`, and as
  many per contact when the form names one; past either, that address (or contact) gets 429
  until the window passes.
* Past :data:`MAX_CODE_FAILURES_TOTAL` wrong codes in all over the window (an attack), an
  address that has itself entered a wrong code in the last :data:`CODE_SUSPECT_S` is refused
  too, but an address with no wrong code still has its code checked: nobody can close code
  entry for everyone, and a person with a correct code from a fresh address gets through.

What a guesser gets, per day: a wrong code is checked either in normal mode (fewer than
:data:`MAX_CODE_FAILURES_TOTAL` wrong codes in the last 15 minutes, so at most 50 in any 15
minutes: 96 × 50 = 4,800 a day) or in attack mode, from an address with no wrong code in the
last 24 hours (at most one a day per address). With ``A`` addresses (IPv6: /64 prefixes) that
is at most ``4,800 + A`` guesses a day. Each guess hits one of the ``L`` codes that could
acknowledge something (unused, unexpired, for a firing, unacknowledged alert) with
probability ``L / 32⁶`` (32⁶ = 1,073,741,824), so the chance of any success in a day is at
most ``(4,800 + A) × L / 32⁶``: with L = 100 live codes, about 4.5 × 10⁻⁴ from one address
(or from everyone behind one proxy), about 1.4 × 10⁻³ from a botnet of 10,000 addresses, and
the attack shows as a warning in the log and ``ack_code.refused`` entries in the audit log.
A success acknowledges one alert (stops its repeats and escalation); it opens nothing else.

Six-digit codes issued before codes became base32 are hashed with their contact id, so
they are matched only when a contact is named (the API's ``contact`` field; the form has
none): recipients use the link or the console until those codes expire (``ack_link_hours``).

Blocking (database); async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alerting.ack_models import AckCodeRow, AckLinkUseRow, AckRequestRow
from alerting.ackqueue import MAX_NOTE_CHARS as MAX_NOTE_CHARS
from alerting.ackqueue import QUEUE_LOCK_KEY, queue_action
from alerting.model import NotificationBatch
from alerting.outbox import NewMessage
from alerting.state_models import AlertRow
from alerting.templates import ack_text
from gateway import audit
from gateway.clock import Clock
from gateway.reading import datetime_from_ns
from gateway.standards import ID_PATTERN
from gateway.statedb import StateDB

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 24 * 3600
PAGE_NONCE_TTL_S = 2 * 3600
MAX_TOKEN_CHARS = 400
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
CODE_CHARS = 6
CODE_DIGITS = CODE_CHARS  # the old name (codes were six digits before)
MAX_CODE_FAILURES = 5
MAX_CODE_FAILURES_TOTAL = 50  # in all, per window: past it, addresses that failed are refused
CODE_FAILURE_WINDOW_S = 15 * 60
CODE_SUSPECT_S = 24 * 3600  # in an attack, an address that failed this recently is refused
CODE_PATH = "/ack/code"
_CODE_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_CODE_REFUSED = "ack_code.refused"
# Wrong codes are kept as rows of ack_codes whose code_hash is one of these markers: never a
# hex digest, so never matched as a code, and written in the transaction that checks the
# code (the audit log cannot be: on SQLite its append is a transaction of its own).
_FAILED_BY_ADDRESS = "refused:address"
_FAILED_BY_CONTACT = "refused:contact"
_FAILURE_MARKERS = (_FAILED_BY_ADDRESS, _FAILED_BY_CONTACT)
# Links and codes go out for these message kinds; the others need no action.
ACTIONABLE_KINDS = ("firing", "repeat", "escalation")
_LINK_DOMAIN = b"archwatch-ack-link-v1\x00"
_PAGE_DOMAIN = b"archwatch-ack-page-v1\x00"
_CODE_DOMAIN = b"archwatch-ack-code-v1\x00"  # six digits, hashed with the contact id
_CODE_DOMAIN_V2 = b"archwatch-ack-code-v2\x00"  # base32, hashed alone: looked up alone
_MAC_BYTES = 16  # 128 bits: ample for a MAC that expires, and it keeps links short
_S = 1_000_000_000
_ID = re.compile(ID_PATTERN)


class Verdict(StrEnum):
    """What checking a link or code found."""

    OK = "ok"
    FORGED = "forged"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    UNKNOWN_ALERT = "unknown_alert"
    ALREADY_ACKNOWLEDGED = "already_acknowledged"
    RESOLVED = "resolved"
    TOO_MANY_ATTEMPTS = "too_many_attempts"


@dataclass(frozen=True, slots=True)
class Claims:
    """What a correctly signed link says."""

    alert_id: str
    contact_id: str
    expires_at_ns: int
    nonce: str


@dataclass(frozen=True, slots=True)
class AlertInfo:
    """The alert as the confirmation page shows it (from the state database)."""

    id: str
    state: str
    severity: str
    labels: dict[str, str]
    summary: str
    value: float | None
    limit: str
    started_at_ns: int
    acked_by: str | None
    rule_kind: str = ""

    @property
    def room(self) -> str:
        return self.labels.get("room") or self.labels.get("building") or "?"


@dataclass(frozen=True, slots=True)
class Check:
    """A verdict with its reason (Chinese, shown to the person) and what is known."""

    verdict: Verdict
    reason: str
    claims: Claims | None = None
    alert: AlertInfo | None = None
    contact_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.verdict == Verdict.OK


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AckSigner:
    """Signs and parses acknowledgement tokens, page nonces and code hashes (no I/O but the
    key, read once from ``key`` when it is a callable)."""

    def __init__(
        self, key: bytes | Callable[[], bytes], clock: Clock, *, ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("the link lifetime must be positive")
        self._key_source = key
        self._key: bytes | None = key if isinstance(key, bytes) else None
        self.clock = clock
        self.ttl_s = ttl_s

    @property
    def key(self) -> bytes:
        if self._key is None:
            assert callable(self._key_source)
            self._key = self._key_source()
        return self._key

    def _mac(self, domain: bytes, payload: bytes) -> bytes:
        return hmac.new(self.key, domain + payload, hashlib.sha256).digest()

    def sign(self, alert_id: str, contact_id: str, *, ttl_s: float | None = None) -> str:
        """A token for ``contact_id`` to acknowledge ``alert_id``, valid ``ttl_s`` seconds."""
        for name, value in (("alert id", alert_id), ("contact id", contact_id)):
            if not value or "|" in value:
                raise ValueError(f"{name} {value!r} cannot be put in a link")
        lifetime = self.ttl_s if ttl_s is None else ttl_s
        expires_s = (self.clock.now_ns() + int(lifetime * _S)) // _S
        nonce = secrets.token_hex(16)
        payload = f"{alert_id}|{contact_id}|{expires_s}|{nonce}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(_LINK_DOMAIN, payload)[:_MAC_BYTES])}"

    def parse(self, token: str) -> Claims | Check:
        """The claims of a genuine, unexpired token, else a FORGED or EXPIRED check."""
        claims = self._genuine(token)
        if claims is None:
            return Check(Verdict.FORGED, "链接无效：签名不符，可能被改动或不是本系统发出的。")
        if self.clock.now_ns() >= claims.expires_at_ns:
            return Check(
                Verdict.EXPIRED,
                "链接已过期，请在系统控制台或通过值班电话确认告警。",
                claims=claims,
                contact_id=claims.contact_id,
            )
        return claims

    def _genuine(self, token: str) -> Claims | None:
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (ValueError, binascii.Error):
            return None
        if not hmac.compare_digest(given, self._mac(_LINK_DOMAIN, payload)[:_MAC_BYTES]):
            return None
        try:
            alert_id, contact_id, expires, nonce = payload.decode("utf-8").split("|")
            return Claims(alert_id, contact_id, int(expires) * _S, nonce)
        except (UnicodeDecodeError, ValueError):
            return None  # signed by us but not a link (cannot happen unless the key is shared)

    def page_nonce(self, token: str) -> str:
        """The per-page nonce the confirmation form posts back with ``token`` (CSRF)."""
        issued = str(self.clock.now_ns() // _S)
        mac = self._mac(_PAGE_DOMAIN, f"{issued}|{token}".encode())
        return f"{issued}.{_b64(mac[:_MAC_BYTES])}"

    def check_page_nonce(self, token: str, nonce: str) -> bool:
        """Whether ``nonce`` was made by :meth:`page_nonce` for ``token`` not long ago."""
        issued, _, mac = nonce.partition(".")
        if not issued.isdigit() or len(issued) > 12:
            return False
        try:
            given = _unb64(mac)
        except (ValueError, binascii.Error):
            return False
        want = self._mac(_PAGE_DOMAIN, f"{issued}|{token}".encode())[:_MAC_BYTES]
        age_s = self.clock.now_ns() // _S - int(issued)
        return hmac.compare_digest(given, want) and 0 <= age_s <= PAGE_NONCE_TTL_S

    def code_hash(self, contact_id: str, code: str) -> str:
        """The stored form of an old six-digit ``code`` of ``contact_id`` (still accepted
        while one issued before the upgrade is live)."""
        return self._mac(_CODE_DOMAIN, f"{contact_id}|{code}".encode()).hex()

    def code_digest(self, code: str) -> str:
        """The stored form of a (normalised) code: keyed, since the code alone finds it."""
        return self._mac(_CODE_DOMAIN_V2, code.encode()).hex()


def normalise_code(text: str) -> str | None:
    """``text`` as a code (spaces and dashes dropped, any case, O->0, I/L->1), or None."""
    code = "".join(text.split()).replace("-", "").upper().translate(_CODE_READ_AS)
    if len(code) != CODE_CHARS or not code.isascii() or any(c not in CODE_ALPHABET for c in code):
        return None
    return code


def link_url(public_url: str, token: str) -> str:
    """Where the confirmation page of ``token`` is served."""
    return f"{public_url.rstrip('/')}/ack/{token}"


def code_page_url(public_url: str) -> str:
    """Where SMS recipients enter their code."""
    return f"{public_url.rstrip('/')}{CODE_PATH}"


_UNKNOWN = "找不到这条告警，它可能已被清理。"


class AckLinks:
    """Links and codes against the state database: check, use, issue, and the outbox hook.

    ``public_url`` is where the API serves ``/ack/<token>`` (:attr:`Settings.public_url`).
    """

    def __init__(
        self,
        db: StateDB,
        signer: AckSigner,
        *,
        public_url: str,
        code_ttl_s: float | None = None,
    ) -> None:
        self.db = db
        self.signer = signer
        self.clock = signer.clock
        self.public_url = public_url
        self.code_ttl_s = signer.ttl_s if code_ttl_s is None else code_ttl_s

    # --- links ---------------------------------------------------------------------------

    def url_for(self, alert_id: str, contact_id: str) -> str:
        return link_url(self.public_url, self.signer.sign(alert_id, contact_id))

    def check(self, token: str) -> Check:
        """What using ``token`` now would do; changes nothing (safe for GET and previews)."""
        parsed = self.signer.parse(token)
        if isinstance(parsed, Check):
            return parsed
        with self.db.session() as session:
            return self._check(session, parsed)

    def _check(self, session: Session, claims: Claims) -> Check:
        used = session.get(AckLinkUseRow, claims.nonce)
        if used is not None:
            return Check(
                Verdict.REPLAYED,
                "此链接已使用过，每个链接只能确认一次。",
                claims=claims,
                contact_id=claims.contact_id,
            )
        return self._alert_check(session, claims.alert_id, claims.contact_id, claims)

    def _alert_check(
        self, session: Session, alert_id: str, contact_id: str, claims: Claims | None
    ) -> Check:
        row = session.get(AlertRow, alert_id)
        if row is None:
            return Check(Verdict.UNKNOWN_ALERT, _UNKNOWN, claims=claims, contact_id=contact_id)
        info = AlertInfo(
            id=row.id,
            state=row.state,
            severity=row.severity,
            labels={str(k): str(v) for k, v in json.loads(row.labels).items()},
            summary=row.summary,
            value=row.value,
            limit=row.limit_text,
            started_at_ns=row.started_at_ns,
            acked_by=row.acked_by,
            rule_kind=row.rule_kind,
        )

        def found(verdict: Verdict, reason: str) -> Check:
            return Check(verdict, reason, claims=claims, alert=info, contact_id=contact_id)

        if row.state == "resolved":
            return found(Verdict.RESOLVED, "这条告警已恢复，无需再确认。")
        if row.state == "acknowledged":
            return found(
                Verdict.ALREADY_ACKNOWLEDGED, f"这条告警已由 {row.acked_by or '他人'} 确认。"
            )
        pending = session.execute(
            select(AckRequestRow.user)
            .where(AckRequestRow.alert_id == alert_id, AckRequestRow.status == "pending")
            .limit(1)
        ).scalar_one_or_none()
        if pending is not None:
            return found(Verdict.ALREADY_ACKNOWLEDGED, f"{pending} 已提交确认，系统正在处理。")
        if row.state != "firing":
            return found(Verdict.UNKNOWN_ALERT, "这条告警尚未触发，暂时无法确认。")
        return found(Verdict.OK, "可以确认。")

    def use(self, token: str, note: str = "") -> Check:
        """Acknowledge with ``token``: record its nonce and queue the request, at most once.

        Audited as ``ack_link.used`` or ``ack_link.refused`` (never with the token).
        """
        parsed = self.signer.parse(token)
        if isinstance(parsed, Check):
            return self.record_refusal(parsed, via="link")
        claims, now = parsed, self.clock.now_ns()
        request_id = 0
        try:
            with self.db.session(write=True) as session:
                # Check-then-queue under the lock the API's actions take: a link and an
                # API or console acknowledgement cannot both pass the check.
                self.db.lock(session, QUEUE_LOCK_KEY)
                result = self._check(session, claims)
                if result.ok:
                    session.add(
                        AckLinkUseRow(
                            nonce=claims.nonce,
                            alert_id=claims.alert_id,
                            contact_id=claims.contact_id,
                            via="link",
                            used_at_ns=now,
                            expires_at_ns=claims.expires_at_ns,
                        )
                    )
                    request_id = _queue(
                        session, claims.alert_id, claims.contact_id, note, "link", now
                    )
        except IntegrityError:
            # Another process used the nonce between our check and insert (PostgreSQL).
            result = Check(
                Verdict.REPLAYED,
                "此链接已使用过，每个链接只能确认一次。",
                claims=claims,
                contact_id=claims.contact_id,
            )
        if not result.ok:
            return self.record_refusal(result, via="link")
        self._audit(
            "ack_link.used", claims.contact_id, claims.alert_id, via="link", request=request_id
        )
        return replace(result, detail={"request_id": request_id})

    def record_refusal(self, check: Check, *, via: str) -> Check:
        """Audit a refused link or code (``ack_link.refused`` with its verdict)."""
        actor = check.contact_id or "anonymous"
        target = check.alert.id if check.alert else (check.claims.alert_id if check.claims else "")
        self._audit("ack_link.refused", actor, target, via=via, verdict=check.verdict.value)
        return check

    # --- short codes ---------------------------------------------------------------------

    def issue_code(self, alert_id: str, contact_id: str) -> str:
        """A new code for ``contact_id`` to acknowledge ``alert_id``; only its hash is kept."""
        with self.db.session(write=True) as session:
            return self._issue_code(session, alert_id, contact_id)

    def _issue_code(self, session: Session, alert_id: str, contact_id: str) -> str:
        now = self.clock.now_ns()
        while True:
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_CHARS))
            digest = self.signer.code_digest(code)
            # Unique among every live code, whoever it was sent to: the code alone names
            # one alert and one person.
            clash = session.execute(
                select(AckCodeRow.id).where(
                    AckCodeRow.code_hash == digest, AckCodeRow.expires_at_ns > now
                )
            ).first()
            if clash is None:
                break
        session.add(
            AckCodeRow(
                contact_id=contact_id,
                code_hash=digest,
                alert_id=alert_id,
                created_at_ns=now,
                expires_at_ns=now + int(self.code_ttl_s * _S),
            )
        )
        return code

    def acknowledge_by_code(
        self,
        code: str,
        contact_id: str | None = None,
        note: str = "",
        *,
        address: str | None = None,
    ) -> Check:
        """Acknowledge the alert ``code`` was issued for, as the person it was sent to (once).

        ``contact_id`` is optional: given, the code must be theirs. Wrong codes count
        against the client's ``address`` always and against the contact when one is named
        (a named contact never replaces the address: a guesser could name a new one each
        time). The limits are checked, the code compared and a wrong one recorded in one
        write transaction under :data:`QUEUE_LOCK_KEY`, so concurrent requests in any
        process are counted one after another.
        """
        contact = (contact_id or "").strip()
        bad_contact = bool(contact) and (not _ID.match(contact) or len(contact) > 64)
        source = client_key(address)
        named = contact if contact and not bad_contact else None
        now = self.clock.now_ns()
        request_id = 0
        with self.db.session(write=True) as session:
            # One lock for the limit and the queue (as in use(): one queued action per alert).
            self.db.lock(session, QUEUE_LOCK_KEY)
            limited = self._code_limit(session, source, named, now)
            if limited is not None:
                return limited
            if bad_contact:
                result, row = Check(Verdict.FORGED, "联系人编号或确认码不正确。"), None
            else:
                result, row = self._code_check(session, code, named, now)
            if result.ok and result.alert is not None and row is not None:
                row.used_at_ns = now
                request_id = _queue(session, result.alert.id, row.contact_id, note, "code", now)
            elif result.verdict == Verdict.FORGED:
                self._record_failure(session, source, named, now)
        if not result.ok or result.alert is None or result.contact_id is None:
            return self._refuse_code(result, named or source)
        self._audit(
            "ack_link.used", result.contact_id, result.alert.id, via="code", request=request_id
        )
        return replace(result, detail={"request_id": request_id})

    def _code_limit(
        self, session: Session, source: str, contact: str | None, now: int
    ) -> Check | None:
        """A TOO_MANY_ATTEMPTS check when ``source`` (or ``contact``) may not try a code now."""
        window = now - CODE_FAILURE_WINDOW_S * _S
        minutes = CODE_FAILURE_WINDOW_S // 60
        retry_s = CODE_FAILURE_WINDOW_S
        mine = _failures(session, _FAILED_BY_ADDRESS, source, window)
        theirs = _failures(session, _FAILED_BY_CONTACT, contact, window) if contact else 0
        if mine >= MAX_CODE_FAILURES or theirs >= MAX_CODE_FAILURES:
            reason = f"错误次数过多，请 {minutes} 分钟后再试，或点击通知中的链接、联系值班人员。"
        else:
            everyone = _failures(session, _FAILED_BY_ADDRESS, None, window)
            if everyone < MAX_CODE_FAILURES_TOTAL:
                return None
            # An attack: addresses that never failed still get their code checked.
            if not _failures(session, _FAILED_BY_ADDRESS, source, now - CODE_SUSPECT_S * _S):
                return None
            log.warning(
                "acknowledgement codes: %d wrong codes in %d min; addresses that entered a "
                "wrong code are refused (links, the console and other addresses still work)",
                everyone,
                minutes,
            )
            reason = (
                "近期大量错误的确认码，本设备输入过错误的确认码，暂时不能再试。"
                "请点击通知中的链接、使用系统控制台或联系值班人员。"
            )
        return Check(
            Verdict.TOO_MANY_ATTEMPTS,
            reason,
            contact_id=contact,
            detail={"retry_after_s": retry_s},
        )

    @staticmethod
    def _record_failure(session: Session, source: str, contact: str | None, now: int) -> None:
        """Count one wrong code against ``source`` (and ``contact``), dropping old counts."""
        session.execute(
            delete(AckCodeRow).where(
                AckCodeRow.code_hash.in_(_FAILURE_MARKERS),
                AckCodeRow.created_at_ns <= now - CODE_SUSPECT_S * _S,
            )
        )
        keys = [(_FAILED_BY_ADDRESS, source)]
        if contact:
            keys.append((_FAILED_BY_CONTACT, contact))
        for marker, key in keys:
            session.add(
                AckCodeRow(
                    contact_id=key[:64],
                    code_hash=marker,
                    alert_id="",
                    created_at_ns=now,
                    expires_at_ns=now,
                    used_at_ns=now,
                )
            )

    def _refuse_code(self, check: Check, actor: str) -> Check:
        target = check.alert.id if check.alert else ""
        self._audit(_CODE_REFUSED, actor, target, via="code", verdict=check.verdict.value)
        return check

    def _code_check(
        self, session: Session, text: str, contact_id: str | None, now: int
    ) -> tuple[Check, AckCodeRow | None]:
        wrong = Check(Verdict.FORGED, "确认码不正确。", contact_id=contact_id)
        if contact_id:
            wrong = Check(Verdict.FORGED, "联系人编号或确认码不正确。", contact_id=contact_id)
        code = normalise_code(text)
        if code is None:
            return wrong, None
        match = AckCodeRow.code_hash == self.signer.code_digest(code)
        if contact_id is not None and code.isdigit():
            # A six-digit code issued before codes became base32 (hashed with the contact).
            legacy = and_(
                AckCodeRow.contact_id == contact_id,
                AckCodeRow.code_hash == self.signer.code_hash(contact_id, code),
            )
            match = or_(match, legacy)
        rows = [
            r
            for r in session.execute(
                select(AckCodeRow).where(match).order_by(AckCodeRow.id.desc())
            ).scalars()
            if contact_id is None or r.contact_id == contact_id
        ]
        if not rows:
            return wrong, None
        live = [r for r in rows if r.used_at_ns is None and r.expires_at_ns > now]
        if not live:
            who = rows[0].contact_id
            if any(r.used_at_ns is not None for r in rows):
                return Check(Verdict.REPLAYED, "此确认码已使用过。", contact_id=who), None
            return Check(Verdict.EXPIRED, "确认码已过期。", contact_id=who), None
        row = live[0]
        return self._alert_check(session, row.alert_id, row.contact_id, None), row

    # --- the outbox hook -----------------------------------------------------------------

    def decorate(
        self,
        batch: NotificationBatch | None,
        messages: Sequence[NewMessage],
        languages: Mapping[str, str],
    ) -> list[NewMessage]:
        """``messages`` with each recipient's own links (body) and codes (SMS short body)
        for the alerts they name; ``batch`` (when known) names their rooms.

        Blocking: codes are stored in one transaction before the messages are enqueued.
        """
        if not any(m.kind in ACTIONABLE_KINDS and m.alert_ids for m in messages):
            return list(messages)
        rooms = {a.id: a.labels.get("room", "") for a in batch.alerts} if batch else {}
        out = []
        with self.db.session(write=True) as session:
            for message in messages:
                if message.kind not in ACTIONABLE_KINDS:
                    out.append(message)
                    continue
                contact = message.contact_id
                language = languages.get(contact, "zh")
                ids = list(message.alert_ids)
                links = [(rooms.get(a, ""), self.url_for(a, contact)) for a in ids[:5]]
                codes = [(rooms.get(a, ""), self._issue_code(session, a, contact)) for a in ids[:2]]
                body_extra = ack_text(links=links, codes=codes, language=language)
                # SMS: where to type the code (SMSEagle sends this text as it is; the cloud
                # providers' approved templates take only the code from it).
                short_extra = ack_text(
                    links=[],
                    codes=codes,
                    language=language,
                    short=True,
                    code_url=code_page_url(self.public_url),
                )
                out.append(
                    replace(
                        message,
                        body=f"{message.body}\n{body_extra}" if body_extra else message.body,
                        short_body=(
                            f"{message.short_body} {short_extra}"
                            if message.short_body is not None and short_extra
                            else message.short_body
                        ),
                    )
                )
        return out

    # --- internals -----------------------------------------------------------------------

    def _audit(self, action: str, actor: str, target: str, **detail: Any) -> None:
        try:
            audit.append(
                self.db,
                actor=actor[:64] or "anonymous",
                action=action,
                target=target,
                detail={k: v for k, v in detail.items() if v is not None},
                now=datetime_from_ns(self.clock.now_ns()),
            )
        except ValueError:
            # A NUL in a forged contact id: audit the refusal without it.
            audit.append(
                self.db,
                actor="anonymous",
                action=action,
                target="",
                detail={k: v for k, v in detail.items() if v is not None},
                now=datetime_from_ns(self.clock.now_ns()),
            )


def client_key(address: str | None) -> str:
    """Whom wrong codes from ``address`` count against: the address, an IPv6 one by its /64
    (a subscriber usually holds the whole prefix), an IPv4-mapped one as IPv4."""
    if not address:
        return "anonymous"
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return f"address:{address}"[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"address:{ip.ipv4_mapped}"
        return f"address:{ipaddress.IPv6Network((ip, 64), strict=False)}"
    return f"address:{ip}"


def _failures(session: Session, marker: str, key: str | None, since_ns: int) -> int:
    """Wrong codes recorded under ``marker`` after ``since_ns``, of ``key`` (None: all)."""
    query = select(func.count()).where(
        AckCodeRow.code_hash == marker, AckCodeRow.created_at_ns > since_ns
    )
    if key is not None:
        query = query.where(AckCodeRow.contact_id == key[:64])
    return int(session.execute(query.select_from(AckCodeRow)).scalar_one())


def _queue(session: Session, alert_id: str, user: str, note: str, via: str, now: int) -> int:
    # The one way into the queue (the API and the console use it too); the caller took
    # QUEUE_LOCK_KEY before checking that nothing is queued for the alert.
    return queue_action(
        session, alert_id=alert_id, user=user, note=note, via=via, action="ack", now_ns=now
    )
