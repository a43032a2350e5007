"""Shared fixtures. Real servers are session-scoped; tests that stop one restart it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.store.base import Store
from gateway.store.embedded import EmbeddedStore
from gateway.store.influx import InfluxStore

# The state DB on SQLite and the real PostgreSQL (db_url, db); a module may override them.
from tests.db_helpers import db, db_url  # noqa: F401

# Mosquitto with the production configuration (deploy/mosquitto/).
from tests.fixtures_mosquitto import secure_mosquitto, secure_mosquitto_server  # noqa: F401

# A fresh MQTT client id and topic prefix per test (uid).
from tests.mqtt_helpers import uid  # noqa: F401
from tests.recording_proxy import RecordingProxy
from tests.servers import InfluxServer, MosquittoServer, PostgresServer


@pytest.fixture(scope="session")
def server_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="archwatch-servers-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def influx_server(server_root: Path) -> Iterator[InfluxServer]:
    server = InfluxServer(server_root / "influx")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influx(influx_server: InfluxServer) -> InfluxServer:
    """The real InfluxDB, running, with an empty ``archwatch`` database."""
    influx_server.start()  # a previous test may have stopped it
    influx_server.reset()
    return influx_server


@pytest.fixture(scope="session")
def mosquitto_server(server_root: Path) -> Iterator[MosquittoServer]:
    server = MosquittoServer(server_root / "mosquitto")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mosquitto(mosquitto_server: MosquittoServer) -> MosquittoServer:
    mosquitto_server.start()
    return mosquitto_server


@pytest.fixture(scope="session")
def postgres_server(server_root: Path) -> Iterator[PostgresServer]:
    server = PostgresServer(server_root / "postgres")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database for one test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    return postgres_server.create_database(name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "archwatch-data"
    d.mkdir()
    return d


@pytest.fixture(params=["embedded", "influx"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each store back end in turn: the embedded file and the real InfluxDB."""
    if request.param == "embedded":
        s: Store = EmbeddedStore(tmp_path / "store.sqlite")
    else:
        server: InfluxServer = request.getfixturevalue("influx")
        s = InfluxStore(
            server.url, token=None, org="-", bucket=server.database, database=server.database
        )
    yield s
    await s.close()


@pytest.fixture
def recording(influx: InfluxServer) -> Iterator[RecordingProxy]:
    """A recording proxy in front of the real InfluxDB: every write request, line by line."""
    proxy = RecordingProxy(influx.url).start()
    yield proxy
    proxy.stop()
