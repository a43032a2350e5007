"""Contacts: the people archwatch notifies, their apprise URLs and what they receive.

The file is named by the site file's ``contacts:`` key. Each contact lists apprise URLs in
order of preference (the delivery worker fails over down the list) and routes saying which
alerts reach them. ``${NAME}`` in a URL is replaced by the environment variable ``NAME`` at
load time, so secrets (and the demo's receiver address, ``${ARCHWATCH_DEMO_RECEIVER}``)
need not be written into the file; ``${NAME:-default}`` falls back to ``default`` when the
variable is unset, and a missing variable without a default is an error naming it.

URLs are credentials: they never appear in a repr, a validation error or a log line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from alerting.model import Severity
from alerting.notifiers import NOTIFIERS, notifier_for
from alerting.redact import scheme_of
from alerting.roster import EscalationConfig
from gateway.configfile import load_model
from gateway.standards import ID_PATTERN

Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Route(_Strict):
    """Which alerts a contact receives. An empty list means "any"; all given lists must match."""

    severities: list[Severity] = Field(default_factory=list)
    buildings: list[Id] = Field(default_factory=list)
    rooms: list[Id] = Field(default_factory=list)
    drills: bool = Field(default=True, description="also receive drill alerts")

    def matches(self, *, severity: str, building: str, room: str, drill: bool) -> bool:
        if drill and not self.drills:
            return False
        if self.severities and severity not in self.severities:
            return False
        if self.buildings and building not in self.buildings:
            return False
        return not (self.rooms and room not in self.rooms)


def expand_placeholders(url: str, env: Mapping[str, str]) -> str:
    """``url`` with each ``${NAME}`` (or ``${NAME:-default}``) replaced from ``env``;
    KeyError names a variable that is unset and has no default."""

    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _PLACEHOLDER.sub(sub, url)


class Contact(_Strict):
    """A person (or a duty phone) with apprise URLs in order of preference."""

    id: Id
    name: str = ""
    roles: list[Id] = Field(default_factory=list)
    language: Literal["zh", "en"] | None = None
    # repr=False: a URL is a credential (pydantic would print it in every repr).
    urls: list[str] = Field(min_length=1, repr=False)
    routes: list[Route] = Field(default_factory=lambda: [Route()])

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str], info: ValidationInfo) -> list[str]:
        env: Mapping[str, str] = (info.context or {}).get("env", os.environ)
        out = []
        for i, raw in enumerate(urls):
            try:
                url = expand_placeholders(raw, env)
            except KeyError as exc:
                raise ValueError(
                    f"URL {i + 1}: environment variable '{exc.args[0]}' is not set"
                ) from None
            scheme = scheme_of(url)
            if not scheme:
                raise ValueError(f"URL {i + 1} is not an apprise URL (scheme://...)")
            if not _apprise_accepts(url):
                shown = notifier_for(url).label
                known = ", ".join(sorted(NOTIFIERS))
                raise ValueError(
                    f"URL {i + 1} ({shown}) is not a valid apprise URL (archwatch knows: {known}; "
                    "other apprise schemes are delivered generically)"
                )
            out.append(url)
        return out

    @property
    def channels(self) -> list[str]:
        """The loggable labels of the URLs, in order."""
        return [notifier_for(url).label for url in self.urls]

    def receives(self, *, severity: str, building: str, room: str, drill: bool) -> bool:
        return any(
            r.matches(severity=severity, building=building, room=room, drill=drill)
            for r in self.routes
        )


def _apprise_accepts(url: str) -> bool:
    import apprise  # deferred: apprise loads its plugin table on first import

    notifier_for(url)  # registers the URL's secrets before apprise may log them
    return bool(apprise.Apprise().add(url))


class DeliverySettings(_Strict):
    """Retry and failover of the delivery worker (see :mod:`alerting.delivery`)."""

    attempts_per_url: int = Field(default=3, ge=1, le=100)
    backoff_initial_s: float = Field(default=5.0, gt=0, le=3600)
    backoff_factor: float = Field(default=2.0, ge=1, le=10)
    backoff_max_s: float = Field(default=300.0, gt=0, le=86400)


class ContactsFile(_Strict):
    """The contacts file: people, the default language of their messages, delivery."""

    language: Literal["zh", "en"] = "zh"
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    contacts: list[Contact] = Field(min_length=1)
    # Duty rosters and escalation policies (alerting.roster); after `contacts`, which it names.
    escalation: EscalationConfig | None = None

    @field_validator("escalation")
    @classmethod
    def _escalation_contacts(
        cls, value: EscalationConfig | None, info: ValidationInfo
    ) -> EscalationConfig | None:
        known = {c.id for c in info.data.get("contacts", [])}
        if value is not None and known:
            problems = value.unknown_contacts(known)
            if problems:
                raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _unique(self) -> ContactsFile:
        seen: set[str] = set()
        for c in self.contacts:
            if c.id in seen:
                raise ValueError(f"duplicate contact id '{c.id}'")
            seen.add(c.id)
        return self


class Contacts:
    """A loaded contacts file: look-up by id and routing of alerts to recipients."""

    def __init__(self, model: ContactsFile, path: Path | None = None) -> None:
        self.model = model
        self.path = path
        self._by_id = {c.id: c for c in model.contacts}

    def __repr__(self) -> str:
        return f"Contacts({len(self._by_id)} contacts)"

    def __contains__(self, contact_id: object) -> bool:
        return contact_id in self._by_id

    def get(self, contact_id: str) -> Contact | None:
        return self._by_id.get(contact_id)

    def all(self) -> list[Contact]:
        return list(self._by_id.values())

    def language_of(self, contact: Contact) -> str:
        return contact.language or self.model.language

    def recipients(
        self, *, severity: str, building: str, room: str, drill: bool = False
    ) -> list[Contact]:
        """Contacts whose routes take an alert of this severity in this room, in file order."""
        return [
            c
            for c in self._by_id.values()
            if c.receives(severity=severity, building=building, room=room, drill=drill)
        ]

    def resolve(self, ids: Sequence[str]) -> list[Contact]:
        """The contacts named by ``ids``; unknown ids are skipped (they left the file)."""
        return [self._by_id[i] for i in ids if i in self._by_id]


def load_contacts(path: Path, *, env: Mapping[str, str] | None = None) -> Contacts:
    """Load and validate a contacts file; ConfigError lists every problem with file:line."""
    path = Path(path)
    model = load_model(path, ContactsFile, context={"env": os.environ if env is None else env})
    return Contacts(model, path)
