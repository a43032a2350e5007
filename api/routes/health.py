"""``/healthz`` (alive), ``/readyz`` (dependencies reachable) and ``/metrics`` (Prometheus).

``/healthz`` and ``/readyz`` need no credentials: load balancers and orchestrators probe
them, and they reveal only which dependency is down. ``/metrics`` needs the role admin or
inspector (a user or an API key; Prometheus scrapes with an inspector key): alert counts
are operational information.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text

from alerting.model import AlertState
from alerting.state_models import AlertRow
from api.deps import AppContext, Context, Principal, require_roles
from api.models import Role
from gateway.metrics import Metrics
from gateway.statedb import StateDB

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 3.0
BROKER_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883, "ws": 80, "wss": 443}
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers. No credentials."""
    return {"status": "ok"}


def _ping_db(db: StateDB) -> None:
    with db.session() as session:
        session.execute(text("SELECT 1"))


async def _check_state_db(ctx: AppContext) -> None:
    await asyncio.to_thread(_ping_db, ctx.db)


async def _check_store(ctx: AppContext) -> None:
    await ctx.store.ping()


async def _check_broker(url: str) -> None:
    parts = urlsplit(url)
    port = parts.port or BROKER_PORTS.get(parts.scheme, 1883)
    _reader, writer = await asyncio.open_connection(parts.hostname, port)
    writer.close()
    await writer.wait_closed()


async def _outcome(name: str, check: asyncio.Future[None] | asyncio.Task[None]) -> str:
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_S)
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        log.debug("readiness check %s failed: %s", name, type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"
    return "ok"


@router.get("/readyz")
async def readyz(ctx: Context) -> JSONResponse:
    """200 when the state database, the store and (if configured) the broker answer, else
    503 naming what failed. No credentials."""
    checks = {
        "state_db": asyncio.ensure_future(_check_state_db(ctx)),
        "store": asyncio.ensure_future(_check_store(ctx)),
    }
    if ctx.settings.broker_url:
        checks["broker"] = asyncio.ensure_future(_check_broker(ctx.settings.broker_url))
    names = list(checks)
    outcomes = await asyncio.gather(*(_outcome(n, checks[n]) for n in names))
    results = dict(zip(names, outcomes, strict=True))
    failed = sorted(n for n, r in results.items() if r != "ok")
    body = {"status": "ok" if not failed else "unavailable", "checks": results, "failed": failed}
    return JSONResponse(body, status_code=200 if not failed else 503)


def _alert_counts(db: StateDB) -> dict[str, int]:
    with db.session() as session:
        rows = session.execute(select(AlertRow.state, func.count()).group_by(AlertRow.state))
        return {str(state): int(n) for state, n in rows}


MetricsReader = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.INSPECTOR))]


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(ctx: Context, _principal: MetricsReader) -> PlainTextResponse:
    """Prometheus text: the API process's counters and alerts by state from the state
    database. Roles: admin, inspector."""
    counts = await asyncio.to_thread(_alert_counts, ctx.db)
    gauges = Metrics()
    gauges.describe("alerts", "gauge", "Alerts in the state database by state.")
    for state in AlertState:
        gauges.set("alerts", float(counts.get(state.value, 0)), state=state.value)
    body = ctx.metrics.render_prometheus().lstrip("\n") + gauges.render_prometheus()
    return PlainTextResponse(body, media_type=PROMETHEUS_TYPE)
