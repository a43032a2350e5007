"""A reading store that does not answer: the API says 503 with a fixed message (the store's
own words, with InfluxDB's internal address, go to the operator's log once), and console
pages show an HTML page saying so, not JSON.

The store is a real InfluxStore pointed at a loopback port nobody listens on, with
credentials in its URL, so the failure is the client's real connection error.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from api.models import Role
from gateway.clock import ManualClock
from gateway.settings import Settings
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD, add_user, bearer
from tests.api.rooms_helpers import write_site

SECRET = "s3cret-influx-pass"
FIXED = "the reading store did not answer; try again shortly"


@pytest.fixture
def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: connections to it are refused


@pytest.fixture
def app(tmp_path: Path, state: StateDB, clock: ManualClock, dead_port: int) -> FastAPI:
    settings = Settings(
        data_dir=tmp_path / "data", influx_url=f"http://archwatch:{SECRET}@127.0.0.1:{dead_port}"
    )
    return create_app(settings, db=state, clock=clock, site=write_site(tmp_path))


@pytest.fixture
def console(app: FastAPI, state: StateDB) -> Iterator[TestClient]:
    user = add_user(state, Role.SECURITY)
    with TestClient(app, base_url="http://testserver") as client:
        got = client.post(
            "/console/login",
            data={"username": user.username, "password": PASSWORD, "next": "/console"},
            follow_redirects=False,
        )
        assert got.status_code == 303, got.text
        yield client


def store_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "api.status"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/readings/latest",
        "/api/v1/rooms",
        "/api/v1/rooms/b1/r101",
        "/api/v1/rooms/b1/r101/daily",
        "/api/v1/sensors/r101-t/series",
    ],
)
def test_the_api_answers_503_without_the_stores_words_and_logs_them_once(
    app: FastAPI,
    client: TestClient,
    state: StateDB,
    dead_port: int,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    headers = bearer(app, add_user(state, Role.KEEPER, buildings=("b1",)))
    caplog.set_level(logging.WARNING, logger="api.status")
    response = client.get(path, headers=headers)
    assert response.status_code == 503
    assert response.json() == {"detail": FIXED}
    assert str(dead_port) not in response.text and "InfluxDB" not in response.text
    [logged] = store_logs(caplog)
    assert f"127.0.0.1:{dead_port}" in logged  # the operator can tell what failed
    assert SECRET not in logged


@pytest.mark.parametrize("path", ["/console", "/console/rooms/b1/r101"])
def test_a_console_page_during_a_store_outage_is_an_html_page(
    console: TestClient, dead_port: int, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.WARNING, logger="api.status")
    page = console.get(path)
    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert "暂时无法读取" in page.text and "读数存储暂时没有响应" in page.text
    assert str(dead_port) not in page.text and SECRET not in page.text
    assert len(store_logs(caplog)) == 1
