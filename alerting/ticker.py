"""The periodic loop shared by the alert engine and the escalation manager."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable


async def tick_forever(
    tick: Callable[[], Awaitable[object]], interval_s: float, what: str, log: logging.Logger
) -> None:
    """Call ``tick`` every ``interval_s`` seconds until cancelled.

    A failing tick must not stop alerting (a state-database outage is waited out): the
    failure is logged once with its traceback, and recovery once at INFO.
    """
    failing = False
    while True:
        try:
            await tick()
            if failing:
                log.info("%s ticks again", what)
            failing = False
        except Exception:
            if not failing:
                log.exception("%s tick failed; retrying every %.1f s", what, interval_s)
            failing = True
        await asyncio.sleep(interval_s)
