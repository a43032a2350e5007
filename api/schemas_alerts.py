"""Request and response bodies of the alert and silence routes (and the console).

Request bodies forbid unknown fields (422 naming the field): a client sets a note, or a
silence's matchers, times and reason, never who acknowledged or who authored (the API takes
those from the caller). Times in responses are aware ISO 8601 datetimes (UTC); a time sent
without an offset is taken in the site's time zone (``ARCHWATCH_TIMEZONE``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from alerting.acklink import MAX_NOTE_CHARS
from alerting.engine import MAX_MATCHERS
from alerting.model import AlertState, Severity
from alerting.rules import RULE_KINDS

MAX_ALERT_WINDOW = timedelta(days=366)
"""The longest window of alert start times one listing may ask for."""
DEFAULT_ALERT_WINDOW = timedelta(days=30)
MAX_REASON_CHARS = 500
MAX_MATCHER_CHARS = 200

# No control characters: the audit log and PostgreSQL refuse NUL, and none belongs here.
_PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Note = Annotated[str, StringConstraints(max_length=MAX_NOTE_CHARS, pattern=_PRINTABLE)]
Reason = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=MAX_REASON_CHARS, pattern=_PRINTABLE
    ),
]
MatcherText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_MATCHER_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
LabelValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
ObjectId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
"""Alert and silence ids: 32 lowercase hex digits."""
DrillFilter = Literal["real", "drill", "all"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AlertQuery(_Request):
    """Which alerts to list: every given filter must hold (a list field: any of its values).

    ``start``/``end`` bound when the alert started, both inclusive (default: the last 30
    days up to now, at most 366 days); an alert still open is listed whatever its start,
    as long as it started by ``end``. ``drill``: ``real`` (default) real alerts only,
    ``drill`` drills only, ``all`` both.
    """

    states: list[AlertState] | None = Field(default=None, max_length=len(AlertState))
    severities: list[Severity] | None = Field(default=None, max_length=len(Severity))
    building: LabelValue | None = None
    room: LabelValue | None = None
    rule_kinds: list[str] | None = Field(default=None, max_length=len(RULE_KINDS))
    drill: DrillFilter = "real"
    start: datetime | None = None
    end: datetime | None = None

    @field_validator("rule_kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str] | None) -> list[str] | None:
        for kind in kinds or ():
            if kind not in RULE_KINDS:
                known = ", ".join(sorted(RULE_KINDS))
                raise ValueError(f"unknown rule kind {kind!r}; known: {known}")
        return kinds

    @model_validator(mode="after")
    def _bounded(self) -> AlertQuery:
        if self.start is not None and self.end is not None:
            if (self.start.tzinfo is None) != (self.end.tzinfo is None):
                raise ValueError("give start and end both with or both without a UTC offset")
            if self.end <= self.start:
                raise ValueError("end must be after start")
            if self.end - self.start > MAX_ALERT_WINDOW:
                raise ValueError(f"the time range is longer than {MAX_ALERT_WINDOW.days} days")
        return self


class ActionPublic(BaseModel):
    """An operator action queued for the gateway: ``pending`` until its alert engine
    applies it (within about a second), then ``done`` or ``failed`` with the reason."""

    request_id: int
    action: Literal["ack", "resolve"]
    user: str
    note: str
    via: str
    status: Literal["pending", "done", "failed"]
    requested_at: datetime
    processed_at: datetime | None
    error: str | None


class AlertPublic(BaseModel):
    """An alert as the API shows it. ``pending_action`` is the oldest action queued for it
    and not applied yet; ``actions`` (single-alert answers only, null in listings) the
    latest queued actions whatever became of them; ``silenced_by`` the active silences
    that match it now."""

    id: str
    rule_id: str
    rule_kind: str
    severity: Severity
    state: AlertState
    labels: dict[str, str]
    building: str | None
    room: str | None
    drill: bool
    drill_id: str | None
    value: float | None
    summary: str
    limit: str
    started_at: datetime
    fired_at: datetime | None
    acked_by: str | None
    acked_note: str | None
    acked_at: datetime | None
    resolved_by: str | None
    resolved_note: str | None
    resolved_at: datetime | None
    silenced_by: list[str]
    pending_action: ActionPublic | None
    actions: list[ActionPublic] | None = None


class ActionRequest(_Request):
    """The body of an acknowledge or resolve request: an optional note, nothing else."""

    note: Note = ""


class ActionQueued(BaseModel):
    """A queued action (202): the gateway applies it on its next tick; GET the alert to
    see it applied (``pending_action`` gone, the state changed)."""

    request_id: int
    alert_id: str
    action: Literal["ack", "resolve"]
    status: Literal["pending"] = "pending"
    user: str
    note: str
    via: str
    requested_at: datetime


class SilenceCreate(_Request):
    """A new silence: matchers in Alertmanager syntax (``room=a101``, ``room!=a101``,
    ``rule_kind=~band|threshold``, ``sensor!~.*-t``; labels besides the scope: ``rule_id``,
    ``rule_kind``, ``severity``), an end (default start: now), and why. The author is the
    caller."""

    matchers: list[MatcherText] = Field(min_length=1, max_length=MAX_MATCHERS)
    starts_at: datetime | None = None
    ends_at: datetime
    reason: Reason


class SilencePublic(BaseModel):
    """A silence. ``status``: ``pending`` (starts later), ``active``, or ``expired`` (ended,
    or ended early by ``expired_by``)."""

    id: str
    matchers: list[str]
    starts_at: datetime
    ends_at: datetime
    author: str
    reason: str
    created_at: datetime
    expired_by: str | None
    status: Literal["pending", "active", "expired"]
