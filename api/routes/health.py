"""``/healthz`` (alive), ``/readyz`` (dependencies reachable) and ``/metrics`` (Prometheus).

``/healthz`` and ``/readyz`` need no credentials: load balancers and orchestrators probe
them, and they reveal only which dependency is down. ``/metrics`` needs the role admin or
inspector (a user or an API key; Prometheus scrapes with an inspector key): alert counts
are operational information.

``/metrics`` merges three sources, each family named once: the gateways' heartbeats (their
in-memory counters as of their last snapshot, labelled ``gateway``, with
``archwatch_gateway_heartbeat_age_seconds`` so a stopped gateway is visible), the API
process's own counters, and gauges read from the state database (alerts by state,
notifications in the outbox by status).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text

from alerting.model import AlertState
from alerting.outbox import OutboxRow
from alerting.state_models import AlertRow
from api.deps import AppContext, Context, Principal, require_roles
from api.models import Role
from gateway import heartbeat
from gateway.heartbeat import Family, Heartbeat
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


async def _gateway_ages(ctx: AppContext) -> dict[str, float] | None:
    """Seconds since each gateway's heartbeat; None when they cannot be read."""
    try:
        beats = await asyncio.wait_for(
            asyncio.to_thread(heartbeat.read_all, ctx.db), CHECK_TIMEOUT_S
        )
    except Exception as exc:
        log.debug("gateway heartbeats unreadable: %s", type(exc).__name__)
        return None
    now_ns = ctx.clock.now_ns()
    return {b.name: round(b.age_s(now_ns), 1) for b in beats}


@router.get("/readyz")
async def readyz(ctx: Context) -> JSONResponse:
    """200 when the state database, the store and (if configured) the broker answer, else
    503 naming what failed. No credentials.

    ``gateway_heartbeat_age_s`` (gateway name: seconds since its last heartbeat) is for
    information only: the API is ready whether or not a gateway runs."""
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
    body = {
        "status": "ok" if not failed else "unavailable",
        "checks": results,
        "failed": failed,
        "gateway_heartbeat_age_s": await _gateway_ages(ctx),
    }
    return JSONResponse(body, status_code=200 if not failed else 503)


OUTBOX_STATUSES = ("pending", "delivered", "failed", "merged")


@dataclass(frozen=True, slots=True)
class _StateGauges:
    alerts: dict[str, int]
    outbox: dict[str, int]
    retrying: int
    heartbeats: list[Heartbeat]


def _state_gauges(db: StateDB) -> _StateGauges:
    with db.session() as session:
        alerts = session.execute(select(AlertRow.state, func.count()).group_by(AlertRow.state))
        outbox = session.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status))
        retrying = session.execute(
            select(func.count())
            .select_from(OutboxRow)
            .where(OutboxRow.status == "pending", OutboxRow.attempts_total > 0)
        ).scalar_one()
        return _StateGauges(
            alerts={str(state): int(n) for state, n in alerts},
            outbox={str(status): int(n) for status, n in outbox},
            retrying=int(retrying),
            heartbeats=heartbeat.read_all(db),
        )


def _gauge(name: str, help_text: str, samples: dict[heartbeat.Labels, float]) -> Family:
    return Family(f"archwatch_{name}", "gauge", help_text, samples)


def _state_families(gauges: _StateGauges, now_ns: int) -> list[Family]:
    return [
        _gauge(
            "alerts",
            "Alerts in the state database by state.",
            {(("state", s.value),): float(gauges.alerts.get(s.value, 0)) for s in AlertState},
        ),
        _gauge(
            "notifications_outbox",
            "Notifications in the outbox by status (failed: every channel of the contact "
            "was exhausted; the message was lost).",
            {(("status", s),): float(gauges.outbox.get(s, 0)) for s in OUTBOX_STATUSES},
        ),
        _gauge(
            "notifications_retrying",
            "Pending notifications whose delivery has failed at least once.",
            {(): float(gauges.retrying)},
        ),
        _gauge(
            "gateway_heartbeat_age_seconds",
            "Seconds since the gateway last wrote its metrics; its counters are that old.",
            {(("gateway", b.name),): b.age_s(now_ns) for b in gauges.heartbeats},
        ),
    ]


def _gateway_families(beat: Heartbeat) -> list[Family]:
    try:
        return heartbeat.parse(beat.metrics)
    except heartbeat.FormatError as exc:
        # A newer or broken writer must not take /metrics down; its age still shows.
        log.warning("heartbeat of gateway %s unreadable: %s", beat.name, exc)
        return []


MetricsReader = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.INSPECTOR))]


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(ctx: Context, _principal: MetricsReader) -> PlainTextResponse:
    """Prometheus text: the gateways' last heartbeats (ingest, rejects by reason, spool depth,
    devices offline, notification failures; labelled ``gateway``) with their age, the API
    process's counters, and alerts by state and the outbox from the state database.
    Roles: admin, inspector."""
    gauges = await asyncio.to_thread(_state_gauges, ctx.db)
    sources: list[tuple[list[Family], heartbeat.Labels]] = [
        (heartbeat.families_of(ctx.metrics), ()),
        (_state_families(gauges, ctx.clock.now_ns()), ()),
    ]
    sources.extend(
        (_gateway_families(beat), (("gateway", beat.name),)) for beat in gauges.heartbeats
    )
    body = heartbeat.render(heartbeat.merge(sources))
    return PlainTextResponse(body, media_type=PROMETHEUS_TYPE)
