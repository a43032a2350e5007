"""Settings: environment, settings file, command line; secrets refused or hidden."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from gateway.configfile import ConfigError
from gateway.logs import RedactingFilter, redact
from gateway.settings import load_settings, redact_url


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.data_dir == Path("archwatch-data")
    assert s.timezone == "Asia/Shanghai"
    assert s.influx_url is None  # embedded store


def test_precedence_cli_over_env_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "archwatch.yaml").write_text(
        "influx_bucket: from-file\ninflux_org: file-org\ntimezone: Asia/Shanghai\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("ARCHWATCH_INFLUX_ORG", "env-org")
    s = load_settings(data_dir=data, influx_bucket=None)
    assert s.influx_bucket == "from-file"
    assert s.influx_org == "env-org"
    s2 = load_settings(data_dir=data, influx_bucket="cli")
    assert s2.influx_bucket == "cli"


def test_env_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARCHWATCH_DATA_DIR", str(tmp_path / "x"))
    assert load_settings().data_dir == tmp_path / "x"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("influx_bukket: x\n", "archwatch.yaml:1: influx_bukket: unknown key"),
        ("timezone: Atlantis/Nowhere\n", "unknown timezone"),
        ("broker_url: not a url\n", "is not a URL"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_bad_settings_file(tmp_path: Path, content: str, expected: str) -> None:
    (tmp_path / "archwatch.yaml").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path)
    assert expected in "\n".join(info.value.problems)


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("ARCHWATCH_INFLUX_TOKEN", "changeme"),
        ("ARCHWATCH_INFLUX_TOKEN", "my-super-secret-auth-token"),
        ("ARCHWATCH_BROKER_URL", "mqtt://gw:password@127.0.0.1:1883"),
    ],
)
def test_placeholder_secrets_refused_outside_demo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    s = load_settings(data_dir=tmp_path)
    with pytest.raises(ConfigError, match="placeholder"):
        s.check_secrets()
    s.check_secrets(demo=True)  # the demo's code path may use them


# (setting, value) pairs a keeper might leave in place; each is refused outside the demo.
PLACEHOLDERS: list[tuple[str, str]] = [
    ("ARCHWATCH_INFLUX_TOKEN", "admin:changeme"),  # InfluxDB 1.8 user:password
    ("ARCHWATCH_INFLUX_TOKEN", "admin:admin"),
    ("ARCHWATCH_INFLUX_TOKEN", "archwatch:Password"),  # case does not matter
    ("ARCHWATCH_INFLUX_TOKEN", "reader:"),  # an empty password
    ("ARCHWATCH_INFLUX_TOKEN", "influxdb"),
    ("ARCHWATCH_INFLUX_TOKEN", "${INFLUX_TOKEN}"),  # a template nobody expanded
    ("ARCHWATCH_INFLUX_TOKEN", "<your-token>"),
    ("ARCHWATCH_INFLUX_TOKEN", "xxxxxxxxxxxx"),
    ("ARCHWATCH_BROKER_URL", "mqtt://user:pass@127.0.0.1:1883"),  # the README's own example
    ("ARCHWATCH_BROKER_URL", "mqtt://gw:MQTT@127.0.0.1:1883"),
    ("ARCHWATCH_BROKER_URL", "mqtt://gw:pa%73s@127.0.0.1:1883"),  # percent-encoded "pass"
    ("ARCHWATCH_BROKER_URL", "mqtts://gw:secret@broker.example:8883"),
    ("ARCHWATCH_STATE_DB_URL", "postgresql+psycopg://archwatch:archwatch@db/archwatch"),
    ("ARCHWATCH_INFLUX_URL", "http://admin:example@127.0.0.1:8086"),
]


@pytest.mark.parametrize(("env", "value"), PLACEHOLDERS, ids=[v for _, v in PLACEHOLDERS])
def test_common_placeholder_forms_are_refused_without_printing_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path).check_secrets()
    (problem,) = info.value.problems
    assert "placeholder" in problem and env in problem  # says which setting to fix
    assert value not in problem and value not in str(info.value)


# Real secrets are random; none of them may be refused because it contains a listed word.
REAL_SECRETS: list[tuple[str, str]] = [
    ("ARCHWATCH_INFLUX_TOKEN", "admin:Vq3kP9xLm2wRt7"),  # a default user, a real password
    ("ARCHWATCH_INFLUX_TOKEN", "archwatch:passwordless-no-more-8Hq2"),
    ("ARCHWATCH_INFLUX_TOKEN", "Z8hQ1c-0nF3Kx9_4tLw2PpRvS7aYbM5dE6gJ8iU0oW1eT2yN3mB4vC5xZ6qA7sD=="),
    ("ARCHWATCH_INFLUX_TOKEN", "apiv3_k2J9s8Xq0LmP4wRt7YbN1cV6"),
    ("ARCHWATCH_BROKER_URL", "mqtt://pass:R4nd0m-9xQw@127.0.0.1:1883"),  # user 'pass' is fine
    ("ARCHWATCH_BROKER_URL", "mqtt://gw:adminadmin7Kq@127.0.0.1:1883"),
    ("ARCHWATCH_BROKER_URL", "mqtt://127.0.0.1:1883"),  # no password at all
    ("ARCHWATCH_STATE_DB_URL", "postgresql+psycopg://archwatch:t9Lw2x-Q8pZ@db/archwatch"),
]


@pytest.mark.parametrize(("env", "value"), REAL_SECRETS, ids=[v for _, v in REAL_SECRETS])
def test_random_secrets_are_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str, value: str
) -> None:
    monkeypatch.setenv(env, value)
    load_settings(data_dir=tmp_path).check_secrets()


@pytest.mark.parametrize("var", ["ARCHWATCH_DEMO", "archwatch_demo"])
@pytest.mark.parametrize("value", ["true", "1", "false"])
def test_demo_is_not_a_setting_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, var: str, value: str
) -> None:
    """Even ``false`` is refused: silently ignoring it would let a keeper believe it works."""
    monkeypatch.setenv(var, value)
    monkeypatch.setenv("ARCHWATCH_INFLUX_TOKEN", "changeme")
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path)
    assert info.value.problems == [f"{var}: demo is not a setting; run `archwatch demo`"]


def test_demo_is_not_a_setting_in_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "archwatch.yaml").write_text("influx_bucket: b\ndemo: true\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path)
    assert info.value.problems == [
        f"{tmp_path / 'archwatch.yaml'}:2: demo: demo is not a setting; run `archwatch demo`"
    ]


def test_demo_cannot_be_passed_as_a_setting_by_code(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="demo is not a setting"):
        load_settings(data_dir=tmp_path, demo=True)


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("ARCHWATCH_BROKER_URL", "http://gw:hunter2@host:1883", "the scheme must be mqtt or mqtts"),
        ("ARCHWATCH_BROKER_URL", "mqtt://gw:hunter2@host:99999", "port must be a number"),
        ("ARCHWATCH_BROKER_URL", "mqtt://host:abc", "port must be a number"),
        ("ARCHWATCH_INFLUX_URL", "mqtt://host:8086", "the scheme must be http or https"),
        ("ARCHWATCH_STATE_DB_URL", "mysql://u:hunter2@h/x", "use sqlite:////path/state.sqlite"),
        ("ARCHWATCH_STATE_DB_URL", "sqlite:///:memory:", "must be a file"),
        ("ARCHWATCH_TIMEZONE", "Atlantis/Nowhere", "unknown timezone"),
    ],
)
def test_bad_environment_values_are_config_errors_without_the_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str, value: str, expected: str
) -> None:
    """Refused when the settings load, so no command gets as far as a traceback."""
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path)
    (problem,) = info.value.problems
    assert expected in problem and env.removeprefix("ARCHWATCH_").lower() in problem
    assert "hunter2" not in problem and info.value.__cause__ is None


@pytest.mark.parametrize("content", ["zz\n", "", "00ff\n"])
def test_a_damaged_signing_key_is_named(tmp_path: Path, content: str) -> None:
    (tmp_path / "signing.key").write_text(content, encoding="ascii")
    with pytest.raises(ConfigError) as info:
        load_settings(data_dir=tmp_path).signing_key()
    (problem,) = info.value.problems
    assert problem.startswith(f"{tmp_path / 'signing.key'}: not a signing key")


def test_real_secret_accepted_and_never_printed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ARCHWATCH_INFLUX_TOKEN", "s3cr3t-Token-value")
    s = load_settings(data_dir=tmp_path)
    s.check_secrets()
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s.model_dump())


def test_signing_key_generated_once_private(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path / "new")
    key = s.signing_key()
    assert len(key) == 32
    assert s.signing_key() == key
    mode = stat.S_IMODE((tmp_path / "new" / "signing.key").stat().st_mode)
    assert mode == 0o600


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://gw:hunter2@broker:1883/x", "mqtt://gw:***@broker:1883/x"),
        ("http://host:8086", "http://host:8086"),
        ("https://tok@host/", "https://***@host/"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_log_filter_redacts_library_messages(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("some.library")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO):
        logger.info("connecting to %s", "mqtt://u:hunter2@h:1883")
        logger.info("GET /query?db=x&token=abc123&q=1")
        logger.info("headers {'Authorization': 'Token zzz999'}")
    text = caplog.text
    assert "hunter2" not in text and "abc123" not in text and "zzz999" not in text
    assert redact("plain text") == "plain text"


@pytest.mark.parametrize(
    ("public_url", "why"),
    [
        ("archwatch example org", "not an http(s) URL"),
        ("archwatch.example.org", "not an http(s) URL"),
        ("ftp://archwatch.example.org", "not an http(s) URL"),
        ("https://", "not an http(s) URL"),
        ("https://archwatch.example.org/aw", "no path, query or fragment"),
        ("https://archwatch.example.org/?x=1", "no path, query or fragment"),
        ("https://archwatch.example.org#top", "no path, query or fragment"),
        ("https://archwatch.example.org:99999", "port must be a number"),
        ("https://ops:hunter2@archwatch.example.org", "no user or password"),
    ],
)
def test_public_url_must_be_a_bare_http_url(tmp_path: Path, public_url: str, why: str) -> None:
    """Links in notifications are public_url + /ack/<token>: a bad one is refused at start."""
    from gateway.settings import Settings

    with pytest.raises(ValueError, match="public_url") as caught:
        Settings(data_dir=tmp_path, public_url=public_url)
    assert why in str(caught.value)


@pytest.mark.parametrize(
    "public_url",
    ["http://127.0.0.1:8080", "https://archwatch.example.org/", "HTTPS://aw.example.org:8443"],
)
def test_public_url_accepts_scheme_host_and_port(tmp_path: Path, public_url: str) -> None:
    from gateway.settings import Settings

    assert Settings(data_dir=tmp_path, public_url=public_url).public_url == public_url
