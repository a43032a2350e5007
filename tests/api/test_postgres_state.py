"""The API on a real PostgreSQL state database, as deployed: ``state_db_url`` in the settings,
two API instances (two processes behind a balancer) sharing it, the gateway's alert engine
on the same database. Users, logins and API keys; the audit chain the routes write; the
acknowledgement queue from the page to the engine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from alerting.model import AlertState
from api import accounts
from api.accounts import MAX_FAILURES_PER_USERNAME
from api.main import create_app
from api.models import Role
from gateway import audit
from gateway.clock import ManualClock
from gateway.settings import Settings
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD
from tests.test_ack_web import confirm, requests_queued
from tests.test_acklink import KEY, PUBLIC, make_world

pytestmark = pytest.mark.realserver

LOGIN = "/api/v1/login/access-token"


@pytest.fixture
def state(postgres_url: str) -> Iterator[StateDB]:
    """The test's own view of the database (the apps open theirs from the settings)."""
    db = StateDB(postgres_url)
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def settings(tmp_path: Path, postgres_url: str) -> Settings:
    # The gateway and the API share the data directory's signing key.
    (tmp_path / "signing.key").write_text(KEY.hex() + "\n", encoding="ascii")
    return Settings(data_dir=tmp_path, state_db_url=postgres_url, public_url=PUBLIC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def two_apis(settings: Settings, clock: ManualClock) -> Iterator[tuple[TestClient, TestClient]]:
    """Two API instances, each with its own connection pool to the same PostgreSQL."""
    with (
        TestClient(create_app(settings, clock=clock)) as one,
        TestClient(create_app(settings, clock=clock)) as two,
    ):
        yield one, two


def login(client: TestClient, username: str, password: str) -> tuple[int, dict[str, str]]:
    response = client.post(LOGIN, data={"username": username, "password": password})
    if response.status_code != 200:
        return response.status_code, {}
    return 200, {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_the_apps_use_postgresql_from_the_settings(
    two_apis: tuple[TestClient, TestClient], state: StateDB
) -> None:
    one, _ = two_apis
    ctx = one.app.state.ctx  # type: ignore[attr-defined]
    assert ctx.db.dialect == "postgresql"
    assert one.get("/readyz").json()["checks"]["state_db"] == "ok"
    assert not (Path(ctx.settings.data_dir) / "state.sqlite").exists()


def test_users_logins_and_keys_hold_across_two_api_instances(
    two_apis: tuple[TestClient, TestClient], state: StateDB
) -> None:
    one, two = two_apis
    # The first admin comes from the command line (archwatch user add), straight into PG.
    accounts.create_user(
        state, username="root", password=PASSWORD, roles=[Role.ADMIN], now=datetime.now(UTC)
    )
    status, admin = login(one, "root", PASSWORD)
    assert status == 200

    body = {"username": "li.si", "password": PASSWORD, "roles": ["security"]}
    created = one.post("/api/v1/users", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert two.post("/api/v1/users", json=body, headers=admin).status_code == 409
    status, security = login(two, "li.si", PASSWORD)
    assert status == 200
    me = one.get("/api/v1/users/me", headers=security).json()
    assert (me["name"], me["roles"]) == ("li.si", ["security"])

    # The failed-login limit is kept in the database: counted on one, enforced on the other.
    for _ in range(MAX_FAILURES_PER_USERNAME):
        assert login(one, "li.si", "not the password")[0] == 401
    assert login(two, "li.si", PASSWORD)[0] == 429

    # Disabled on one instance: the token issued by the other stops working.
    user_id = created.json()["id"]
    disabled = two.patch(f"/api/v1/users/{user_id}", json={"disabled": True}, headers=admin)
    assert disabled.status_code == 200
    assert one.get("/api/v1/users/me", headers=security).status_code == 401

    key = one.post(
        "/api/v1/apikeys", json={"name": "grafana", "roles": ["inspector"]}, headers=admin
    )
    assert key.status_code == 201
    secret = {"X-API-Key": key.json()["key"]}
    assert two.get("/metrics", headers=secret).status_code == 200
    assert two.get("/api/v1/users", headers=secret).status_code == 403  # inspector, not admin
    assert two.delete(f"/api/v1/apikeys/{key.json()['id']}", headers=admin).status_code == 204
    assert one.get("/metrics", headers=secret).status_code == 401

    # Every write above is in the chain, with who did it, and the chain is intact.
    actions = [(e.actor, e.action, e.target) for e in audit.entries(state, newest_first=False)]
    assert actions == [
        ("user:root", "login", ""),
        ("user:root", "user.create", "user:li.si"),
        ("user:li.si", "login", ""),
        ("user:root", "user.update", "user:li.si"),
        ("user:root", "apikey.create", f"apikey:{key.json()['id']}"),
        ("user:root", "apikey.revoke", f"apikey:{key.json()['id']}"),
    ]
    assert audit.verify(state).ok
    verified = two.get("/api/v1/audit/verify", headers=admin).json()
    assert verified["ok"] is True and verified["entries"] == len(actions)
    # Entries carry wall-clock times; the apps run on a ManualClock: name the range.
    wall = datetime.now(UTC)
    span = {
        "start": (wall - timedelta(days=1)).isoformat(),
        "end": (wall + timedelta(days=1)).isoformat(),
    }
    page = one.get("/api/v1/audit", params={"limit": 2, **span}, headers=admin).json()
    assert page["total"] == len(actions)
    assert [e["action"] for e in page["items"]] == ["apikey.revoke", "apikey.create"]


def test_postgresql_refuses_to_rewrite_the_audit_log(
    two_apis: tuple[TestClient, TestClient], state: StateDB
) -> None:
    one, _ = two_apis
    accounts.create_user(
        state, username="root", password=PASSWORD, roles=[Role.ADMIN], now=datetime.now(UTC)
    )
    assert login(one, "root", PASSWORD)[0] == 200
    for statement in (
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(DBAPIError), state.engine.begin() as conn:
            conn.execute(text(statement))
    [entry] = audit.entries(state)
    assert (entry.actor, entry.action) == ("user:root", "login")
    assert audit.verify(state).ok


async def test_acknowledgements_queue_in_postgresql_for_the_gateway(
    two_apis: tuple[TestClient, TestClient], state: StateDB, clock: ManualClock
) -> None:
    one, two = two_apis
    # The gateway's side: its alert engine and the queue consumer, on the same database.
    world = make_world(state, clock)
    by_link = await world.fire("a101")
    by_code = await world.fire("a102")

    token = world.links.signer.sign(by_link, "keeper")
    status, html = confirm(one, token, note="已到现场")
    assert status == 200 and "已提交确认" in html
    code = world.links.issue_code(by_code, "guard")
    done = two.post("/ack/code", data={"contact": "guard", "code": code, "note": "收到"})
    assert done.status_code == 200
    # The link is used up in the database: the other instance refuses it too.
    assert two.get(f"/ack/{token}").status_code == 409
    assert requests_queued(state) == 2

    outcomes = await world.queue.run_once()
    assert [(o.request.alert_id, o.request.user, o.status) for o in outcomes] == [
        (by_link, "keeper", "done"),
        (by_code, "guard", "done"),
    ]
    assert await world.state(by_link) == AlertState.ACKNOWLEDGED
    assert await world.state(by_code) == AlertState.ACKNOWLEDGED
    assert await world.queue.run_once() == []  # applied once

    acked = {e.target: e for e in audit.entries(state, action="alert.acknowledged")}
    assert acked[by_link].actor == "keeper" and acked[by_link].detail["note"] == "已到现场"
    assert acked[by_code].actor == "guard"
    used = audit.entries(state, action="ack_link.used")
    assert {(e.actor, e.target) for e in used} == {("keeper", by_link), ("guard", by_code)}
    assert audit.verify(state).ok
