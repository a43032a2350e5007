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
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gateway.configfile import ConfigError, check_timezone, read_yaml, validation_problems

# Secrets nobody should run with: vendor defaults, documentation examples (the README's own
# ``mqtt://user:pass@...``, InfluxDB's ``my-super-secret-auth-token``) and the names of the
# things they protect. Compared case-insensitively with the whole secret and, for InfluxDB
# 1.8's ``user:password`` tokens, with the password half. Real secrets are random, so a short
# list of words cannot refuse one by accident.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "admin",
        "archwatch",
        "changeit",
        "changeme",
        "change-me",
        "change_me",
        "default",
        "demo",
        "example",
        "guest",
        "influx",
        "influxdb",
        "mosquitto",
        "mqtt",
        "my-token",
        "my-super-secret-auth-token",
        "pass",
        "passw0rd",
        "password",
        "postgres",
        "root",
        "secret",
        "test",
        "token",
        "xxx",
        "123456",
        "12345678",
    }
)
SETTINGS_FILE_NAME = "archwatch.yaml"
URL_SCHEMES = {"broker_url": ("mqtt", "mqtts"), "influx_url": ("http", "https")}
SIGNING_KEY_FILE = "signing.key"
# Names that look like settings but are not: refused with the reason instead of ignored, so
# ``ARCHWATCH_DEMO=true`` cannot quietly switch off the placeholder check in production.
NOT_SETTINGS = {"demo": "demo is not a setting; run `archwatch demo`"}


def is_placeholder(secret: str) -> bool:
    """True for a secret from ``PLACEHOLDER_SECRETS``, an unexpanded template (``${X}``,
    ``<password>``) or one character repeated (``xxxxxx``, ``******``)."""
    value = secret.strip().lower()
    if value in PLACEHOLDER_SECRETS or len(set(value)) == 1:
        return True
    return (value.startswith("${") and value.endswith("}")) or (
        value.startswith("<") and value.endswith(">")
    )


def redact_url(url: str) -> str:
    """A URL with its password (and any token-like user) replaced by ``***``, for logs."""
    scheme, sep, rest = url.partition("://")
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if sep and "@" in rest and "@" not in authority:
        # An unencoded / ? or # in the password ends the authority early, so urlsplit sees
        # no credentials; mask everything up to the last @ rather than show the secret.
        creds, _, after = rest.rpartition("@")
        user = creds.split(":", 1)[0] if ":" in creds else ""
        return f"{scheme}://{user}:***@{after}" if user else f"{scheme}://***@{after}"
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
    # No ``demo`` field on purpose: the placeholder exemption is an argument of
    # check_secrets that only ``archwatch demo``'s code can pass, never a setting.

    _tz = field_validator("timezone")(check_timezone)

    @field_validator("broker_url", "influx_url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if "@" in value.partition("://")[2] and "@" not in parts.netloc:
            raise ValueError(
                f"'{redact_url(value)}': the user or password holds a character that must be "
                "percent-encoded (/ ? # @ as %2F %3F %23 %40)"
            )
        if not parts.scheme or not parts.hostname:
            raise ValueError(f"'{redact_url(value)}' is not a URL (scheme://host[:port])")
        schemes = URL_SCHEMES[info.field_name or ""]
        if parts.scheme not in schemes:
            raise ValueError(f"'{redact_url(value)}': the scheme must be {' or '.join(schemes)}")
        try:
            parts.port  # noqa: B018  (parsing the port is the check)
        except ValueError:
            # Checked here so the gateway refuses it at start, not in its MQTT thread.
            raise ValueError(
                f"'{redact_url(value)}': the port must be a number from 1 to 65535"
            ) from None
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        # Links in notifications are this plus "/ack/<token>": anything but a bare
        # http(s)://host[:port] would give links that lead nowhere (or to a sub-path the
        # acknowledgement page's origin check does not know).
        shown = redact_url(value)
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"'{shown}' is not an http(s) URL: write http://host[:port] or https://host[:port]"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"'{shown}': no user or password in public_url (links show it)")
        try:
            parts.port  # noqa: B018  (parsing the port is the check)
        except ValueError:
            raise ValueError(f"'{shown}': the port must be a number from 1 to 65535") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value:
            raise ValueError(
                f"'{shown}': public_url is scheme://host[:port] only, with no path, query "
                "or fragment (the acknowledgement pages are served at its root)"
            )
        return value.strip()

    @field_validator("state_db_url")
    @classmethod
    def _state_db(cls, value: str | None) -> str | None:
        if value is not None:
            from gateway.statedb import StateDBError, normalise_url

            try:
                normalise_url(value)
            except StateDBError as exc:  # its message never holds the password
                raise ValueError(str(exc)) from None
        return value

    @property
    def database(self) -> str:
        return self.influx_database or self.influx_bucket.split("/")[0]

    def check_secrets(self, *, demo: bool = False) -> None:
        """Refuse placeholder secrets (FastAPI template's rule, absorbed).

        ``demo=True`` is the only exemption, and only ``archwatch demo``'s code path may pass
        it: it is deliberately not a setting. No message contains the secret itself.
        """
        if demo:
            return
        problems = []
        token = self.influx_token.get_secret_value() if self.influx_token else None
        if token is not None:
            if is_placeholder(token):
                problems.append(
                    "influx_token (ARCHWATCH_INFLUX_TOKEN) is a placeholder; set the real token"
                )
            elif ":" in token and is_placeholder(token.partition(":")[2]):
                # InfluxDB 1.8: 'user:password'; a real user name with a default password
                # ('admin:admin') is as open as no password at all.
                problems.append(
                    "the password in influx_token (ARCHWATCH_INFLUX_TOKEN, 'user:password') "
                    "is a placeholder; set the real password"
                )
        for name in ("broker_url", "influx_url", "state_db_url"):
            url = getattr(self, name)
            if url:
                pw = urlsplit(url).password
                if pw is not None and is_placeholder(unquote(pw)):
                    problems.append(
                        f"the password in {name} (ARCHWATCH_{name.upper()}) is a placeholder; "
                        "set the real password"
                    )
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
        try:
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        except (UnicodeDecodeError, ValueError):
            key = b""
        if len(key) < 16:
            # A damaged key must not become a traceback (or a weak key): say which file.
            raise ConfigError(
                path,
                [
                    f"{path}: not a signing key (64 hex digits); restore it from a backup, or "
                    "delete it to generate a new one (links already sent stop working)"
                ],
            )
        return key


