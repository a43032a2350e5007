"""The API on a real SQLite state database in tmp_path, with a ManualClock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import accounts
from api.deps import AppContext
from api.main import create_app
from api.models import Role
from gateway.clock import ManualClock
from gateway.settings import Settings
from gateway.statedb import StateDB

PASSWORD = "correct horse battery"
_names = itertools.count(1)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def app(settings: Settings, state: StateDB, clock: ManualClock) -> FastAPI:
    return create_app(settings, db=state, clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def context(app: FastAPI) -> AppContext:
    ctx = app.state.ctx
    assert isinstance(ctx, AppContext)
    return ctx


def add_user(
    db: StateDB, *roles: Role, username: str | None = None, buildings: tuple[str, ...] = ()
) -> accounts.User:
    return accounts.create_user(
        db,
        username=username or f"u{next(_names)}",
        password=PASSWORD,
        roles=roles,
        buildings=buildings,
        now=datetime.now(UTC),
    )


def bearer(app: FastAPI, user: accounts.User) -> dict[str, str]:
    """Headers of a user who logged in (a token issued as the login route does)."""
    return {"Authorization": f"Bearer {context(app).tokens.issue(user.id).token}"}


def api_key(db: StateDB, *roles: Role) -> tuple[accounts.ApiKey, dict[str, str]]:
    key, secret = accounts.create_api_key(
        db, name=f"k{next(_names)}", roles=roles, created_by="test", now=datetime.now(UTC)
    )
    return key, {"X-API-Key": secret}
