"""``archwatch user add`` and ``archwatch apikey create``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from api import accounts
from api.security import verify_password
from gateway import audit
from gateway.cli import main
from gateway.datadir import DataDir
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD


def open_db(data_dir: Path) -> StateDB:
    return StateDB(DataDir(data_dir).state_db_url())


def test_user_add_with_password_stdin(data_dir: Path) -> None:
    args = ["user", "add", "admin", "--role", "admin", "--role", "security"]
    result = CliRunner().invoke(
        main, [*args, "--password-stdin", "--data-dir", str(data_dir)], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "created user admin" in result.output
    with open_db(data_dir) as db:
        user, password_hash = accounts.login_user(db, "admin")
        assert user is not None
        assert [r.value for r in user.roles] == ["admin", "security"]
        assert verify_password(PASSWORD, password_hash)
        entry = audit.head(db)
        assert entry is not None and (entry.actor, entry.action) == ("cli", "user.create")
    again = CliRunner().invoke(
        main, [*args, "--password-stdin", "--data-dir", str(data_dir)], input=PASSWORD + "\n"
    )
    assert again.exit_code == 1
    assert "taken" in again.output


def test_user_add_prompts_twice_with_buildings(data_dir: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "user",
            "add",
            "keeper1",
            "--role",
            "keeper",
            "--building",
            "b1",
            "--building",
            "b2",
            "--data-dir",
            str(data_dir),
        ],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    with open_db(data_dir) as db:
        user, _ = accounts.login_user(db, "keeper1")
        assert user is not None and user.buildings == ("b1", "b2")


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["user", "add", "a", "--role", "admin", "--password-stdin"], "short\n", "at least 12"),
        (["user", "add", "a", "--role", "admin"], f"{PASSWORD}\nother password!!\n" * 3, "match"),
        (["user", "add", "a b", "--role", "admin", "--password-stdin"], PASSWORD, "USERNAME"),
        (["user", "add", "a", "--role", "root", "--password-stdin"], PASSWORD, "root"),
        (["user", "add", "a", "--password-stdin"], PASSWORD, "--role"),
    ],
)
def test_user_add_refusals(data_dir: Path, argv: list[str], stdin: str, message: str) -> None:
    result = CliRunner().invoke(main, [*argv, "--data-dir", str(data_dir)], input=stdin)
    assert result.exit_code != 0
    assert message in result.output
    with open_db(data_dir) as db:
        db.migrate()
        assert accounts.login_user(db, "a") == (None, None)


def test_apikey_create_prints_the_key_once(data_dir: Path) -> None:
    result = CliRunner().invoke(
        main, ["apikey", "create", "grafana", "--role", "inspector", "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 0, result.output
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("aw_")
    with open_db(data_dir) as db:
        found = accounts.find_api_key(db, key)
        assert found is not None
        assert (found.name, [r.value for r in found.roles]) == ("grafana", ["inspector"])


@pytest.mark.parametrize(
    "roles", [["keeper"], ["keeper", "inspector"]], ids=["keeper", "keeper+inspector"]
)
def test_apikey_create_refuses_the_role_keeper(data_dir: Path, roles: list[str]) -> None:
    # A keeper sees only their buildings; a key has none, so it would see every building.
    argv = ["apikey", "create", "grafana", *(a for r in roles for a in ("--role", r))]
    result = CliRunner().invoke(main, [*argv, "--data-dir", str(data_dir)])
    assert result.exit_code == 1, result.output
    assert "API keys cannot hold the role keeper" in result.output
    assert "aw_" not in result.stdout
    with open_db(data_dir) as db:
        assert accounts.list_api_keys(db) == []
        assert audit.head(db) is None
