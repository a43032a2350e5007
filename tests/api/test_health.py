"""``/healthz``, ``/readyz`` against real and unreachable dependencies, ``/metrics``."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.models import Role
from gateway.clock import ManualClock
from gateway.settings import Settings
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD, add_user, api_key
from tests.servers import InfluxServer
from tests.test_acklink import make_world


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port that accepts connections (stands in for a reachable broker)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def client_for(tmp_path: Path, state: StateDB, **overrides: object) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", **overrides)  # type: ignore[arg-type]
    return TestClient(create_app(settings, db=state, clock=ManualClock()))


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_ready_with_the_embedded_store(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"state_db": "ok", "store": "ok"}


def test_ready_with_a_real_influxdb_and_a_listening_broker(
    tmp_path: Path, state: StateDB, influx: InfluxServer, listener: int
) -> None:
    with client_for(
        tmp_path, state, influx_url=influx.url, broker_url=f"mqtt://127.0.0.1:{listener}"
    ) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["failed"] == []


@pytest.mark.parametrize(
    ("what", "failed"),
    [("influx", ["store"]), ("broker", ["broker"]), ("both", ["broker", "store"])],
)
def test_not_ready_names_what_is_down(
    tmp_path: Path, state: StateDB, what: str, failed: list[str]
) -> None:
    overrides: dict[str, object] = {}
    if what in ("influx", "both"):
        overrides["influx_url"] = f"http://127.0.0.1:{closed_port()}"
    if what in ("broker", "both"):
        overrides["broker_url"] = f"mqtt://127.0.0.1:{closed_port()}"
    with client_for(tmp_path, state, **overrides) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == failed
    assert body["checks"]["state_db"] == "ok"


def test_not_ready_when_the_state_database_is_gone(tmp_path: Path, state: StateDB) -> None:
    broken = StateDB(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'state.sqlite'}")
    (tmp_path / "missing").write_text("a file where a folder should be")
    with client_for(tmp_path, broken) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["state_db"]


def sample(text: str, name: str, **labels: str) -> float:
    rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(f"{name}{{{rendered}}}" if labels else name) + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


async def test_metrics_show_logins_and_alerts_by_state(client: TestClient, state: StateDB) -> None:
    world = make_world(state, ManualClock())
    await world.fire("a101")
    await world.fire("a102")
    add_user(state, Role.INSPECTOR, username="insp")
    url = "/api/v1/login/access-token"
    client.post(url, data={"username": "insp", "password": "wrong wrong wrong"})
    token = client.post(url, data={"username": "insp", "password": PASSWORD}).json()
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert sample(text, "archwatch_alerts", state="firing") == 2
    assert sample(text, "archwatch_alerts", state="resolved") == 0
    assert sample(text, "archwatch_api_logins", result="ok") == 1
    assert sample(text, "archwatch_api_logins", result="failed") == 1
    assert "# TYPE archwatch_alerts gauge" in text


def test_metrics_refuse_a_drill_coordinator_key(client: TestClient, state: StateDB) -> None:
    _, headers = api_key(state, Role.DRILL_COORDINATOR)
    assert client.get("/metrics", headers=headers).status_code == 403
