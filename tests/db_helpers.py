"""State-database fixtures shared by the test modules that run on SQLite and PostgreSQL.

Also the helpers of the tests that hit one database from several processes at once.

Registered in conftest.py: ``db_url`` is parametrized over both backends (a file in tmp_path,
and a fresh database on the real PostgreSQL), ``db`` is a migrated StateDB on it. A module
that needs something else (an unmigrated database, SQLite only) defines its own ``db``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.statedb import StateDB

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.realserver)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[StateDB]:
    state = StateDB(db_url)
    state.migrate()
    yield state
    state.close()


def spawn_workers(script: str, argvs: list[list[str]]) -> list[subprocess.Popen[str]]:
    """One ``python -c script *argv`` per argv, from the repository root, output captured."""
    return [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a process in the repository, its output (both streams) in ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within a minute."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for_api(base: str) -> None:
    """Wait until an ``archwatch api`` process at ``base`` answers its health check."""

    def api_up() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(api_up, "the API process to answer")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    """Poll for a condition; the generous limit only turns a hang into a clear failure."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
