"""Users, keys and the failed-login limit in the state database: SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api import accounts
from api.models import Role
from api.security import PasswordPolicyError, verify_password
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD

NOW = datetime(2026, 1, 1, tzinfo=UTC)
S = 1_000_000_000


def test_users_round_trip(db: StateDB) -> None:
    user = accounts.create_user(
        db,
        username="zhang.san",
        password=PASSWORD,
        roles=[Role.SECURITY, Role.KEEPER, Role.KEEPER],
        buildings=["b2", "b1"],
        display_name="张三",
        now=NOW,
    )
    assert user.roles == (Role.KEEPER, Role.SECURITY)
    assert user.buildings == ("b1", "b2")
    assert accounts.get_user(db, user.id) == user
    found, password_hash = accounts.login_user(db, "zhang.san")
    assert found == user
    assert password_hash is not None and password_hash.startswith("$argon2id$")
    assert verify_password(PASSWORD, password_hash)
    assert not verify_password(PASSWORD + "x", password_hash)
    with pytest.raises(accounts.UsernameTaken):
        accounts.create_user(
            db, username="zhang.san", password=PASSWORD, roles=[Role.ADMIN], now=NOW
        )
    with pytest.raises(PasswordPolicyError):
        accounts.create_user(db, username="li.si", password="short", roles=[Role.ADMIN], now=NOW)
    later = datetime(2026, 1, 2, tzinfo=UTC)
    changed = accounts.update_user(db, user.id, now=later, roles=[Role.ADMIN], disabled=True)
    assert changed is not None
    assert (changed.roles, changed.disabled, changed.updated_at) == ((Role.ADMIN,), True, later)
    assert changed.created_at == NOW
    assert accounts.update_user(db, 9999, now=later, disabled=True) is None
    assert accounts.list_users(db, limit=10, offset=0) == ([changed], 1)


def test_api_keys_round_trip(db: StateDB) -> None:
    key, secret = accounts.create_api_key(
        db, name="grafana", roles=[Role.INSPECTOR], created_by="user:admin", now=NOW
    )
    assert accounts.find_api_key(db, secret) == key
    assert accounts.find_api_key(db, secret + "x") is None
    assert accounts.find_api_key(db, "aw_" + key.prefix + "_other") is None
    revoked = accounts.revoke_api_key(db, key.id, now=NOW)
    assert revoked is not None and revoked.revoked_at == NOW
    assert accounts.find_api_key(db, secret) is None
    assert accounts.list_api_keys(db) == [revoked]


@pytest.mark.parametrize("roles", [[Role.KEEPER], [Role.KEEPER, Role.SECURITY]])
def test_api_keys_cannot_be_keepers(db: StateDB, roles: list[Role]) -> None:
    # A keeper sees only their buildings; a key has no buildings, so it would see them all.
    with pytest.raises(ValueError, match="API keys cannot hold the role keeper"):
        accounts.create_api_key(db, name="k", roles=roles, created_by="cli", now=NOW)
    assert accounts.list_api_keys(db) == []


def test_login_failures_window(db: StateDB) -> None:
    t0 = 1_767_225_600 * S
    for n in range(accounts.MAX_FAILURES_PER_USERNAME):
        assert accounts.login_retry_after(db, "zs", "10.0.0.1", t0 + n * S) is None
        accounts.record_login_failure(db, "zs", "10.0.0.1", t0 + n * S)
    wait = accounts.login_retry_after(db, "zs", "10.0.0.2", t0 + 10 * S)
    assert wait == accounts.LOGIN_WINDOW_S - 10
    assert accounts.login_retry_after(db, "other", "10.0.0.2", t0 + 10 * S) is None
    assert accounts.login_retry_after(db, "zs", "x", t0 + accounts.LOGIN_WINDOW_S * S) is None
    # Client-chosen text is stored bounded and without NUL.
    accounts.record_login_failure(db, "a\x00" + "b" * 500, "\x00", t0)
    accounts.clear_login_failures(db, "zs")
    assert accounts.login_retry_after(db, "zs", "10.0.0.1", t0 + 10 * S) is None
