"""``archwatch demo`` serves the API and the console while it runs, and makes the first admin
of its data directory once: the password printed then works, and a second run keeps that
account without printing or resetting anything."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from api import accounts
from api.models import Role
from gateway import audit
from gateway.statedb import StateDB
from tests.db_helpers import REPO

LOGIN = "/api/v1/login/access-token"
ADDRESS = re.compile(r"console on (http://127\.0\.0\.1:\d+)/console and API on \1/api/v1/")
CREATED = re.compile(r"created user admin with password (\S+) \(shown once")
KEPT = "an admin account already exists in this data directory: kept"
WAIT_S = 120.0  # only turns a hang into a failure; the demo needs a few seconds
RUN_S = 30
"""``--for`` of each run: the requests below are made only after the demo printed its address
and take a second or two; 30 s leaves a slow CI machine ample room, and nothing is timed."""


@dataclass
class Demo:
    """A running ``archwatch demo`` whose stderr is read line by line as it comes."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    stderr: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.put(line)
            self.lines.put("")  # end of stream

        threading.Thread(target=pump, daemon=True).start()

    def expect(self, pattern: re.Pattern[str] | str) -> re.Match[str] | str:
        """The first stderr line (from here on) matching ``pattern``."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line == "":
                raise AssertionError("the demo ended first:\n" + "".join(self.stderr))
            self.stderr.append(line)
            if isinstance(pattern, str):
                if pattern in line:
                    return line
            elif found := pattern.search(line):
                return found
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "".join(self.stderr))

    def finish(self) -> tuple[dict[str, object], str]:
        """Wait for the end; the JSON summary and everything written to stderr."""
        stdout, _ = self.proc.communicate(timeout=WAIT_S)
        while True:
            line = self.lines.get(timeout=WAIT_S)
            if line == "":
                break
            self.stderr.append(line)
        assert self.proc.returncode == 0, "".join(self.stderr)
        summary = json.loads(stdout.strip().splitlines()[-1])
        assert isinstance(summary, dict)
        return summary, "".join(self.stderr)


def start_demo(data_dir: Path, seconds: int) -> Demo:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHWATCH_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "demo",
            "--for",
            str(seconds),
            "--data-dir",
            str(data_dir),
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Demo(proc)


def login(base: str, password: str) -> httpx.Response:
    return httpx.post(f"{base}{LOGIN}", data={"username": "admin", "password": password})


def test_the_demo_serves_the_api_and_makes_one_admin_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    first = start_demo(data_dir, RUN_S)
    try:
        found = first.expect(ADDRESS)
        assert isinstance(found, re.Match)
        base = found.group(1)
        created = first.expect(CREATED)
        assert isinstance(created, re.Match)
        password = created.group(1)

        # While the demo runs: the API answers, and the printed password logs in as admin.
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        response = login(base, password)
        assert response.status_code == 200, response.text
        bearer = {"Authorization": f"Bearer {response.json()['access_token']}"}
        me = httpx.get(f"{base}/api/v1/users/me", headers=bearer).json()
        assert (me["kind"], me["name"], me["roles"]) == ("user", "admin", ["admin"])
        metrics = httpx.get(f"{base}/metrics", headers=bearer)
        assert metrics.status_code == 200
        assert 'archwatch_gateway_heartbeat_age_seconds{gateway="hn-archives"}' in metrics.text
        assert login(base, password + "x").status_code == 401
    except BaseException:
        first.proc.kill()  # do not leave a demo running behind a failed assertion
        raise
    summary, stderr = first.finish()
    assert summary["api_url"] == base
    assert summary["admin_created"] is True
    assert summary["readings_lost"] == 0
    assert summary["devices_online"] == summary["devices_total"] == 5
    # Printed once, to the terminal; in no file of the data directory (only its hash).
    assert stderr.count(password) == 1
    assert password not in json.dumps(summary)
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path

    # A second run in the same data directory keeps the account and prints no password.
    second = start_demo(data_dir, RUN_S)
    try:
        found = second.expect(ADDRESS)
        assert isinstance(found, re.Match)
        base2 = found.group(1)
        second.expect(KEPT)
        assert login(base2, password).status_code == 200  # not reset
    except BaseException:
        second.proc.kill()  # do not leave a demo running behind a failed assertion
        raise
    summary2, stderr2 = second.finish()
    assert summary2["admin_created"] is False
    assert "password" not in stderr2.replace(KEPT + " (its password is not shown again)", "")
    assert password not in stderr2

    db = StateDB(f"sqlite:///{data_dir / 'state.sqlite'}")
    try:
        users, total = accounts.list_users(db, limit=10, offset=0)
        assert total == 1 and users[0].username == "admin" and users[0].roles == (Role.ADMIN,)
        created_entries = audit.entries(db, action="user.create")
        assert [(e.actor, e.target) for e in created_entries] == [("system:demo", "user:admin")]
        assert audit.verify(db).ok
    finally:
        db.close()
