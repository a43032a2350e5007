"""Inhibition: while a source alert fires, matching target alerts are muted.

A rule is data: source matchers, target matchers and the labels both must share
(``equal``; a label missing on both sides counts as equal, so a drill fire, which carries
``drill_id``, never mutes real alerts and a real fire never mutes drill alerts). The default
rule: a firing or acknowledged ``confirmed_fire`` alert mutes the climate alerts of the same
room (while the room burns, its humidity is not news). Muted alerts are still tracked and
shown as inhibited; they are not notified.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from alerting.model import AlertState
from alerting.silence import Matcher, all_match

CLIMATE_KINDS = ("band", "threshold", "fluctuation", "rate_of_change", "condensation")


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """Targets matching ``target`` are muted while a source matching ``source`` fires."""

    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(
        source=(Matcher("rule_kind", "=", "confirmed_fire"),),
        target=(Matcher("rule_kind", "=~", "|".join(CLIMATE_KINDS)),),
        equal=("site", "building", "room", "drill_id"),
    ),
)

_MUTING_STATES = (AlertState.FIRING, AlertState.ACKNOWLEDGED)


@dataclass(frozen=True, slots=True)
class Labelled:
    """What the inhibitor needs of an alert: its id, state and match labels."""

    id: str
    state: AlertState
    labels: Mapping[str, str]


class Inhibitor:
    """Decides which alerts are muted by which, given every open alert."""

    def __init__(self, rules: Sequence[InhibitRule] = DEFAULT_INHIBIT_RULES) -> None:
        self.rules = tuple(rules)

    def inhibited(self, alerts: Iterable[Labelled]) -> dict[str, str]:
        """Map of muted alert id -> the id of an alert muting it."""
        alerts = list(alerts)
        muted: dict[str, str] = {}
        for rule in self.rules:
            sources = [
                a for a in alerts if a.state in _MUTING_STATES and all_match(rule.source, a.labels)
            ]
            if not sources:
                continue
            for target in alerts:
                if target.id in muted or not all_match(rule.target, target.labels):
                    continue
                for source in sources:
                    if source.id != target.id and _equal(rule.equal, source, target):
                        muted[target.id] = source.id
                        break
        return muted


def _equal(names: Iterable[str], a: Labelled, b: Labelled) -> bool:
    return all(a.labels.get(n, "") == b.labels.get(n, "") for n in names)
