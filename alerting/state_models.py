"""State-database tables of the alert lifecycle: alerts, silences and the notification log.

Times are integers, nanoseconds since the Unix epoch, like every timestamp the engine
handles (``Condition.at_ns``, the clock): no time zone can be lost on the way. Labels and
matchers are canonical JSON text. The functions at the end map rows to
:class:`~alerting.lifecycle.Alert` and :class:`~alerting.silence.Silence`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    String,
    Text,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column

from alerting.lifecycle import Alert
from alerting.model import AlertState, Severity
from alerting.silence import Matcher, Silence, matchers_from_json, matchers_json
from gateway.models import Base
from gateway.statedb import StateDB

_ID = String(32)
_NS = BigInteger()


class AlertRow(Base):
    """One alert: a rule firing for one scope, from activation to resolution (0002)."""

    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(_ID, index=True)
    rule_id: Mapped[str] = mapped_column(Text())
    rule_kind: Mapped[str] = mapped_column(Text())
    severity: Mapped[str] = mapped_column(String(16))
    labels: Mapped[str] = mapped_column(Text())
    state: Mapped[str] = mapped_column(String(16), index=True)
    drill_id: Mapped[str | None] = mapped_column(Text())
    value: Mapped[float | None] = mapped_column(Float())
    summary: Mapped[str] = mapped_column(Text())
    limit_text: Mapped[str] = mapped_column(Text())
    for_s: Mapped[float] = mapped_column(Float())
    keep_firing_for_s: Mapped[float] = mapped_column(Float())
    started_at_ns: Mapped[int] = mapped_column(_NS)
    last_active_ns: Mapped[int] = mapped_column(_NS)
    fired_at_ns: Mapped[int | None] = mapped_column(_NS)
    inactive_since_ns: Mapped[int | None] = mapped_column(_NS)
    acked_by: Mapped[str | None] = mapped_column(Text())
    acked_note: Mapped[str | None] = mapped_column(Text())
    acked_at_ns: Mapped[int | None] = mapped_column(_NS)
    resolved_by: Mapped[str | None] = mapped_column(Text())
    resolved_note: Mapped[str | None] = mapped_column(Text())
    resolved_at_ns: Mapped[int | None] = mapped_column(_NS)


class SilenceRow(Base):
    """A silence: alerts matching every matcher are not notified between start and end."""

    __tablename__ = "alert_silences"

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    matchers: Mapped[str] = mapped_column(Text())
    starts_at_ns: Mapped[int] = mapped_column(_NS)
    ends_at_ns: Mapped[int] = mapped_column(_NS, index=True)
    author: Mapped[str] = mapped_column(Text())
    reason: Mapped[str] = mapped_column(Text())
    created_at_ns: Mapped[int] = mapped_column(_NS)
    expired_by: Mapped[str | None] = mapped_column(Text())


class NflogBatchRow(Base):
    """A notification batch handed to delivery; ``enqueued`` once the sink accepted it."""

    __tablename__ = "alert_nflog_batches"

    id: Mapped[str] = mapped_column(_ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    group_key: Mapped[str] = mapped_column(Text())
    created_at_ns: Mapped[int] = mapped_column(_NS)
    payload: Mapped[str] = mapped_column(Text())
    enqueued: Mapped[bool] = mapped_column(Boolean(), index=True)


class NflogEntryRow(Base):
    """One alert's part in one batch: what kind of notice it was given, and when."""

    __tablename__ = "alert_nflog_entries"

    batch_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    alert_id: Mapped[str] = mapped_column(_ID, primary_key=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at_ns: Mapped[int] = mapped_column(_NS)


class NflogRecipientRow(Base):
    """Who was told of an alert (reported by delivery): they get its resolution notice."""

    __tablename__ = "alert_nflog_recipients"

    alert_id: Mapped[str] = mapped_column(_ID, primary_key=True)
    recipient: Mapped[str] = mapped_column(Text(), primary_key=True)
    at_ns: Mapped[int] = mapped_column(_NS)


# --- mapping and queries (blocking: call through asyncio.to_thread) -----------------------


def _labels_json(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def save_alerts(db: StateDB, alerts: Iterable[Alert]) -> None:
    """Insert or update ``alerts`` in one transaction."""
    with db.session(write=True) as session:
        for alert in alerts:
            row = session.get(AlertRow, alert.id)
            if row is None:
                row = AlertRow(id=alert.id)
                session.add(row)
            row.fingerprint = alert.fingerprint
            row.rule_id, row.rule_kind = alert.rule_id, alert.rule_kind
            row.severity, row.state = alert.severity.value, alert.state.value
            row.labels, row.drill_id = _labels_json(alert.labels), alert.drill_id
            row.value, row.summary, row.limit_text = alert.value, alert.summary, alert.limit
            row.for_s, row.keep_firing_for_s = alert.for_s, alert.keep_firing_for_s
            row.started_at_ns, row.last_active_ns = alert.started_at_ns, alert.last_active_ns
            row.fired_at_ns, row.inactive_since_ns = alert.fired_at_ns, alert.inactive_since_ns
            row.acked_by, row.acked_note = alert.acked_by, alert.acked_note
            row.acked_at_ns = alert.acked_at_ns
            row.resolved_by, row.resolved_note = alert.resolved_by, alert.resolved_note
            row.resolved_at_ns = alert.resolved_at_ns


def alert_from_row(row: AlertRow) -> Alert:
    return Alert(
        id=row.id,
        fingerprint=row.fingerprint,
        rule_id=row.rule_id,
        rule_kind=row.rule_kind,
        severity=Severity(row.severity),
        labels=json.loads(row.labels),
        state=AlertState(row.state),
        started_at_ns=row.started_at_ns,
        last_active_ns=row.last_active_ns,
        value=row.value,
        summary=row.summary,
        limit=row.limit_text,
        for_s=row.for_s,
        keep_firing_for_s=row.keep_firing_for_s,
        fired_at_ns=row.fired_at_ns,
        inactive_since_ns=row.inactive_since_ns,
        acked_by=row.acked_by,
        acked_note=row.acked_note,
        acked_at_ns=row.acked_at_ns,
        resolved_by=row.resolved_by,
        resolved_note=row.resolved_note,
        resolved_at_ns=row.resolved_at_ns,
    )


def load_live_alerts(db: StateDB) -> list[Alert]:
    """Open alerts, and resolved ones that were told but whose resolution was not noticed."""
    told = select(NflogEntryRow.alert_id).where(NflogEntryRow.kind == "firing")
    noticed = select(NflogEntryRow.alert_id).where(NflogEntryRow.kind == "resolved")
    awaiting = and_(
        AlertRow.state == AlertState.RESOLVED.value,
        AlertRow.id.in_(told),
        AlertRow.id.not_in(noticed),
    )
    query = select(AlertRow).where(or_(AlertRow.state != AlertState.RESOLVED.value, awaiting))
    with db.session() as session:
        return [alert_from_row(row) for row in session.execute(query).scalars()]


def query_alerts(
    db: StateDB,
    *,
    states: Sequence[AlertState] | None = None,
    drill: bool | None = False,
    room: str | None = None,
    severity: Severity | None = None,
    limit: int = 100,
) -> list[Alert]:
    """Alerts newest first; ``drill`` False: real ones only, True: drills only, None: both."""
    # A pending alert that closed before firing was never anyone's news: not listed.
    where: list[ColumnElement[bool]] = [
        or_(AlertRow.state != AlertState.RESOLVED.value, AlertRow.fired_at_ns.is_not(None))
    ]
    if states is not None:
        where.append(AlertRow.state.in_([s.value for s in states]))
    if drill is not None:
        where.append(AlertRow.drill_id.is_not(None) if drill else AlertRow.drill_id.is_(None))
    if severity is not None:
        where.append(AlertRow.severity == severity.value)
    query = select(AlertRow).where(*where).order_by(AlertRow.started_at_ns.desc(), AlertRow.id)
    if room is None:
        query = query.limit(limit)
    with db.session() as session:
        alerts = [alert_from_row(row) for row in session.execute(query).scalars()]
    if room is not None:
        # Labels are JSON text: filtered here rather than with dialect-specific JSON SQL.
        alerts = [a for a in alerts if a.labels.get("room") == room]
    return alerts[:limit]


def save_silence(db: StateDB, silence: Silence) -> None:
    with db.session(write=True) as session:
        row = session.get(SilenceRow, silence.id)
        if row is None:
            row = SilenceRow(id=silence.id)
            session.add(row)
        row.matchers = matchers_json(silence.matchers)
        row.starts_at_ns, row.ends_at_ns = silence.starts_at_ns, silence.ends_at_ns
        row.author, row.reason = silence.author, silence.reason
        row.created_at_ns, row.expired_by = silence.created_at_ns, silence.expired_by


def load_silences(db: StateDB, since_ns: int) -> list[Silence]:
    """Silences that end after ``since_ns`` (the rest can no longer silence anything)."""
    query = select(SilenceRow).where(SilenceRow.ends_at_ns > since_ns)
    with db.session() as session:
        return [_silence_from_row(row) for row in session.execute(query).scalars()]


def get_alert(db: StateDB, alert_id: str) -> Alert | None:
    """One alert by id, open or resolved; None when unknown. Blocking."""
    with db.session() as session:
        row = session.get(AlertRow, alert_id)
        return alert_from_row(row) if row is not None else None


def _label_is(name: str, value: str) -> ColumnElement[bool]:
    """A prefilter on the canonical labels JSON (``"room":"A101"``). SQLite's LIKE ignores
    ASCII case, so callers check the parsed labels exactly afterwards."""
    pair = f"{json.dumps(name)}:{json.dumps(value, ensure_ascii=False)}"
    return AlertRow.labels.contains(pair, autoescape=True)


def page_alerts(
    db: StateDB,
    *,
    states: Sequence[AlertState] | None = None,
    severities: Sequence[Severity] | None = None,
    rule_kinds: Sequence[str] | None = None,
    drill: bool | None = False,
    started_from_ns: int | None = None,
    started_until_ns: int | None = None,
    building: str | None = None,
    room: str | None = None,
    visible_buildings: frozenset[str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Alert], int]:
    """One page of alerts, newest first, and how many match in all. Blocking.

    ``started_from_ns``/``started_until_ns`` (both inclusive, so that "until now" takes
    an alert that started this instant) select alerts that started in that window; an
    alert still open is listed whatever its start, as long as it started by the window's
    end: an alert firing for months is still news. ``visible_buildings`` (None:
    every building) hides alerts labelled with another building, and alerts without a
    building label.
    """
    where: list[ColumnElement[bool]] = [
        # A pending alert that closed before firing was never anyone's news: not listed.
        or_(AlertRow.state != AlertState.RESOLVED.value, AlertRow.fired_at_ns.is_not(None))
    ]
    if states is not None:
        where.append(AlertRow.state.in_([s.value for s in states]))
    if severities is not None:
        where.append(AlertRow.severity.in_([s.value for s in severities]))
    if rule_kinds is not None:
        where.append(AlertRow.rule_kind.in_(list(rule_kinds)))
    if drill is not None:
        where.append(AlertRow.drill_id.is_not(None) if drill else AlertRow.drill_id.is_(None))
    if started_until_ns is not None:
        where.append(AlertRow.started_at_ns <= started_until_ns)
    if started_from_ns is not None:
        where.append(
            or_(
                AlertRow.started_at_ns >= started_from_ns,
                AlertRow.state != AlertState.RESOLVED.value,
            )
        )
    if building is not None:
        where.append(_label_is("building", building))
    if room is not None:
        where.append(_label_is("room", room))
    order = (AlertRow.started_at_ns.desc(), AlertRow.id)
    with db.session() as session:
        if building is None and room is None and visible_buildings is None:
            total = session.execute(
                select(func.count()).select_from(AlertRow).where(*where)
            ).scalar_one()
            rows = session.execute(
                select(AlertRow).where(*where).order_by(*order).offset(offset).limit(limit)
            ).scalars()
            return [alert_from_row(row) for row in rows], int(total)
        # Label filters are exact on the parsed labels: only ids and labels are read for
        # the count, then the page's rows.
        ids = []
        for alert_id, labels_text in session.execute(
            select(AlertRow.id, AlertRow.labels).where(*where).order_by(*order)
        ):
            labels = json.loads(labels_text)
            if building is not None and labels.get("building") != building:
                continue
            if room is not None and labels.get("room") != room:
                continue
            # Scoped to buildings: an alert without a building label is none of theirs.
            if visible_buildings is not None and labels.get("building") not in visible_buildings:
                continue
            ids.append(alert_id)
        page = ids[offset : offset + limit]
        found = {
            row.id: alert_from_row(row)
            for row in session.execute(select(AlertRow).where(AlertRow.id.in_(page))).scalars()
        }
        return [found[i] for i in page if i in found], len(ids)


def _silence_from_row(row: SilenceRow) -> Silence:
    return Silence(
        id=row.id,
        matchers=matchers_from_json(row.matchers),
        starts_at_ns=row.starts_at_ns,
        ends_at_ns=row.ends_at_ns,
        author=row.author,
        reason=row.reason,
        created_at_ns=row.created_at_ns,
        expired_by=row.expired_by,
    )


def silence_in_buildings(silence: Silence, buildings: frozenset[str]) -> bool:
    """Whether ``silence`` is about one of ``buildings``: it has a ``building=<b>``
    equality matcher with ``b`` among them. A silence without one may mute alerts of any
    building, so it belongs to none in particular."""
    return _about(silence.matchers, buildings)


def _about(matchers: Iterable[Matcher], buildings: frozenset[str]) -> bool:
    return any(m.name == "building" and m.op == "=" and m.value in buildings for m in matchers)


def _matcher_is(name: str, value: str) -> ColumnElement[bool]:
    """A prefilter on the matchers JSON (``["building", "=", "b1"]``, as
    :func:`~alerting.silence.matchers_json` writes it); SQLite's LIKE ignores ASCII case,
    so callers check the parsed matchers exactly afterwards."""
    triple = json.dumps([name, "=", value], ensure_ascii=False)
    return SilenceRow.matchers.contains(triple, autoescape=True)


def page_silences(
    db: StateDB,
    *,
    active_at_ns: int | None = None,
    visible_buildings: frozenset[str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Silence], int]:
    """Silences newest first (all, or those active at ``active_at_ns``) and the total.

    ``visible_buildings`` (None: every silence) keeps only the silences about one of those
    buildings (:func:`silence_in_buildings`); the total counts only those."""
    where: list[ColumnElement[bool]] = []
    if active_at_ns is not None:
        where += [SilenceRow.starts_at_ns <= active_at_ns, SilenceRow.ends_at_ns > active_at_ns]
    order = (SilenceRow.created_at_ns.desc(), SilenceRow.id)
    if visible_buildings is not None:
        if not visible_buildings:
            return [], 0
        where.append(or_(*(_matcher_is("building", b) for b in sorted(visible_buildings))))
        with db.session() as session:
            # Exact on the parsed matchers: the ids of those that qualify, then the page.
            ids = [
                silence_id
                for silence_id, matchers in session.execute(
                    select(SilenceRow.id, SilenceRow.matchers).where(*where).order_by(*order)
                )
                if _about(matchers_from_json(matchers), visible_buildings)
            ]
            page = ids[offset : offset + limit]
            found = {
                row.id: _silence_from_row(row)
                for row in session.execute(
                    select(SilenceRow).where(SilenceRow.id.in_(page))
                ).scalars()
            }
            return [found[i] for i in page if i in found], len(ids)
    with db.session() as session:
        total = session.execute(
            select(func.count()).select_from(SilenceRow).where(*where)
        ).scalar_one()
        rows = session.execute(
            select(SilenceRow).where(*where).order_by(*order).offset(offset).limit(limit)
        ).scalars()
        return [_silence_from_row(row) for row in rows], int(total)


class SilenceEnded(ValueError):
    """The silence to expire has ended (or was expired) already; nothing was changed."""

    def __init__(self, silence: Silence) -> None:
        super().__init__(f"silence {silence.id} has already ended")
        self.silence = silence


def expire_silence(
    db: StateDB,
    silence_id: str,
    user: str,
    now_ns: int,
    *,
    visible_buildings: frozenset[str] | None = None,
) -> Silence:
    """End a silence now, in one transaction (the API and the engine share this).

    Raises KeyError for an unknown id, or one not about ``visible_buildings`` (None: any
    silence; see :func:`silence_in_buildings`), and :class:`SilenceEnded` when it has
    ended already. A silence that has not started yet ends at its start, so it never
    mutes anything.
    """
    with db.session(write=True) as session:
        row = session.get(SilenceRow, silence_id)
        if row is None:
            raise KeyError(silence_id)
        current = _silence_from_row(row)
        if visible_buildings is not None and not silence_in_buildings(current, visible_buildings):
            raise KeyError(silence_id)
        if current.ends_at_ns <= now_ns or current.expired_by is not None:
            raise SilenceEnded(current)
        row.ends_at_ns = min(row.ends_at_ns, max(now_ns, row.starts_at_ns))
        row.expired_by = user
        return _silence_from_row(row)
