"""Mosquitto running the repository's production configuration (deploy/mosquitto/).

The configuration, the ACL and the entry point that builds the password file are the very
files docker-compose.yml mounts; only what cannot be the same on a test machine is rewritten:
loopback ports instead of 1883/8883, and temporary folders instead of /mosquitto/... Each
rewrite must find its target, so a changed production file breaks this fixture loudly
instead of being tested half. Certificates are made with deploy/make-certs.sh, as the README
tells an installer to.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import REPO, ServerStartError, _Process, free_port, wait_for_port

DEPLOY = REPO / "deploy"
CONFIG = DEPLOY / "mosquitto" / "mosquitto.conf"
ACL = DEPLOY / "mosquitto" / "acl"
PREPARE = DEPLOY / "mosquitto" / "prepare.sh"
MAKE_CERTS = DEPLOY / "make-certs.sh"
GATEWAY_USER = "archwatch-gateway"


def _mosquitto_binary() -> str:
    found = (
        os.environ.get("ARCHWATCH_MOSQUITTO")
        or shutil.which("mosquitto")
        or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    )
    if not found:
        raise ServerStartError("mosquitto not found: run scripts/test.sh (it installs it)")
    return found


def _rewrite(text: str, old: str, new: str) -> str:
    if old not in text:
        raise ServerStartError(f"{CONFIG} no longer contains {old!r}: update the fixture")
    return text.replace(old, new)


class SecureMosquitto(_Process):
    """Mosquitto with deploy/mosquitto/ (password file, ACL, TLS listener, persistence)."""

    name = "mosquitto-prod"

    def __init__(
        self, workdir: Path, devices: tuple[str, ...] = ("dev-a", "dev-b", "mq-0")
    ) -> None:
        super().__init__(workdir)
        self.binary = _mosquitto_binary()
        self.port = free_port()
        self.tls_port = free_port()
        self.gateway_password = secrets.token_hex(12)
        self.device_passwords = {d: secrets.token_hex(12) for d in devices}
        self.certs = workdir / "certs"
        run_dir = workdir / "run"
        data_dir = workdir / "data"
        data_dir.mkdir(exist_ok=True)
        self._run([str(MAKE_CERTS), str(self.certs)])
        self._run(
            ["sh", str(PREPARE), "true"],
            env={
                "MOSQUITTO_RUN_DIR": str(run_dir),
                "MOSQUITTO_ACL_SOURCE": str(ACL),
                "MOSQUITTO_CERTS_SOURCE": str(self.certs),
                "MQTT_GATEWAY_PASSWORD": self.gateway_password,
                "MQTT_DEVICE_CREDENTIALS": " ".join(
                    f"{d}:{pw}" for d, pw in self.device_passwords.items()
                ),
            },
        )
        text = CONFIG.read_text(encoding="utf-8")
        text = _rewrite(text, "\nlistener 1883\n", f"\nlistener {self.port} 127.0.0.1\n")
        text = _rewrite(text, "\nlistener 8883\n", f"\nlistener {self.tls_port} 127.0.0.1\n")
        text = _rewrite(text, "/mosquitto/run/", f"{run_dir}/")
        text = _rewrite(text, "/mosquitto/data/", f"{data_dir}/")
        # Mosquitto started as root drops to the 'mosquitto' user unless told otherwise.
        user = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(f"user {user}\n{text}", encoding="utf-8")

    def _run(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        r = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **(env or {})},
        )
        if r.returncode != 0:
            raise ServerStartError(f"{' '.join(cmd[:2])} failed: {r.stderr[-2000:]}")

    @property
    def ca_file(self) -> Path:
        return self.certs / "ca.crt"

    def url(self, user: str | None = GATEWAY_USER, password: str | None = None) -> str:
        """``mqtt://user:password@127.0.0.1:port``; the gateway's by default."""
        if user is None:
            return f"mqtt://127.0.0.1:{self.port}"
        pw = password if password is not None else self.password_of(user)
        return f"mqtt://{user}:{pw}@127.0.0.1:{self.port}"

    def password_of(self, user: str) -> str:
        return self.gateway_password if user == GATEWAY_USER else self.device_passwords[user]

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config)]

    def ready_port(self) -> int:
        return self.port

    def after_start(self) -> None:
        wait_for_port(self.tls_port, proc=self.proc)


@pytest.fixture(scope="session")
def secure_mosquitto_server(server_root: Path) -> Iterator[SecureMosquitto]:
    server = SecureMosquitto(server_root / "mosquitto-prod")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def secure_mosquitto(secure_mosquitto_server: SecureMosquitto) -> SecureMosquitto:
    """Mosquitto with the production config, running (a previous test may have stopped it)."""
    secure_mosquitto_server.start()
    return secure_mosquitto_server
