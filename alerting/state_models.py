"""State-database tables of the alert lifecycle: alerts, silences and the notification log.

Times are integers, nanoseconds since the Unix epoch, like every timestamp the engine
handles (``Condition.at_ns``, the clock): no time zone can be lost on the way. Labels and
matchers are canonical JSON text. The functions at the end map rows to
:class:`~alerting.lifecycle.Alert` and :class:`~alerting.silence.Silence`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from sqlalchemy import BigInteger, Boolean, ColumnElement, Float, String, Text, and_, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from alerting.lifecycle import Alert
from alerting.model import AlertState, Severity
from alerting.silence import Silence, matchers_from_json, matchers_json
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
        return [
            Silence(
                id=row.id,
                matchers=matchers_from_json(row.matchers),
                starts_at_ns=row.starts_at_ns,
                ends_at_ns=row.ends_at_ns,
                author=row.author,
                reason=row.reason,
                created_at_ns=row.created_at_ns,
                expired_by=row.expired_by,
            )
            for row in session.execute(query).scalars()
        ]
