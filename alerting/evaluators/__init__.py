"""Rule evaluators: one module per rule kind, each registered in ``EVALUATORS``.

Importing this package registers them all; ``build_evaluators`` makes one per rule and
``prime_evaluators`` rebuilds their history from the store at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from alerting.evaluators import (  # noqa: F401  (imported to register)
    access_badge,
    band,
    battery_low,
    calibration_overdue,
    condensation,
    confirmed_fire,
    door_forced,
    door_held,
    door_schedule,
    fluctuation,
    offline,
    rate_of_change,
    smoke,
    stuck,
    threshold,
    water_leak,
)
from alerting.evaluators.base import EVALUATORS, Evaluator, register_evaluator
from alerting.lifecycle import Alert
from alerting.rules import RuleSet
from gateway.logs import redact
from gateway.reading import Reading
from gateway.site import Site
from gateway.store.base import ReadingFilter, Store, StoreError

__all__ = [
    "EVALUATORS",
    "PRIME_BUDGET_S",
    "Evaluator",
    "build_evaluators",
    "prime_evaluators",
    "register_evaluator",
]

log = logging.getLogger(__name__)
PAGE = 10_000
MAX_PAGES = 50
"""At most this many pages of one sensor's history (500,000 readings, a day at 0.2 s):
beyond it the history is left incomplete and the evaluators start cold."""
PRIME_BUDGET_S = 60.0
"""At most this long for all of priming: the gateway polls no device (and so detects no
smoke) until it is over, so with many sensors and a slow store the rules not primed by then
start cold instead (alerting.evaluators.base, "Restarts")."""


def build_evaluators(rules: RuleSet, site: Site) -> list[Evaluator]:
    """One evaluator per rule, in file order."""
    return [EVALUATORS[rule.kind](rule, site) for rule in rules.rules]


async def prime_evaluators(
    evaluators: Sequence[Evaluator],
    store: Store | None,
    *,
    now_ns: int,
    active: Sequence[Alert],
    budget_s: float = PRIME_BUDGET_S,
) -> list[Evaluator]:
    """Replay each sensor's stored history into the evaluators that keep one, before the
    first live reading; returns the evaluators left cold (alerting.evaluators.base).

    ``active``: the open alerts whose condition held when the gateway stopped. Drill
    readings are fetched only for the drills among them, each drill on its own, so a drill
    never feeds a real alert's state. A store that fails or is missing leaves cold every
    evaluator whose sensors were not all primed; that is logged once, with the reason.
    Priming stops after ``budget_s`` (wall time: the store is real I/O) and the evaluators
    not fully primed by then start cold.
    """
    histories = [evaluator.history_ns() for evaluator in evaluators]
    wanted: dict[str, int] = {}  # sensor -> the longest history any evaluator asks for
    for history in histories:
        for sensor, ns in history.items():
            wanted[sensor] = max(wanted.get(sensor, 0), ns)
    drills = sorted({a.drill_id for a in active if a.drill_id})
    primed: set[str] = set()  # sensors whose whole history (every drill) was replayed
    problem = "" if store is not None else "no store configured"
    try:
        async with asyncio.timeout(budget_s):
            for sensor, ns in sorted(wanted.items()):
                if store is None:
                    break
                whole = True
                for drill in (None, *drills):
                    flt = ReadingFilter(sensor=sensor, drill_id=drill)
                    readings, fetched = await _history(store, flt, now_ns - ns, now_ns + 1)
                    if not fetched:
                        whole = False
                        problem = f"sensor {sensor} has more than {PAGE * MAX_PAGES} readings"
                    for evaluator, history in zip(evaluators, histories, strict=True):
                        if sensor in history:
                            since = now_ns - history[sensor]
                            evaluator.prime(r for r in readings if r.ts_ns >= since)
                if whole:
                    primed.add(sensor)
    except TimeoutError:
        problem = (
            f"it took longer than {budget_s:g} s; {len(primed)} of {len(wanted)} sensors "
            "were primed, the rules of the others start cold"
        )
    except StoreError as exc:
        problem = redact(str(exc))
    except Exception as exc:  # priming must never keep alerting from starting
        problem = f"{type(exc).__name__}: {redact(str(exc))}"
    if problem and wanted:
        log.warning(
            "could not rebuild the rules' history from the store (%s); until they have seen "
            "enough live data, open alerts are kept rather than resolved",
            problem,
        )
    cold: list[Evaluator] = []
    behind = 0
    for evaluator, history in zip(evaluators, histories, strict=True):
        complete = all(sensor in primed for sensor in history)
        if not evaluator.resume(now_ns=now_ns, complete=complete, active=active):
            cold.append(evaluator)
            behind += complete
    if behind:
        log.info(
            "the store lacks the newest readings behind the open alerts of %d rule(s) (still in "
            "the spool?): those rules judge from live data until they have seen enough",
            behind,
        )
    return cold


async def _history(
    store: Store, flt: ReadingFilter, start_ns: int, end_ns: int
) -> tuple[list[Reading], bool]:
    """``flt``'s readings in [start, end) page by page; False when capped at MAX_PAGES."""
    out: list[Reading] = []
    for _ in range(MAX_PAGES):
        page = await store.raw(flt, start_ns, end_ns, limit=PAGE)
        out.extend(page)
        if len(page) < PAGE:
            return out, True
        start_ns = page[-1].ts_ns + 1
    return out, False
