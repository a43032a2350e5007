"""archwatch's one settings class: ``ARCHWATCH_*`` environment variables and an optional file.

Precedence (highest first): command-line options, environment, the settings file
(``--settings FILE``, or ``archwatch.yaml`` in the data directory), defaults. Secrets are
``SecretStr`` so they never print; a placeholder secret is refused outside the demo.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gateway.configfile import ConfigError, check_timezone, read_yaml, validation_problems

PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "change_me",
        "password",
        "admin",
        "secret",
        "token",
        "my-token",
        "my-super-secret-auth-token",
        "example",
        "xxx",
    }
)
SETTINGS_FILE_NAME = "archwatch.yaml"
SIGNING_KEY_FILE = "signing.key"


def redact_url(url: str) -> str:
    """A URL with its password (and any token-like user) replaced by ``***``, for logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if parts.password is None and parts.username is None:
        return url
    host = parts.netloc.rpartition("@")[2]  # keep host:port as written, even if invalid
    user = parts.username or ""
    netloc = f"{user}:***@{host}" if parts.password is not None else f"***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Settings(BaseSettings):
    """Process settings shared by every archwatch command."""

    model_config = SettingsConfigDict(env_prefix="ARCHWATCH_", extra="forbid")

    data_dir: Path = Field(default=Path("./archwatch-data"))
    # InfluxDB; no URL means the embedded SQLite store in the data directory.
    influx_url: str | None = None
    influx_token: SecretStr | None = Field(
        default=None, description="2.x/3.x: API token; 1.8: 'user:password' (or none without auth)"
    )
    influx_org: str = "-"
    influx_bucket: str = "archwatch"
    influx_database: str | None = Field(
        default=None, description="InfluxQL database for /query; default: the bucket name"
    )
    broker_url: str | None = Field(default=None, description="mqtt://user:pass@host:1883")
    mqtt_client_id: str = "archwatch-gateway"
    state_db_url: str | None = Field(default=None, description="default: SQLite in the data dir")
    site_file: Path | None = Field(
        default=None, description="the site file the API and console describe (archwatch api)"
    )
    timezone: str = "Asia/Shanghai"
    public_url: str = "http://127.0.0.1:8080"
    ack_link_hours: float = Field(default=24.0, gt=0, description="acknowledgement link lifetime")
    spool_warn_rows: int = Field(default=1_000_000, ge=1)
    batch_size: int = Field(default=5_000, ge=1, le=100_000)
    dedup_window_hours: float = Field(default=48.0, gt=0)
    demo: bool = False

    _tz = field_validator("timezone")(check_timezone)

    @field_validator("broker_url", "influx_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"'{redact_url(value)}' is not a URL (scheme://host[:port])")
        return value

    @property
    def database(self) -> str:
        return self.influx_database or self.influx_bucket.split("/")[0]

    def check_secrets(self) -> None:
        """Refuse placeholder secrets outside the demo (FastAPI template's rule, absorbed)."""
        if self.demo:
            return
        problems = []
        token = self.influx_token.get_secret_value() if self.influx_token else None
        if token is not None and token.strip().lower() in PLACEHOLDER_SECRETS:
            problems.append("ARCHWATCH_INFLUX_TOKEN is a placeholder; set the real token")
        for name in ("broker_url", "influx_url", "state_db_url"):
            url = getattr(self, name)
            if url:
                pw = urlsplit(url).password
                if pw is not None and pw.strip().lower() in PLACEHOLDER_SECRETS:
                    problems.append(f"the password in ARCHWATCH_{name.upper()} is a placeholder")
        if problems:
            raise ConfigError("settings", problems)

    def signing_key(self) -> bytes:
        """The data directory's HMAC key, generated (0600) on first use."""
        path = self.data_dir / SIGNING_KEY_FILE
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Written whole under a temporary name, then linked into place: link() fails if
            # the key exists, so two processes starting at once agree on one key, and no
            # process can read a key file that is still empty.
            fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".signing-key-")
            try:
                with os.fdopen(fd, "w", encoding="ascii") as f:
                    f.write(secrets.token_hex(32) + "\n")
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                os.unlink(tmp)
        return bytes.fromhex(path.read_text(encoding="ascii").strip())


def load_settings(settings_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, a settings file, the environment, then ``overrides``.

    ``overrides`` are command-line values; ``None`` means "not given".
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    env_only = Settings.model_validate({}) if not given else None
    data_dir = Path(
        given.get("data_dir") or (env_only.data_dir if env_only else Settings().data_dir)
    )
    path = settings_file or (data_dir / SETTINGS_FILE_NAME)
    file_values: dict[str, Any] = {}
    if settings_file is not None or path.is_file():
        data, lines = read_yaml(path)
        if data is not None and not isinstance(data, dict):
            raise ConfigError(path, [f"{path}: must be a mapping of setting: value"])
        file_values = data or {}
        try:
            Settings.model_validate(file_values)
        except ValidationError as exc:
            raise ConfigError(path, validation_problems(path, exc, lines)) from exc

    class _WithFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            file_source = InitSettingsSource(settings_cls, init_kwargs=file_values)
            return (init_settings, env_settings, file_source)

    try:
        merged = _WithFile(**given)
    except ValidationError as exc:
        raise ConfigError("settings", validation_problems("settings", exc, {})) from exc
    return Settings.model_validate(merged.model_dump())
