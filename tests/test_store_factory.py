"""make_store: InfluxDB when a URL is configured, the embedded file otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.datadir import DataDir
from gateway.settings import Settings
from gateway.store.base import ReadingFilter
from gateway.store.embedded import EmbeddedStore
from gateway.store.factory import make_store
from gateway.store.influx import InfluxStore
from tests.test_store import T0, rd
from tests.test_store_influx import RecordingServer


@pytest.fixture
async def recorder() -> AsyncIterator[RecordingServer]:
    server = RecordingServer()
    await server.start()
    yield server
    await server.stop()


async def test_without_an_influx_url_the_store_is_the_data_dir_file(data_dir: Path) -> None:
    dirs = DataDir(data_dir)
    store = make_store(Settings(data_dir=data_dir), dirs)
    assert isinstance(store, EmbeddedStore)
    try:
        await store.write_readings([rd("t1", T0, 21.0)])
        assert await store.count(ReadingFilter(), T0, T0 + 1) == 1
    finally:
        await store.close()
    assert dirs.embedded_store.is_file()


@pytest.mark.parametrize(
    ("database", "bucket", "expected_db"),
    [(None, "archwatch", "archwatch"), (None, "site1/autogen", "site1"), ("legacy", "b", "legacy")],
)
async def test_with_an_influx_url_the_store_uses_the_settings_token_bucket_and_database(
    recorder: RecordingServer,
    data_dir: Path,
    database: str | None,
    bucket: str,
    expected_db: str,
) -> None:
    settings = Settings(
        data_dir=data_dir,
        influx_url=recorder.url,
        influx_token=SecretStr("tok-from-settings"),
        influx_bucket=bucket,
        influx_database=database,
    )
    store = make_store(settings, DataDir(data_dir))
    assert isinstance(store, InfluxStore)
    recorder.answers += [(204, {}, b""), (200, {}, b'{"results":[{"statement_id":0}]}')]
    try:
        await store.write_readings([rd("t1", T0, 21.0)])
        assert await store.count(ReadingFilter(), T0, T0 + 1) == 0
    finally:
        await store.close()
    write, query = recorder.requests
    assert write.query["bucket"] == [bucket]
    assert query.query["db"] == [expected_db]
    assert {write.headers["authorization"], query.headers["authorization"]} == {
        "Token tok-from-settings"
    }
    assert "tok-from-settings" not in repr(store)
    assert not (data_dir / "store.sqlite").exists()
