"""schemathesis against the API's own OpenAPI document: no input gives a 5xx.

Every operation is called with generated valid and invalid inputs, authenticated as an
admin (a JWT) so the requests reach the routes' own logic rather than stopping at 401. The
app runs on a real SQLite state database, the demo site and an embedded store, so listings
and lookups have something to find. The app is built at import: schemathesis collects one
test per operation from the schema before fixtures exist.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api import accounts
from api.main import create_app
from api.models import Role
from gateway.clock import ManualClock
from gateway.resources import demo_site_path
from gateway.settings import Settings
from gateway.site import load_site
from gateway.statedb import StateDB
from gateway.store.embedded import EmbeddedStore

ROOT = Path(tempfile.mkdtemp(prefix="archwatch-schemathesis-"))
DB = StateDB(f"sqlite:///{ROOT / 'state.sqlite'}")


def _app() -> tuple[FastAPI, dict[str, str]]:
    DB.migrate()
    app = create_app(
        Settings(data_dir=ROOT / "data"),
        db=DB,
        clock=ManualClock(),
        site=load_site(demo_site_path()),
        store=EmbeddedStore(ROOT / "store.sqlite"),
    )
    admin = accounts.create_user(
        DB,
        username="admin",
        password="correct horse battery",
        roles=(Role.ADMIN,),
        now=datetime.now(UTC),
    )
    return app, {"Authorization": f"Bearer {app.state.ctx.tokens.issue(admin.id).token}"}


APP, HEADERS = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    DB.close()
    shutil.rmtree(ROOT, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_no_request_gives_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])
