"""Real servers on loopback for the tests: InfluxDB 1.8.10, Mosquitto, PostgreSQL.

Each server runs as a child process on a free port, in a temporary folder, and can be
stopped and started again (outage tests). A server that cannot start raises, so the test
run fails loudly instead of skipping: CI must never pass without the real servers.
Binaries come from ``scripts/test.sh`` (which installs and builds them); their paths can be
overridden with ARCHWATCH_INFLUXD, ARCHWATCH_MOSQUITTO and ARCHWATCH_PG_BINDIR.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
INFLUXD_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")))
    / "archwatch"
    / "influxd-1.8.10"
    / "bin"
    / "influxd"
)


# Requests the tests make to InfluxDB themselves (not the gateway's): httpx's default of 5 s
# is short for a DROP DATABASE or a count on a loaded CI machine.
HTTP_TIMEOUT_S = 60.0


class ServerStartError(RuntimeError):
    """A real server the tests need could not be started: fail, never skip."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(
                f"process exited with {proc.returncode} before port {port} opened"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        time.sleep(0.1)
    raise ServerStartError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class _Process:
    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{self.name}.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_port(self) -> int:
        raise NotImplementedError

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(self.ready_port(), proc=self.proc)
            self.after_start()
        except Exception as exc:
            self.stop()
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise ServerStartError(f"{self.name} failed to start: {exc}\n{tail}") from exc

    def after_start(self) -> None:
        pass

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class InfluxServer(_Process):
    """InfluxDB OSS 1.8.10 (built by scripts/test.sh with ``go install``)."""

    name = "influxd"
    database = "archwatch"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = os.environ.get("ARCHWATCH_INFLUXD") or (
            str(INFLUXD_CACHE) if INFLUXD_CACHE.exists() else shutil.which("influxd")
        )
        if not self.binary:
            raise ServerStartError(
                "influxd 1.8.10 not found: run scripts/test.sh (it builds it) "
                "or set ARCHWATCH_INFLUXD"
            )
        self.port = free_port()
        self.rpc_port = free_port()
        self.config = workdir / "influxdb.conf"
        self.config.write_text(
            f"""
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{workdir}/meta"
[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  flux-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
""",
            encoding="utf-8",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(self.binary), "run", "-config", str(self.config)]

    def ready_port(self) -> int:
        return self.port

    def after_start(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.post(
                    f"{self.url}/query",
                    params={"q": f"CREATE DATABASE {self.database}"},
                    timeout=HTTP_TIMEOUT_S,
                )
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerStartError("influxd did not accept CREATE DATABASE")
            time.sleep(0.2)

    def query(self, q: str, db: str | None = None) -> dict[str, object]:
        r = httpx.get(
            f"{self.url}/query",
            params={"db": db or self.database, "q": q, "epoch": "ns"},
            timeout=HTTP_TIMEOUT_S,
        )
        r.raise_for_status()
        result: dict[str, object] = r.json()
        return result

    def reset(self) -> None:
        """Empty the test database between tests."""
        httpx.post(
            f"{self.url}/query",
            params={"q": f"DROP DATABASE {self.database}"},
            timeout=HTTP_TIMEOUT_S,
        ).raise_for_status()
        httpx.post(
            f"{self.url}/query",
            params={"q": f"CREATE DATABASE {self.database}"},
            timeout=HTTP_TIMEOUT_S,
        ).raise_for_status()


class MosquittoServer(_Process):
    """Debian's Mosquitto with a test configuration (persistence on, for restart tests)."""

    name = "mosquitto"

    def __init__(self, workdir: Path, extra_config: str = "") -> None:
        super().__init__(workdir)
        self.binary = (
            os.environ.get("ARCHWATCH_MOSQUITTO")
            or shutil.which("mosquitto")
            or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        )
        if not self.binary:
            raise ServerStartError("mosquitto not found: run scripts/test.sh (it installs it)")
        self.port = free_port()
        persist = workdir / "persist"
        persist.mkdir(exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        user = "root" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.config.write_text(
            f"""
user {user}
listener {self.port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {persist}/
autosave_interval 1
max_queued_messages 100000
max_inflight_messages 100
{extra_config}
""",
            encoding="utf-8",
        )

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(self.binary), "-c", str(self.config)]

    def ready_port(self) -> int:
        return self.port


def _pg_bindir() -> Path:
    env = os.environ.get("ARCHWATCH_PG_BINDIR")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        raise ServerStartError("PostgreSQL not found: run scripts/test.sh (it installs it)")
    return Path(found[-1]).parent


class PostgresServer(_Process):
    """Debian's PostgreSQL, a throwaway cluster owned by the ``postgres`` user."""

    name = "postgres"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.bindir = _pg_bindir()
        self.port = free_port()
        self.pgdata = workdir / "pgdata"
        self.sockdir = workdir / "sock"
        self.sockdir.mkdir(exist_ok=True)
        self._as_root = os.geteuid() == 0
        if self._as_root:
            # The cluster runs as 'postgres', which must be able to reach its folder.
            for parent in [workdir, *workdir.parents]:
                if parent == Path(tempfile.gettempdir()):
                    break
                parent.chmod(parent.stat().st_mode | 0o755)
            shutil.chown(workdir, "postgres")
            shutil.chown(self.sockdir, "postgres")
            workdir.chmod(0o755)
        initdb = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            "archwatch",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]
        r = subprocess.run(self._as_user(initdb), capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise ServerStartError(f"initdb failed: {r.stderr[-2000:]}")

    def _as_user(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if self._as_root else cmd

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://archwatch@127.0.0.1:{self.port}/postgres"

    def command(self) -> list[str]:
        return self._as_user(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.pgdata),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-k",
                str(self.sockdir),
                "-c",
                "fsync=off",
            ]
        )

    def ready_port(self) -> int:
        return self.port

    def after_start(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user=archwatch dbname=postgres"
                ):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=archwatch dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://archwatch@127.0.0.1:{self.port}/{name}"