def load_settings(settings_file: Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from defaults, a settings file, the environment, then ``overrides``.

    ``overrides`` are command-line values; ``None`` means "not given".
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    # pydantic-settings ignores ARCHWATCH_* variables that are no field; these few are
    # refused by name (environment names are matched case-insensitively, as the fields are).
    refused = [f"{k}: {NOT_SETTINGS[k]}" for k in given if k in NOT_SETTINGS]
    for var in os.environ:
        name = var.lower()
        if name.startswith("archwatch_") and name.removeprefix("archwatch_") in NOT_SETTINGS:
            refused.append(f"{var}: {NOT_SETTINGS[name.removeprefix('archwatch_')]}")
    if refused:
        raise ConfigError("settings", refused)
    try:
        env_only = Settings.model_validate({}) if not given else None
        data_dir = Path(
            given.get("data_dir") or (env_only.data_dir if env_only else Settings().data_dir)
        )
    except ValidationError as exc:
        # A bad ARCHWATCH_* variable: one line each, and not chained (pydantic's own text
        # repeats the input, a password included).
        raise ConfigError("settings", validation_problems("settings", exc, {})) from None
    path = settings_file or (data_dir / SETTINGS_FILE_NAME)
    file_values: dict[str, Any] = {}
    if settings_file is not None or path.is_file():
        data, lines = read_yaml(path)
        if data is not None and not isinstance(data, dict):
            raise ConfigError(path, [f"{path}: must be a mapping of setting: value"])
        file_values = data or {}
        refused = [
            f"{path}:{lines.get((str(key),), 1)}: {key}: {NOT_SETTINGS[str(key)]}"
            for key in file_values
            if str(key) in NOT_SETTINGS
        ]
        if refused:
            raise ConfigError(path, refused)
        try:
            Settings.model_validate(file_values)
        except ValidationError as exc:
            raise ConfigError(path, validation_problems(path, exc, lines)) from None

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
        raise ConfigError("settings", validation_problems("settings", exc, {})) from None
    return Settings.model_validate(merged.model_dump())
