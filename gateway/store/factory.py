"""Pick the store from the settings: InfluxDB when a URL is set, else the embedded file."""

from __future__ import annotations

from gateway.datadir import DataDir
from gateway.settings import Settings
from gateway.store.base import Store
from gateway.store.embedded import EmbeddedStore
from gateway.store.influx import InfluxStore


def make_store(settings: Settings, data_dir: DataDir) -> Store:
    """The configured Store. Opens no connection: the first call does.

    The InfluxDB database (1.8) or bucket (2.x/3.x) must already exist; a write to a
    missing one raises a retryable StoreError that says to create it.
    """
    if settings.influx_url:
        token = settings.influx_token.get_secret_value() if settings.influx_token else None
        return InfluxStore(
            settings.influx_url,
            token=token,
            org=settings.influx_org,
            bucket=settings.influx_bucket,
            database=settings.database,
        )
    return EmbeddedStore(data_dir.embedded_store)
