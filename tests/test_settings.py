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
    load_settings(data_dir=tmp_path, demo=True).check_secrets()  # the demo may use them


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
