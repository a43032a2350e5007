"""The FastAPI application: :func:`create_app` builds it from the settings.

The API process shares the state database with the gateway (SQLite in WAL mode, or
PostgreSQL); it never talks to the gateway directly. It serves the acknowledgement page
(``api.routes.ack``), login, users and API keys, health, readiness and metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

from alerting.acklink import AckLinks, AckSigner
from api.deps import AppContext
from api.routes import ack, apikeys, health, login, users
from api.security import Tokens
from gateway.clock import Clock, SystemClock
from gateway.datadir import DataDir
from gateway.settings import Settings
from gateway.statedb import StateDB

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def templates() -> Jinja2Templates:
    """The console's Jinja2 templates (HTML autoescaped)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        auto_reload=False,
    )
    return Jinja2Templates(env=env)


def describe_metrics(context: AppContext) -> None:
    """HELP and TYPE of the API process's own counters."""
    context.metrics.describe("api_logins", "counter", "Password logins by result.")


def create_app(
    settings: Settings, *, db: StateDB | None = None, clock: Clock | None = None
) -> FastAPI:
    """The application; ``db`` defaults to the data directory's state database, which is
    migrated at start-up (safe while the gateway runs)."""
    clock = clock or SystemClock()
    own_db = db is None
    if db is None:
        db = StateDB(DataDir(settings.data_dir).ensure().state_db_url(settings.state_db_url))
    signer = AckSigner(settings.signing_key, clock, ttl_s=settings.ack_link_hours * 3600)
    context = AppContext(
        settings=settings,
        db=db,
        links=AckLinks(db, signer, public_url=settings.public_url),
        templates=templates(),
        clock=clock,
        tokens=Tokens(settings.signing_key, clock),
    )
    describe_metrics(context)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if own_db:
            await asyncio.to_thread(context.db.migrate)
        try:
            yield
        finally:
            if own_db:
                context.db.close()

    app = FastAPI(title="archwatch", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.ctx = context
    app.include_router(ack.router)
    app.include_router(health.router)
    app.include_router(login.router)
    app.include_router(users.router)
    app.include_router(apikeys.router)
    return app
