"""User and API-key management over HTTP: creation, no mass assignment, keys, audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.main import create_app
from api.models import Role
from gateway import audit
from gateway.clock import ManualClock
from gateway.resources import demo_site_path
from gateway.settings import Settings
from gateway.site import load_site
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD, add_user, bearer

LOGIN = "/api/v1/login/access-token"


@pytest.fixture
def admin(app: FastAPI, state: StateDB) -> dict[str, str]:
    return bearer(app, add_user(state, Role.ADMIN, username="admin1"))


def test_an_admin_creates_a_user_who_can_log_in(
    client: TestClient, state: StateDB, admin: dict[str, str]
) -> None:
    body = {
        "username": "wang.wu",
        "password": PASSWORD,
        "roles": ["keeper", "drill_coordinator"],
        "display_name": "王五",
        "buildings": ["b2", "b1"],
    }
    response = client.post("/api/v1/users", json=body, headers=admin)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["roles"] == ["drill_coordinator", "keeper"]
    assert created["buildings"] == ["b1", "b2"]
    assert "password" not in created and "password_hash" not in created
    entry = audit.head(state)
    assert entry is not None
    assert (entry.actor, entry.action, entry.target) == (
        "user:admin1",
        "user.create",
        "user:wang.wu",
    )
    login = client.post(LOGIN, data={"username": "wang.wu", "password": PASSWORD})
    assert login.status_code == 200
    again = client.post("/api/v1/users", json=body, headers=admin)
    assert again.status_code == 409
    listed = client.get("/api/v1/users", params={"limit": 1, "offset": 1}, headers=admin).json()
    assert listed["total"] == 2
    assert [u["username"] for u in listed["items"]] == ["wang.wu"]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # A user editing themselves may set the display name only.
        ("/api/v1/users/me", {"display_name": "x", "roles": ["admin"]}, "roles"),
        ("/api/v1/users/me", {"display_name": "x", "buildings": ["b9"]}, "buildings"),
        ("/api/v1/users/me", {"display_name": "x", "disabled": False}, "disabled"),
    ],
)
def test_mass_assignment_is_refused_with_the_field_named(
    app: FastAPI, client: TestClient, state: StateDB, path: str, body: dict[str, Any], field: str
) -> None:
    keeper = add_user(state, Role.KEEPER, buildings=("b1",))
    response = client.patch(path, json=body, headers=bearer(app, keeper))
    assert response.status_code == 422
    problem = response.json()["detail"][0]
    assert problem["loc"] == ["body", field]
    assert problem["msg"] == "Extra inputs are not permitted"
    me = client.get("/api/v1/users/me", headers=bearer(app, keeper)).json()
    assert me["roles"] == ["keeper"] and me["buildings"] == ["b1"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "a", "password": PASSWORD, "roles": ["keeper"], "id": 1}, "id"),
        (
            {"username": "a", "password": PASSWORD, "roles": ["keeper"], "password_hash": "x"},
            "password_hash",
        ),
        ({"username": "a", "password": "short", "roles": ["keeper"]}, "password"),
        ({"username": "a", "password": PASSWORD, "roles": []}, "roles"),
        ({"username": "a", "password": PASSWORD, "roles": ["root"]}, "roles"),
        ({"username": "a b", "password": PASSWORD, "roles": ["keeper"]}, "username"),
        (
            {"username": "a", "password": PASSWORD, "roles": ["keeper"], "buildings": [""]},
            "buildings",
        ),
    ],
)
def test_bad_user_bodies_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/users", json=body, headers=admin)
    assert response.status_code == 422
    assert field in response.json()["detail"][0]["loc"]


def test_api_keys_are_shown_once_work_and_stop_when_revoked(
    client: TestClient, state: StateDB, admin: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/apikeys", json={"name": "grafana", "roles": ["inspector"]}, headers=admin
    )
    assert response.status_code == 201
    created = response.json()
    key = created["key"]
    assert key.startswith(f"aw_{created['prefix']}_")
    listed = client.get("/api/v1/apikeys", headers=admin).json()
    assert [k["name"] for k in listed] == ["grafana"]
    assert "key" not in listed[0]
    me = client.get("/api/v1/users/me", headers={"X-API-Key": key}).json()
    assert (me["kind"], me["name"], me["roles"]) == ("apikey", "grafana", ["inspector"])
    assert client.get("/metrics", headers={"X-API-Key": key}).status_code == 200
    # A key with one changed character is not accepted.
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert client.get("/api/v1/users/me", headers={"X-API-Key": tampered}).status_code == 401

    assert client.delete(f"/api/v1/apikeys/{created['id']}", headers=admin).status_code == 204
    assert client.get("/api/v1/users/me", headers={"X-API-Key": key}).status_code == 401
    assert client.delete("/api/v1/apikeys/999999", headers=admin).status_code == 404
    actions = [(e.actor, e.action) for e in audit.entries(state)]
    assert ("user:admin1", "apikey.create") in actions
    assert ("user:admin1", "apikey.revoke") in actions
    # Only a hash is stored: the key text appears nowhere in the database.
    with state.engine.connect() as conn:
        dump = "\n".join(conn.connection.dbapi_connection.iterdump())  # type: ignore[union-attr]
    # The secret part whole: it may itself hold "_" (URL-safe base64), so not split("_").
    secret = key.removeprefix(f"aw_{created['prefix']}_")
    assert len(secret) >= 20
    assert key not in dump and secret not in dump


@pytest.mark.parametrize("roles", [["keeper"], ["inspector", "keeper"]])
def test_an_api_key_cannot_be_a_keeper(
    client: TestClient, state: StateDB, admin: dict[str, str], roles: list[str]
) -> None:
    response = client.post(
        "/api/v1/apikeys", json={"name": "grafana", "roles": roles}, headers=admin
    )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "roles"]
    assert error["msg"] == (
        "API keys cannot hold the role keeper: keys are not scoped to buildings; "
        "give a machine inspector (read-only) or security"
    )
    assert client.get("/api/v1/apikeys", headers=admin).json() == []
    assert "apikey.create" not in [e.action for e in audit.entries(state)]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(
        ["/api/v1/users", "/api/v1/apikeys", "/api/v1/users/1", "/api/v1/users/me"]
    ),
    body=st.dictionaries(
        st.sampled_from(
            ["username", "password", "roles", "buildings", "display_name", "name", "x"]
        ),
        json_values,
        max_size=5,
    )
    | json_values,
)
def test_any_json_body_gets_a_4xx_or_success_never_5xx(
    client: TestClient, admin: dict[str, str], path: str, body: object
) -> None:
    method = "POST" if path in ("/api/v1/users", "/api/v1/apikeys") else "PATCH"
    response = client.request(method, path, json=body, headers=admin)
    assert response.status_code < 500, response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/api/v1/users/99999999999999999999999"),
        ("PATCH", "/api/v1/users/0"),
        ("PATCH", "/api/v1/users/abc"),
        ("DELETE", "/api/v1/apikeys/99999999999999999999999"),
        ("DELETE", "/api/v1/apikeys/-1"),
    ],
)
def test_out_of_range_ids_are_422(
    client: TestClient, admin: dict[str, str], method: str, path: str
) -> None:
    response = client.request(method, path, json={"display_name": "x"}, headers=admin)
    assert response.status_code == 422


def test_a_keeper_cannot_be_assigned_a_building_the_site_does_not_have(
    tmp_path: Path, state: StateDB
) -> None:
    site = load_site(demo_site_path())
    app = create_app(Settings(data_dir=tmp_path / "d"), db=state, clock=ManualClock(), site=site)
    headers = bearer(app, add_user(state, Role.ADMIN))
    new = {"username": "k1", "password": "correct horse battery", "roles": ["keeper"]}
    with TestClient(app) as api:
        typo = api.post("/api/v1/users", json={**new, "buildings": ["mian"]}, headers=headers)
        assert typo.status_code == 422 and "no building mian" in typo.text
        made = api.post("/api/v1/users", json={**new, "buildings": ["main"]}, headers=headers)
        assert made.status_code == 201, made.text
        patch = {"buildings": ["main", "annex"]}
        moved = api.patch(f"/api/v1/users/{made.json()['id']}", json=patch, headers=headers)
        assert moved.status_code == 422 and "no building annex" in moved.text
