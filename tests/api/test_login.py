"""The password login: tokens, failures, the rate limit and token expiry (ManualClock)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.accounts import MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_USERNAME
from api.main import create_app
from api.models import Role
from gateway import audit
from gateway.clock import ManualClock
from gateway.settings import Settings
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD, add_user, bearer, context

URL = "/api/v1/login/access-token"


def login(client: TestClient, username: str, password: str) -> tuple[int, dict[str, object]]:
    response = client.post(URL, data={"username": username, "password": password})
    return response.status_code, response.json() | {"_headers": dict(response.headers)}


def test_login_gives_a_short_lived_token_that_works(client: TestClient, state: StateDB) -> None:
    user = add_user(state, Role.SECURITY, username="zhang.san")
    status, body = login(client, "zhang.san", PASSWORD)
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == user.id
    assert me.json()["roles"] == ["security"]
    last = audit.head(state)
    assert last is not None
    assert (last.actor, last.action) == ("user:zhang.san", "login")


@pytest.mark.parametrize(
    ("username", "password"),
    [("zhang.san", "wrong password!!"), ("nobody", PASSWORD), ("ZHANG.SAN", PASSWORD)],
)
def test_wrong_credentials_are_401_without_saying_which(
    client: TestClient, state: StateDB, username: str, password: str
) -> None:
    add_user(state, Role.SECURITY, username="zhang.san")
    status, body = login(client, username, password)
    assert status == 401
    assert body["detail"] == "incorrect username or password"


def test_a_disabled_user_can_neither_log_in_nor_use_an_old_token(
    app: FastAPI, client: TestClient, state: StateDB
) -> None:
    admin = add_user(state, Role.ADMIN)
    user = add_user(state, Role.KEEPER, username="li.si")
    old = bearer(app, user)
    response = client.patch(
        f"/api/v1/users/{user.id}", json={"disabled": True}, headers=bearer(app, admin)
    )
    assert response.status_code == 200
    assert login(client, "li.si", PASSWORD)[0] == 401
    assert client.get("/api/v1/users/me", headers=old).status_code == 401


def test_failed_logins_per_username_are_limited(
    client: TestClient, state: StateDB, clock: ManualClock
) -> None:
    add_user(state, Role.SECURITY, username="zhang.san")
    for _ in range(MAX_FAILURES_PER_USERNAME):
        assert login(client, "zhang.san", "guess guess guess")[0] == 401
        clock.advance(60)
    # Over the limit even the right password is refused: guessing gains nothing.
    status, body = login(client, "zhang.san", PASSWORD)
    assert status == 429
    headers = body["_headers"]
    assert isinstance(headers, dict)
    # The first failure leaves the 15-minute window 10 minutes from now.
    assert headers["retry-after"] == str(10 * 60)
    clock.advance(10 * 60)
    assert login(client, "zhang.san", PASSWORD)[0] == 200


def test_a_successful_login_resets_the_username_count(client: TestClient, state: StateDB) -> None:
    add_user(state, Role.SECURITY, username="zhang.san")
    for _ in range(2):
        for _ in range(MAX_FAILURES_PER_USERNAME - 1):
            assert login(client, "zhang.san", "guess guess guess")[0] == 401
        assert login(client, "zhang.san", PASSWORD)[0] == 200


def test_failed_logins_per_address_are_limited(client: TestClient, state: StateDB) -> None:
    add_user(state, Role.SECURITY, username="zhang.san")
    # Spraying many usernames from one address trips the address limit.
    for n in range(MAX_FAILURES_PER_ADDRESS):
        assert login(client, f"user{n}", "guess guess guess")[0] == 401
    assert login(client, "zhang.san", PASSWORD)[0] == 429


def test_tokens_expire_after_15_minutes(
    client: TestClient, state: StateDB, clock: ManualClock
) -> None:
    add_user(state, Role.SECURITY, username="zhang.san")
    token = login(client, "zhang.san", PASSWORD)[1]["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    clock.advance(15 * 60 - 1)
    assert client.get("/api/v1/users/me", headers=headers).status_code == 200
    clock.advance(1)
    response = client.get("/api/v1/users/me", headers=headers)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_a_token_signed_under_another_data_directory_is_refused(
    client: TestClient, state: StateDB
) -> None:
    from api.security import Tokens

    user = add_user(state, Role.ADMIN)
    forged = Tokens(b"\x01" * 32, ManualClock()).issue(user.id).token
    response = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b'{"username": "a", "password": "b"}', 415),
        ("application/x-www-form-urlencoded", b"username=a", 400),
        ("application/x-www-form-urlencoded", b"username=a&password=b&grant_type=code", 400),
        ("application/x-www-form-urlencoded", b"\xff\xfe", 400),
        ("application/x-www-form-urlencoded", b"a=" + b"x" * 5000, 413),
    ],
)
def test_malformed_login_forms_get_a_clear_4xx(
    client: TestClient, content_type: str, body: bytes, status: int
) -> None:
    response = client.post(URL, content=body, headers={"Content-Type": content_type})
    assert response.status_code == status
    assert response.json()["detail"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=st.dictionaries(
        st.sampled_from(["username", "password", "grant_type", "scope", "other"]),
        st.text(max_size=80),
        max_size=5,
    )
)
def test_any_login_form_gets_a_4xx_or_200_never_5xx(
    client: TestClient, fields: dict[str, str]
) -> None:
    response = client.post(URL, data=fields)
    assert response.status_code in (200, 400, 401, 413, 415, 429)


def test_login_on_postgresql_with_hostile_names(tmp_path: Path, postgres_url: str) -> None:
    db = StateDB(postgres_url)
    db.migrate()
    try:
        add_user(db, Role.SECURITY, username="zhang.san")
        app = create_app(Settings(data_dir=tmp_path / "data"), db=db, clock=ManualClock())
        with TestClient(app) as client:
            for name in ("a\x00b", "x" * 500, "张三"):
                assert login(client, name, PASSWORD)[0] == 401
            assert login(client, "zhang.san", PASSWORD)[0] == 200
            bad = {"X-API-Key": "aw_zzzzzzzzzzzz_x"}
            assert client.get("/api/v1/users/me", headers=bad).status_code == 401
    finally:
        db.close()


def test_a_console_session_token_is_not_an_api_token_nor_the_other_way_round(
    app: FastAPI, client: TestClient, state: StateDB
) -> None:
    user = add_user(state, Role.INSPECTOR)
    tokens = context(app).tokens
    console = tokens.issue(user.id, kind="console").token
    answer = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {console}"})
    assert answer.status_code == 401
    api_token = tokens.issue(user.id).token
    client.cookies.set("archwatch_session", api_token, path="/console")
    assert client.get("/console").status_code == 401
