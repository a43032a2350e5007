"""Silences: label matchers, a start and an end, an author and a reason.

An alert is silenced while a silence is active (``starts_at_ns <= now < ends_at_ns``) and
every one of its matchers matches the alert's labels. Silenced alerts are still tracked and
shown; only their notifications are held back. Matchers are Alertmanager's: ``label=value``,
``label!=value``, ``label=~regex``, ``label!~regex``; a regex must match the whole value, and
a label the alert does not have counts as the empty string. Besides its scope labels an
alert matches on ``rule_id``, ``rule_kind`` and ``severity``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One condition on one label: equal, not equal, regex match or regex non-match."""

    name: str
    op: MatchOp
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            try:
                compiled = re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.name}{self.op}{self.value!r}: {exc}") from None
            object.__setattr__(self, "_regex", compiled)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``room=A101``, ``rule_kind=~band|threshold`` (quotes around the value optional)."""
        found = _MATCHER.match(text)
        if found is None:
            raise ValueError(f"matcher {text!r}: expected label=value, !=, =~ or !~")
        name, op, value = found.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls(name, op, value)  # type: ignore[arg-type]

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self._regex is not None:
            hit = self._regex.fullmatch(actual) is not None
            return hit if self.op == "=~" else not hit
        return (actual == self.value) if self.op == "=" else (actual != self.value)

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def matchers_json(matchers: Iterable[Matcher]) -> str:
    return json.dumps([[m.name, m.op, m.value] for m in matchers], ensure_ascii=False)


def matchers_from_json(text: str) -> tuple[Matcher, ...]:
    return tuple(Matcher(str(n), o, str(v)) for n, o, v in json.loads(text))


def all_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class Silence:
    """A silence as created by a person; ``expired_by`` is set when ended early."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at_ns: int
    ends_at_ns: int
    author: str
    reason: str
    created_at_ns: int
    expired_by: str | None = None

    def active(self, now_ns: int) -> bool:
        return self.starts_at_ns <= now_ns < self.ends_at_ns

    def silences(self, labels: Mapping[str, str], now_ns: int) -> bool:
        return self.active(now_ns) and all_match(self.matchers, labels)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at_ns": self.starts_at_ns,
            "ends_at_ns": self.ends_at_ns,
            "author": self.author,
            "reason": self.reason,
        }


class Silencer:
    """The set of silences, in memory; the engine persists them."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self._silences: dict[str, Silence] = {s.id: s for s in silences}

    def put(self, silence: Silence) -> None:
        self._silences[silence.id] = silence

    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    def all(self, now_ns: int | None = None) -> list[Silence]:
        """Every silence, or only those active at ``now_ns``; oldest first."""
        found = [s for s in self._silences.values() if now_ns is None or s.active(now_ns)]
        return sorted(found, key=lambda s: (s.created_at_ns, s.id))

    def silenced_by(self, labels: Mapping[str, str], now_ns: int) -> list[str]:
        """Ids of the active silences that match ``labels``."""
        return [s.id for s in self.all() if s.silences(labels, now_ns)]


# Labels alerts carry: their scope (alerting.evaluators.base), a badge for access rules, and
# what match_labels adds. A matcher on any other name can never match a real alert.
ALERT_LABELS = frozenset(
    {"site", "building", "room", "sensor", "drill_id", "badge", "rule_id", "rule_kind", "severity"}
)


def check_against(matchers: Iterable[Matcher], known: Mapping[str, Iterable[str]]) -> None:
    """Refuse matchers that cannot mean what their author meant: a label alerts never
    carry, or an equality with a value the site does not have (``room=A1O1``). ``known``
    maps a label to its possible values (labels left out are not checked). Raises
    ValueError naming the matcher."""
    for m in matchers:
        if m.name not in ALERT_LABELS:
            names = ", ".join(sorted(ALERT_LABELS))
            raise ValueError(f"matcher {m}: alerts have no label '{m.name}' (they have {names})")
        values = known.get(m.name)
        if m.op == "=" and values is not None and m.value not in set(values):
            raise ValueError(f"matcher {m}: no {m.name} '{m.value}' in this site")
