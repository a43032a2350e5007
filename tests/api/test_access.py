"""Who may call what: the role x route matrix, and keeper scoping."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.models import ApiKeyRow, Role
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD, add_user, api_key, bearer

_seq = itertools.count(1)


@dataclass(frozen=True)
class Call:
    """One route: how to call it (given a target user id and key id), who may, and the
    status a permitted caller gets."""

    name: str
    method: str
    path: str
    allowed: frozenset[str]  # roles; admin is always allowed
    ok: int
    body: Callable[[], object] | None = None
    users_only: bool = False  # API keys are refused even with an allowed role


ANY = frozenset(r.value for r in Role)

CALLS = [
    Call("me", "GET", "/api/v1/users/me", ANY, 200),
    Call(
        "edit me",
        "PATCH",
        "/api/v1/users/me",
        ANY,
        200,
        lambda: {"display_name": "新名字"},
        users_only=True,
    ),
    Call("list users", "GET", "/api/v1/users", frozenset({"admin"}), 200),
    Call(
        "create user",
        "POST",
        "/api/v1/users",
        frozenset({"admin"}),
        201,
        lambda: {"username": f"new{next(_seq)}", "password": PASSWORD, "roles": ["keeper"]},
    ),
    Call(
        "edit user",
        "PATCH",
        "/api/v1/users/{user}",
        frozenset({"admin"}),
        200,
        lambda: {"display_name": "x"},
    ),
    Call("list keys", "GET", "/api/v1/apikeys", frozenset({"admin"}), 200),
    Call(
        "create key",
        "POST",
        "/api/v1/apikeys",
        frozenset({"admin"}),
        201,
        lambda: {"name": f"grafana {next(_seq)}", "roles": ["inspector"]},
    ),
    Call("revoke key", "DELETE", "/api/v1/apikeys/{key}", frozenset({"admin"}), 204),
    Call("metrics", "GET", "/metrics", frozenset({"inspector"}), 200),
]
PRINCIPALS = [
    "anonymous",
    *(r.value for r in Role),
    "key:inspector",
    "key:drill_coordinator",
    "key:admin",
]


def headers_for(app: FastAPI, db: StateDB, who: str) -> dict[str, str]:
    if who == "anonymous":
        return {}
    if who.startswith("key:"):
        return api_key(db, Role(who.removeprefix("key:")))[1]
    return bearer(app, add_user(db, Role(who)))


@pytest.mark.parametrize("who", PRINCIPALS)
def test_role_route_matrix(app: FastAPI, client: TestClient, state: StateDB, who: str) -> None:
    headers = headers_for(app, state, who)
    target_user = add_user(state, Role.KEEPER)
    target_key, _ = api_key(state, Role.INSPECTOR)
    for call in CALLS:
        path = call.path.format(user=target_user.id, key=target_key.id)
        body = call.body() if call.body else None
        response = client.request(call.method, path, headers=headers, json=body)
        role = who.removeprefix("key:")
        if who == "anonymous":
            expected = 401
        elif call.users_only and who.startswith("key:"):
            expected = 403
        elif role in call.allowed or role == "admin":
            expected = call.ok
        else:
            expected = 403
        assert response.status_code == expected, (who, call.name, response.text)
        if expected == 401:
            assert response.headers["www-authenticate"] == "Bearer"
        if expected == 403:
            assert response.json()["detail"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_need_no_credentials(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    ("roles", "buildings", "seen"),
    [
        ((Role.KEEPER,), ("b1",), ["b1"]),
        ((Role.KEEPER,), ("b1", "b2"), ["b1", "b2"]),
        # Any role beyond keeper sees every building.
        ((Role.KEEPER, Role.SECURITY), ("b1",), None),
        ((Role.INSPECTOR,), (), None),
    ],
)
def test_keepers_see_only_their_buildings(
    app: FastAPI,
    client: TestClient,
    state: StateDB,
    roles: tuple[Role, ...],
    buildings: tuple[str, ...],
    seen: list[str] | None,
) -> None:
    user = add_user(state, *roles, buildings=buildings)
    me = client.get("/api/v1/users/me", headers=bearer(app, user)).json()
    assert me["kind"] == "user"
    assert me["name"] == user.username
    assert me["buildings"] == seen


def test_garbage_credentials_are_401_not_anonymous(client: TestClient) -> None:
    for headers in (
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "aw_0123456789ab_guess"},
        {"X-API-Key": "x" * 5000},
    ):
        response = client.get("/api/v1/users/me", headers=headers)
        assert response.status_code == 401, headers


def test_a_stored_keeper_key_sees_no_building(
    app: FastAPI, client: TestClient, state: StateDB
) -> None:
    """Keys are refused the role keeper; one stored before that rule gets no keeper rights
    (it would otherwise see every building, keys not being scoped)."""
    key, headers = api_key(state, Role.INSPECTOR)
    with state.session(write=True) as session:
        session.execute(update(ApiKeyRow).where(ApiKeyRow.id == key.id).values(roles=["keeper"]))
    answer = client.get("/api/v1/site", headers=headers)
    assert answer.status_code == 403
