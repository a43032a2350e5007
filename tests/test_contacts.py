"""The contacts file: validation with file:line, ${ENV} placeholders, routing, redaction."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerting.contacts import expand_placeholders, load_contacts
from alerting.redact import redact_text, url_secrets
from gateway.configfile import ConfigError
from gateway.resources import examples_dir

GOOD = """\
language: zh
contacts:
  - id: keeper
    name: 王保管员
    urls: ["json://127.0.0.1:9000/keeper"]
    routes:
      - {severities: [warning, critical], buildings: [main]}
  - id: guard
    language: en
    urls: ["json://127.0.0.1:9000/guard", "wecombot://${BOT_KEY}"]
    routes:
      - {severities: [critical]}
      - {rooms: [r201], drills: false}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "contacts.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_file_loads_with_placeholders_expanded(tmp_path: Path) -> None:
    contacts = load_contacts(write(tmp_path, GOOD), env={"BOT_KEY": "k3y"})
    guard = contacts.get("guard")
    assert guard is not None
    assert guard.urls[1] == "wecombot://k3y"
    assert guard.channels == ["json://127.0.0.1:9000", "wecombot://***"]
    assert contacts.language_of(guard) == "en"
    keeper = contacts.get("keeper")
    assert keeper is not None and contacts.language_of(keeper) == "zh"


@pytest.mark.parametrize(
    ("severity", "building", "room", "drill", "expected"),
    [
        ("warning", "main", "r101", False, ["keeper"]),
        ("critical", "main", "r101", False, ["keeper", "guard"]),
        ("critical", "annex", "x1", False, ["guard"]),
        ("info", "main", "r201", False, ["guard"]),  # guard's room route: any severity
        ("info", "main", "r201", True, []),  # ... but not drills
        ("info", "main", "r101", False, []),
    ],
)
def test_routing(
    tmp_path: Path, severity: str, building: str, room: str, drill: bool, expected: list[str]
) -> None:
    contacts = load_contacts(write(tmp_path, GOOD), env={"BOT_KEY": "k3y"})
    got = contacts.recipients(severity=severity, building=building, room=room, drill=drill)
    assert [c.id for c in got] == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (GOOD, ":10: contacts[1].urls: URL 2: environment variable 'BOT_KEY'"),
        (GOOD.replace("[warning, critical]", "[warning, urgent]"), ":7: contacts[0].routes"),
        (GOOD.replace("id: guard", "id: keeper"), "duplicate contact id 'keeper'"),
        (GOOD.replace("name: 王保管员", "nmae: x"), ":4: contacts[0].nmae: unknown key"),
        (GOOD.replace("json://127.0.0.1:9000/keeper", "nosuch://secret"), ":5: contacts[0].urls"),
        (GOOD.replace("json://127.0.0.1:9000/keeper", "no scheme"), "not an apprise URL"),
        ("contacts: []\n", "contacts"),
    ],
)
def test_problems_name_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    env = {} if "environment variable" in problem else {"BOT_KEY": "k3y"}
    with pytest.raises(ConfigError) as info:
        load_contacts(path, env=env)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_an_invalid_url_error_does_not_show_its_secret(tmp_path: Path) -> None:
    text = GOOD.replace("wecombot://${BOT_KEY}", "wecombot://has spaces-TOPSECRET")
    with pytest.raises(ConfigError) as info:
        load_contacts(write(tmp_path, text), env={})
    assert "TOPSECRET" not in str(info.value)
    assert "wecombot://***" in str(info.value)


def test_contact_repr_hides_urls(tmp_path: Path) -> None:
    contacts = load_contacts(write(tmp_path, GOOD), env={"BOT_KEY": "k3ysecret"})
    guard = contacts.get("guard")
    assert "k3ysecret" not in repr(guard) and "k3ysecret" not in str(guard)
    assert "k3ysecret" not in repr(contacts)


def test_the_example_file_loads_with_and_without_the_demo_receiver() -> None:
    path = examples_dir() / "contacts.yaml"
    default = load_contacts(path, env={})
    assert {c.id for c in default.all()} == {
        "keeper-wang",
        "security-li",
        "keeper-zhao",
        "director-chen",
    }
    demo = load_contacts(path, env={"ARCHWATCH_DEMO_RECEIVER": "json://127.0.0.1:41234"})
    security = demo.get("security-li")
    assert security is not None
    assert security.urls == [
        "json://127.0.0.1:41234/security",
        "json://127.0.0.1:41234/security-sms",
    ]


NAMES = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)
VALUES = st.text(alphabet=string.ascii_letters + string.digits + ":/.@-_", max_size=30)


@given(name=NAMES, value=VALUES, prefix=VALUES, default=VALUES)
def test_placeholders_expand_from_env_or_default(
    name: str, value: str, prefix: str, default: str
) -> None:
    assert expand_placeholders(f"{prefix}${{{name}}}", {name: value}) == prefix + value
    assert expand_placeholders(f"${{{name}:-{default}}}/x", {}) == f"{default}/x"
    assert expand_placeholders(f"${{{name}:-{default}}}", {name: value}) == value
    with pytest.raises(KeyError):
        expand_placeholders(f"${{{name}}}", {})


TOKENS = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=8, max_size=40)


@given(token=TOKENS, password=TOKENS)
def test_url_secrets_cover_host_tokens_and_passwords(token: str, password: str) -> None:
    url = f"dingtalk://{password}@{token}/"
    secrets = url_secrets(url, host_is_secret=True, path_is_secret=True)
    line = redact_text(f"posting to {url} failed; token={token}", secrets)
    assert token not in line and password not in line
