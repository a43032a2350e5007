"""The audit log: append-only and hash-chained from its first entry.

Each entry has a ``seq`` (1, 2, 3... without gaps), a time ``ts``, who (``actor``) did what
(``action``) to what (``target``), a ``detail`` object, the ``prev_hash`` (the previous
entry's ``hash``; 64 zeros for entry 1) and its own ``hash``.

Hash, precisely (so that anyone can check the log without archwatch)::

    hash = lowercase hex SHA-256 of the UTF-8 bytes of
           json.dumps({"seq": seq, "ts": ts, "actor": actor, "action": action,
                       "target": target, "detail": detail, "prev_hash": prev_hash},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)

where ``seq`` is a JSON integer; ``ts`` is the UTC time as the string
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always six fraction digits); ``actor``, ``action``,
``target`` and ``prev_hash`` are JSON strings; and ``detail`` is a JSON *string* holding
exactly the text of the ``detail`` column, itself the detail object serialised by the same
``json.dumps`` options (sorted keys, no whitespace, non-ASCII kept, NaN refused). With
``ensure_ascii=False`` the output keeps every non-ASCII character as is and escapes only
``"``, ``\\``, and control characters (``\\n``, ``\\r``, ``\\t``, ``\\b``, ``\\f``, others as
``\\u00xx``). Example (entry 1, empty detail)::

    {"action":"login","actor":"张三","detail":"{}","prev_hash":"000…000","seq":1,
     "target":"","ts":"2026-01-01T00:00:00.000000Z"}

Appends are serialised across processes (the gateway and the API both append): PostgreSQL
takes ``pg_advisory_xact_lock`` inside the transaction, SQLite starts it with
``BEGIN IMMEDIATE``; the head is read only after that. The migration adds triggers that
refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL), so the chain can only break by
someone dropping them, which :func:`verify` then detects. Deleting the newest entries
cannot be seen from the chain alone: keep :func:`head` somewhere else to detect it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from gateway.models import Base, UTCDateTime, as_utc
from gateway.statedb import StateDB

GENESIS_HASH = "0" * 64
# pg_advisory_xact_lock key serialising appends: ASCII "archaudi" (fits a signed bigint).
AUDIT_LOCK_KEY = 0x6172636861756469
MAX_PAGE = 1000
_VERIFY_BATCH = 1000


class AuditLogRow(Base):
    """A row of the ``audit_log`` table (migration 0001)."""

    __tablename__ = "audit_log"

    # INTEGER on SQLite makes seq the rowid instead of a second index.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False
    )
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(Text(), index=True)
    action: Mapped[str] = mapped_column(Text(), index=True)
    target: Mapped[str] = mapped_column(Text())
    detail: Mapped[str] = mapped_column(Text())
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit entry. ``detail_json`` is the exact text the hash covers."""

    seq: int
    ts: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    detail_json: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :func:`verify`.

    ``entries``: entries found good (all of them when ``ok``; those before the first bad
    one otherwise). ``first_bad_seq``: the first entry whose hash, link or sequence number
    is wrong. ``head_hash``: hash of the last good entry (None for an empty log).
    """

    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str
    head_hash: str | None = None


def format_ts(ts: datetime) -> str:
    """``ts`` as hashed: UTC, ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return as_utc(ts).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _dumps(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_detail(detail: Mapping[str, Any] | None) -> str:
    """The ``detail`` column's text: canonical JSON of ``detail`` (``{}`` for None)."""
    try:
        return _dumps(dict(detail or {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"audit detail is not plain JSON: {exc}") from None


def canonical_bytes(
    *,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    target: str,
    detail_json: str,
    prev_hash: str,
) -> bytes:
    """The bytes an entry's hash is computed over (see the module docstring)."""
    doc = {
        "seq": seq,
        "ts": format_ts(ts),
        "actor": actor,
        "action": action,
        "target": target,
        "detail": detail_json,
        "prev_hash": prev_hash,
    }
    return _dumps(doc).encode("utf-8")


def entry_hash(
    *,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    target: str,
    detail_json: str,
    prev_hash: str,
) -> str:
    """SHA-256 hex of :func:`canonical_bytes`."""
    data = canonical_bytes(
        seq=seq,
        ts=ts,
        actor=actor,
        action=action,
        target=target,
        detail_json=detail_json,
        prev_hash=prev_hash,
    )
    return hashlib.sha256(data).hexdigest()


def _row_hash(row: AuditLogRow) -> str:
    return entry_hash(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail_json=row.detail,
        prev_hash=row.prev_hash,
    )


def parse_detail(text: str) -> dict[str, Any]:
    """An entry's stored detail as a dict; text that is not a JSON object (only reachable by
    tampering, which verify then names) as ``{"_raw": text}``, so listings stay usable and
    show what is there."""
    try:
        detail = json.loads(text)
    except ValueError:
        detail = None
    return detail if isinstance(detail, dict) else {"_raw": text}


def _to_entry(row: AuditLogRow) -> AuditEntry:
    return AuditEntry(
        seq=row.seq,
        ts=row.ts,
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail=parse_detail(row.detail),
        detail_json=row.detail,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _check_text(name: str, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"audit {name} must be a string")
    # PostgreSQL text cannot hold NUL; refuse it on SQLite too so both behave alike.
    if "\x00" in value:
        raise ValueError(f"audit {name} contains a NUL character")


def append(
    db: StateDB,
    *,
    actor: str,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append one entry and return it; safe from several threads and processes at once.

    ``now`` (aware) is the entry's time; default: the wall clock, read after the lock so
    that times follow ``seq`` order.
    """
    for name, value in (("actor", actor), ("action", action), ("target", target)):
        _check_text(name, value)
    detail_json = canonical_detail(detail)
    fixed_ts = as_utc(now) if now is not None else None
    with db.session(write=True) as session:
        db.lock(session, AUDIT_LOCK_KEY)
        last = session.execute(
            select(AuditLogRow.seq, AuditLogRow.hash).order_by(AuditLogRow.seq.desc()).limit(1)
        ).first()
        seq, prev_hash = (last.seq + 1, last.hash) if last is not None else (1, GENESIS_HASH)
        ts = fixed_ts or datetime.now(UTC)
        row = AuditLogRow(
            seq=seq,
            ts=ts,
            actor=actor,
            action=action,
            target=target,
            detail=detail_json,
            prev_hash=prev_hash,
        )
        row.hash = _row_hash(row)
        session.add(row)
        session.flush()
        return _to_entry(row)


async def append_async(
    db: StateDB,
    *,
    actor: str,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """:func:`append` in a worker thread, for the event loop."""
    return await asyncio.to_thread(
        append, db, actor=actor, action=action, target=target, detail=detail, now=now
    )


def verify(db: StateDB, *, batch_size: int = _VERIFY_BATCH) -> VerifyResult:
    """Recompute every hash and link in ``seq`` order; stop at the first bad entry.

    Reads ``batch_size`` entries per transaction, so memory stays flat and a long check
    does not hold one read snapshot (SQLite could not checkpoint its WAL meanwhile).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    good = 0
    expected_seq = 1
    prev_hash = GENESIS_HASH

    def bad(seq: int, reason: str) -> VerifyResult:
        head = None if good == 0 else prev_hash
        return VerifyResult(
            ok=False, entries=good, first_bad_seq=seq, reason=reason, head_hash=head
        )

    while True:
        query = select(AuditLogRow).order_by(AuditLogRow.seq).limit(batch_size)
        # No lower bound on the first batch: a row slipped in below seq 1 must be seen too.
        if good:
            query = query.where(AuditLogRow.seq >= expected_seq)
        with db.session() as session:
            rows = session.execute(query).scalars().all()
        if not rows:
            break
        for row in rows:
            if row.seq < expected_seq:
                return bad(row.seq, f"entry {row.seq}: not in the chain, which starts at 1")
            if row.seq > expected_seq:
                missing = (
                    f"entry {expected_seq}"
                    if row.seq == expected_seq + 1
                    else f"entries {expected_seq}..{row.seq - 1}"
                )
                return bad(row.seq, f"entry {row.seq}: {missing} missing (deleted?)")
            if row.prev_hash != prev_hash:
                before = "the start of the log" if row.seq == 1 else f"entry {row.seq - 1}"
                return bad(row.seq, f"entry {row.seq}: prev_hash does not match {before}")
            if _row_hash(row) != row.hash:
                return bad(row.seq, f"entry {row.seq}: content does not match its hash (modified)")
            good += 1
            expected_seq += 1
            prev_hash = row.hash
    head = prev_hash if good else None
    return VerifyResult(ok=True, entries=good, first_bad_seq=None, reason="ok", head_hash=head)


async def verify_async(db: StateDB, *, batch_size: int = _VERIFY_BATCH) -> VerifyResult:
    """:func:`verify` in a worker thread, for the event loop."""
    return await asyncio.to_thread(verify, db, batch_size=batch_size)


def _filters(
    actor: str | None, action: str | None, since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if actor is not None:
        where.append(AuditLogRow.actor == actor)
    if action is not None:
        where.append(AuditLogRow.action == action)
    if since is not None:
        where.append(AuditLogRow.ts >= as_utc(since))
    if until is not None:
        where.append(AuditLogRow.ts < as_utc(until))
    return where


def entries(
    db: StateDB,
    *,
    offset: int = 0,
    limit: int = 100,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    newest_first: bool = True,
) -> list[AuditEntry]:
    """One page of entries matching every given filter (``since`` <= ts < ``until``)."""
    if offset < 0:
        raise ValueError("offset must not be negative")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
    order = AuditLogRow.seq.desc() if newest_first else AuditLogRow.seq.asc()
    query = (
        select(AuditLogRow)
        .where(*_filters(actor, action, since, until))
        .order_by(order)
        .offset(offset)
        .limit(limit)
    )
    with db.session() as session:
        return [_to_entry(row) for row in session.execute(query).scalars()]


def count(
    db: StateDB,
    *,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """How many entries match the filters of :func:`entries` (for page counts)."""
    query = select(func.count()).select_from(AuditLogRow)
    query = query.where(*_filters(actor, action, since, until))
    with db.session() as session:
        return int(session.execute(query).scalar_one())


def head(db: StateDB) -> AuditEntry | None:
    """The newest entry (None for an empty log); record its hash elsewhere to anchor it."""
    with db.session() as session:
        row = session.execute(
            select(AuditLogRow).order_by(AuditLogRow.seq.desc()).limit(1)
        ).scalar_one_or_none()
        return _to_entry(row) if row is not None else None
