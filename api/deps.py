"""Dependencies shared by the routers (FastAPI's ``Annotated`` style)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from alerting.acklink import AckLinks
from gateway.clock import Clock
from gateway.settings import Settings
from gateway.statedb import StateDB


@dataclass(frozen=True, slots=True)
class AppContext:
    """What the routes share: settings, the state database, links, templates, the clock."""

    settings: Settings
    db: StateDB
    links: AckLinks
    templates: Jinja2Templates
    clock: Clock


def app_context(request: Request) -> AppContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


Context = Annotated[AppContext, Depends(app_context)]
