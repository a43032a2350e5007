"""The gateway and the API append to one audit chain at once, as deployed: separate OS
processes on one state database (SQLite in the shared data directory, or PostgreSQL).

Writers: the API served by uvicorn (``archwatch api``), answering logins and profile
changes from several client threads (each audited by its route); a real gateway process
(``tests/gateway_proc.py``), which audits its start and its stop and writes its heartbeat
meanwhile; and a process appending as the gateway's alerting does, through
``gateway.audit.append``. Afterwards the chain verifies and holds exactly every entry."""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from api import accounts
from api.models import Role
from gateway import audit
from gateway.net import free_port
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD
from tests.db_helpers import spawn_workers, start, stop, wait_for, wait_for_api
from tests.e2e import write_site

LOGINS = 12
PROFILE_CHANGES = 60
ALERTING_APPENDS = 150
CLIENT_THREADS = 6

ALERTING_WORKER = """
import pathlib, sys, time
from gateway import audit
from gateway.statedb import StateDB
url, n = sys.argv[1], int(sys.argv[2])
ready, go = pathlib.Path(sys.argv[3]), pathlib.Path(sys.argv[4])
db = StateDB(url)
ready.touch()
while not go.exists():
    time.sleep(0.005)
for i in range(n):
    audit.append(db, actor="system:alerting", action="alert.test", target=f"a{i}", detail={"i": i})
db.close()
"""


def child_env(db_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHWATCH_")}
    if db_url is not None:
        env["ARCHWATCH_STATE_DB_URL"] = db_url
    return env


@pytest.fixture
def shared(tmp_path: Path, db_url: str) -> tuple[Path, str | None]:
    """The data directory both processes use, and the state DB URL they are given (None:
    the SQLite file in that data directory, the default)."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if db_url.startswith("sqlite"):
        return data_dir, None
    return data_dir, db_url


@pytest.fixture
def state(shared: tuple[Path, str | None]) -> Iterator[StateDB]:
    data_dir, url = shared
    db = StateDB(url or f"sqlite:///{data_dir / 'state.sqlite'}")
    db.migrate()
    yield db
    db.close()


def test_gateway_and_api_processes_appending_at_once_keep_one_chain(
    tmp_path: Path, shared: tuple[Path, str | None], state: StateDB
) -> None:
    data_dir, url = shared
    env = child_env(url)
    for name in ("zhang", "li"):
        accounts.create_user(
            state, username=name, password=PASSWORD, roles=[Role.SECURITY], now=datetime.now(UTC)
        )
    # A Modbus device nobody answers: the gateway runs, polls and goes on without data.
    site = write_site(
        tmp_path / "site.yaml", modbus_ports=[free_port()], mqtt_devices=0, topic_prefix="x"
    )
    gateway = start(
        [sys.executable, "-m", "tests.gateway_proc", str(site.path), "--data-dir", str(data_dir)],
        env,
        tmp_path / "gateway.log",
    )
    # The gateway first: it creates the data directory's signing key, which the API reads.
    wait_for(lambda: audit.count(state, action="gateway.start") == 1, "the gateway to start")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api_argv = ["api", "--port", str(port), "--data-dir", str(data_dir)]
    api = start(
        [sys.executable, "-m", "gateway.cli", *api_argv],
        env,
        tmp_path / "api.log",
    )
    go, ready = tmp_path / "go", tmp_path / "ready"
    worker_url = url or f"sqlite:///{data_dir / 'state.sqlite'}"
    alerting = spawn_workers(
        ALERTING_WORKER, [[worker_url, str(ALERTING_APPENDS), str(ready), str(go)]]
    )[0]
    try:
        wait_for_api(base)
        wait_for(ready.exists, "the alerting writer to start")

        def log_in(k: int) -> str:
            name = ("zhang", "li")[k % 2]
            form = {"username": name, "password": PASSWORD}
            response = httpx.post(f"{base}/api/v1/login/access-token", data=form, timeout=60)
            assert response.status_code == 200, response.text
            return str(response.json()["access_token"])

        def change_profile(token: str, k: int) -> None:
            response = httpx.patch(
                f"{base}/api/v1/users/me",
                json={"display_name": f"第{k}次"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            assert response.status_code == 200, response.text

        go.touch()
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            tokens = list(pool.map(log_in, range(LOGINS)))
            changes = pool.map(
                change_profile,
                [tokens[k % LOGINS] for k in range(PROFILE_CHANGES)],
                range(PROFILE_CHANGES),
            )
            stop(gateway)  # its gateway.stop entry lands in the middle of the storm
            list(changes)
        _out, err = alerting.communicate(timeout=240)
        assert alerting.returncode == 0, err
    finally:
        for proc in (gateway, api):
            stop(proc)
        if alerting.poll() is None:
            alerting.kill()
    assert gateway.returncode == 0, (tmp_path / "gateway.log").read_text()

    expected = {
        "login": LOGINS,
        "user.update": PROFILE_CHANGES,
        "alert.test": ALERTING_APPENDS,
        "gateway.start": 1,
        "gateway.stop": 1,
    }
    total = sum(expected.values())
    everything = audit.entries(state, limit=1000, newest_first=False)
    assert Counter(e.action for e in everything) == expected
    assert [e.seq for e in everything] == list(range(1, total + 1))
    alerting_order = [e.detail["i"] for e in everything if e.action == "alert.test"]
    assert alerting_order == list(range(ALERTING_APPENDS))  # in the writer's own order
    assert {e.actor for e in everything if e.action == "user.update"} == {"user:zhang", "user:li"}
    result = audit.verify(state)
    assert result.ok and result.entries == total
