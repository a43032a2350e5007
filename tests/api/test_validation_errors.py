"""422 answers say where and why, and never echo what was sent."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.models import Role
from gateway.statedb import StateDB
from tests.api.conftest import add_user, bearer

SECRET = "hunter2-hunter2-hunter2"


def test_a_refused_body_is_located_but_not_echoed(
    app: FastAPI, client: TestClient, state: StateDB
) -> None:
    admin = add_user(state, Role.ADMIN)
    body = {"username": "li.si", "password": SECRET, "roles": ["janitor"], "extra": SECRET}
    answer = client.post("/api/v1/users", json=body, headers=bearer(app, admin))
    assert answer.status_code == 422
    assert SECRET not in answer.text
    where = {tuple(e["loc"]) for e in answer.json()["detail"]}
    assert ("body", "roles", 0) in where and ("body", "extra") in where
    assert all(e["msg"] for e in answer.json()["detail"])
