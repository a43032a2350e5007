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

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerting.acklink import AckLinks, AckSigner
from api.deps import AppContext
from api.routes import (
    ack,
    alerts,
    apikeys,
    audit,
    console,
    health,
    login,
    rooms,
    silences,
    users,
)
from api.routes import site as site_routes
from api.security import Tokens
from gateway.clock import Clock, SystemClock
from gateway.datadir import DataDir
from gateway.settings import Settings
from gateway.site import Site, load_site
from gateway.statedb import StateDB
from gateway.store.base import Store
from gateway.store.factory import make_store

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


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 saying where and why, without echoing the input: a password, a note of
    twenty thousand characters or a key sent in the wrong field stays out of the answer."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


async def http_error(request: Request, exc: Exception) -> Response:
    """An unknown console address gets the console's own page, the API its JSON."""
    assert isinstance(exc, StarletteHTTPException)
    if request.url.path.startswith("/console") and exc.status_code in (404, 405):
        reason = "没有这个页面。" if exc.status_code == 404 else "此页面不接受这种请求。"
        return console.error_page(request, exc.status_code, "未找到", reason)
    return await http_exception_handler(request, exc)


def create_app(
    settings: Settings,
    *,
    db: StateDB | None = None,
    clock: Clock | None = None,
    site: Site | None = None,
    store: Store | None = None,
) -> FastAPI:
    """The application; ``db`` defaults to the data directory's state database, which is
    migrated at start-up (safe while the gateway runs), ``site`` to the settings' site file
    (None: no site routes) and ``store`` to the configured store (closed at shutdown)."""
    clock = clock or SystemClock()
    own_db = db is None
    data_dir = DataDir(settings.data_dir).ensure()
    if db is None:
        db = StateDB(data_dir.state_db_url(settings.state_db_url))
    if site is None and settings.site_file is not None:
        site = load_site(settings.site_file)
    own_store = store is None
    if store is None:
        store = make_store(settings, data_dir)
    signer = AckSigner(settings.signing_key, clock, ttl_s=settings.ack_link_hours * 3600)
    context = AppContext(
        settings=settings,
        db=db,
        store=store,
        site=site,
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
            if own_store:
                await context.store.close()
            if own_db:
                context.db.close()

    app = FastAPI(title="archwatch", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.state.ctx = context
    app.include_router(ack.router)
    app.include_router(health.router)
    app.include_router(login.router)
    app.include_router(users.router)
    app.include_router(apikeys.router)
    app.include_router(site_routes.router)
    app.include_router(rooms.router)
    app.include_router(alerts.router)
    app.include_router(silences.router)
    app.include_router(audit.router)
    app.include_router(console.router)
    return app
