"""The real servers start and answer: if this fails, nothing else can be trusted."""

from __future__ import annotations

import httpx
import paho.mqtt.client as mqtt
import psycopg

from tests.servers import InfluxServer, MosquittoServer, PostgresServer


def test_influx_answers_ping_and_query(influx: InfluxServer) -> None:
    assert httpx.get(f"{influx.url}/ping").status_code == 204
    assert "results" in influx.query("SHOW MEASUREMENTS")


def test_mosquitto_accepts_a_connection(mosquitto: MosquittoServer) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    assert c.connect("127.0.0.1", mosquitto.port) == mqtt.MQTT_ERR_SUCCESS
    c.disconnect()


def test_postgres_accepts_a_connection(postgres_server: PostgresServer) -> None:
    with psycopg.connect(
        f"host=127.0.0.1 port={postgres_server.port} user=archwatch dbname=postgres"
    ) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
