"""The gateway's heartbeat and the API's /metrics: what Prometheus scrapes from the API is
what the gateway counted, with its age, beside the API's counters and the state database's
gauges; the exposition parses and names each family once."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from alerting.outbox import NewMessage, Outbox
from api.main import create_app
from api.models import Role
from collectors.modbus_profile import ProfileLibrary
from gateway import heartbeat
from gateway.app import Gateway
from gateway.clock import ManualClock, SystemClock
from gateway.heartbeat import HeartbeatWriter
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.simulation import ModbusDeviceSimulator
from gateway.site import load_site
from gateway.statedb import StateDB
from tests.api.conftest import api_key
from tests.e2e import TH_PROFILE, wait_for
from tests.test_acklink import make_world

S = 1_000_000_000


# --- checking an exposition -----------------------------------------------------------------

_LINE = re.compile(
    r"^(?:# HELP (?P<help>\S+) .*"
    r"|# TYPE (?P<type>\S+) (?:counter|gauge|untyped)"
    r'|(?P<sample>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?:[a-zA-Z_]\w*="(?:[^"\\]|\\.)*",?)*\})? \S+)$'
)


def check_exposition(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Fail unless ``text`` is strict Prometheus text: every line well-formed, each family's
    HELP and TYPE once and before its samples, its samples together. Also parsed with
    prometheus_client. Returns samples by family name and sorted labels."""
    assert text.endswith("\n")
    helped: set[str] = set()
    typed: set[str] = set()
    finished: set[str] = set()
    current: str | None = None
    for line in text.splitlines():
        found = _LINE.match(line)
        assert found, f"not Prometheus text: {line!r}"
        name = found.group("help") or found.group("type") or found.group("sample")
        if name != current:
            assert name not in finished, f"family {name} appears twice"
            if current is not None:
                finished.add(current)
            current = name
        if found.group("help"):
            assert name not in helped and name not in typed, f"HELP of {name} again or late"
            helped.add(name)
        elif found.group("type"):
            assert name not in typed, f"TYPE of {name} twice"
            typed.add(name)
        else:
            assert name in typed, f"sample of {name} before its TYPE"
    parsed: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.name not in parsed, f"family {family.name} parsed twice"
        parsed[family.name] = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
    return parsed


def value(text: str, name: str, **labels: str) -> float:
    """The one sample ``name{labels}`` (labels exactly as given) in the exposition."""
    rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = "^" + re.escape(f"{name}{{{rendered}}}" if labels else name) + r" (\S+)$"
    found = re.findall(pattern, text, re.MULTILINE)
    assert len(found) == 1, f"{name}{labels} found {len(found)} times in:\n{text}"
    return float(found[0])


# --- the snapshot format ----------------------------------------------------------------------


def gateway_metrics(received: float) -> Metrics:
    metrics = Metrics()
    metrics.describe("readings_received", "counter", "Readings handed in by collectors")
    metrics.describe("readings_rejected", "counter", "Readings refused, by reason")
    metrics.describe("spool_depth", "gauge", "Readings waiting in the spool")
    metrics.inc("readings_received", received)
    metrics.inc("readings_rejected", 3, reason="out_of_range")
    metrics.inc("readings_rejected", 2, reason='odd "quoted" \\ reason')
    metrics.set("spool_depth", 17)
    return metrics


def test_a_snapshot_keeps_counters_exact_and_reads_back() -> None:
    # Metrics.render_prometheus prints 1.23457e+09 for this; a rate over it would be steps.
    text = heartbeat.snapshot(gateway_metrics(1_234_567_891))
    assert "archwatch_readings_received 1234567891\n" in text
    families = {f.name: f for f in heartbeat.parse(text)}
    received = families["archwatch_readings_received"]
    assert (received.kind, received.help) == ("counter", "Readings handed in by collectors")
    assert received.samples == {(): 1_234_567_891.0}
    assert families["archwatch_readings_rejected"].samples == {
        (("reason", "out_of_range"),): 3.0,
        (("reason", 'odd "quoted" \\ reason'),): 2.0,
    }
    assert families["archwatch_spool_depth"].samples == {(): 17.0}
    parsed = check_exposition(text)
    assert parsed["archwatch_readings_received"] == {(): 1_234_567_891.0}


@pytest.mark.parametrize(
    "bad",
    ["archwatch_x{a=b} 1", "archwatch_x one", "# TYPE archwatch_x thermometer", "{} 1"],
)
def test_a_malformed_snapshot_is_refused_naming_the_line(bad: str) -> None:
    with pytest.raises(heartbeat.FormatError, match="line 2"):
        heartbeat.parse("# HELP archwatch_x fine\n" + bad + "\n")


# --- writing and reading the heartbeat ------------------------------------------------------


async def test_the_heartbeat_is_written_on_the_gateway_clock_and_replaced(db: StateDB) -> None:
    clock = ManualClock()
    metrics = gateway_metrics(10)
    collected: list[int] = []

    async def collect() -> None:
        collected.append(1)
        metrics.set("spool_depth", 5 * len(collected))

    writer = HeartbeatWriter(db, "hn-archives", metrics, clock, collect=collect)
    assert await writer.beat()
    [beat] = heartbeat.read_all(db)
    assert (beat.name, beat.updated_at_ns) == ("hn-archives", clock.now_ns())
    assert "archwatch_spool_depth 5\n" in beat.metrics  # collect() ran first

    clock.advance(7)
    metrics.inc("readings_received", 5)
    assert await writer.beat()
    [beat] = heartbeat.read_all(db)  # one row per gateway, replaced
    assert beat.updated_at_ns == clock.now_ns()
    assert "archwatch_readings_received 15\n" in beat.metrics
    assert "archwatch_spool_depth 10\n" in beat.metrics
    clock.advance(42.5)
    assert beat.age_s(clock.now_ns()) == 42.5


async def test_a_failing_heartbeat_is_logged_once_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")  # not migrated: no table yet
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            db.migrate()  # the database comes back
        if len(sleeps) == 4:
            raise asyncio.CancelledError

    writer = HeartbeatWriter(
        db, "gw", gateway_metrics(1), ManualClock(), interval_s=2.5, sleep=sleep
    )
    with (
        caplog.at_level(logging.INFO, logger="gateway.heartbeat"),
        pytest.raises(asyncio.CancelledError),
    ):
        await writer.run()
    db.close()
    assert sleeps == [2.5] * 4
    # Only the heartbeat's own lines: the migration logs too, on the root logger's level.
    own = [r for r in caplog.records if r.name == "gateway.heartbeat"]
    errors = [r for r in own if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "heartbeat not written" in errors[0].getMessage()
    assert [r.getMessage() for r in own if r.levelno == logging.INFO] == [
        "gateway heartbeat written again"
    ]
    assert writer.written == 1


# --- /metrics and /readyz ---------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    db.migrate()
    yield db
    db.close()


def api_client(tmp_path: Path, state: StateDB, clock: ManualClock | SystemClock) -> TestClient:
    return TestClient(create_app(Settings(data_dir=tmp_path / "data"), db=state, clock=clock))


async def test_metrics_merge_two_gateways_the_api_and_the_state_database(
    tmp_path: Path, state: StateDB
) -> None:
    clock = ManualClock()
    heartbeat.write(state, "site-a", heartbeat.snapshot(gateway_metrics(100)), clock.now_ns())
    clock.advance(30)
    heartbeat.write(state, "site-b", heartbeat.snapshot(gateway_metrics(7)), clock.now_ns())
    clock.advance(12)
    world = make_world(state, clock)
    await world.fire("a101")
    outbox = Outbox(state, clock)
    outbox.insert(
        [NewMessage("keeper", "s", "b", ("x",), "firing", "critical", f"k{i}") for i in range(3)]
    )
    first, second, _ = outbox.all()
    outbox.mark_failed(first.id, error="every URL refused")
    outbox.record_attempt(second.id, url_index=0, attempt=1, due_at_ns=0, error="timeout")
    _, headers = api_key(state, Role.INSPECTOR)

    with api_client(tmp_path, state, clock) as client:
        client.post("/api/v1/login/access-token", data={"username": "x", "password": "y" * 9})
        response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    text = response.text
    families = check_exposition(text)
    for gateway, received, age in (("site-a", 100, 42), ("site-b", 7, 12)):
        assert value(text, "archwatch_readings_received", gateway=gateway) == received
        assert (
            value(text, "archwatch_readings_rejected", gateway=gateway, reason="out_of_range") == 3
        )
        assert value(text, "archwatch_spool_depth", gateway=gateway) == 17
        assert value(text, "archwatch_gateway_heartbeat_age_seconds", gateway=gateway) == age
    assert value(text, "archwatch_api_logins", result="failed") == 1
    assert value(text, "archwatch_alerts", state="firing") == 1
    assert value(text, "archwatch_notifications_outbox", status="failed") == 1
    assert value(text, "archwatch_notifications_outbox", status="pending") == 2
    assert value(text, "archwatch_notifications_retrying") == 1
    assert text.count("# TYPE archwatch_readings_rejected counter\n") == 1
    assert len(families["archwatch_readings_rejected"]) == 4  # 2 reasons x 2 gateways


def test_metrics_and_readiness_without_any_gateway(tmp_path: Path, state: StateDB) -> None:
    _, headers = api_key(state, Role.ADMIN)
    with api_client(tmp_path, state, ManualClock()) as client:
        metrics = client.get("/metrics", headers=headers)
        ready = client.get("/readyz")
    families = check_exposition(metrics.text)
    assert "archwatch_gateway_heartbeat_age_seconds" in families
    assert families["archwatch_gateway_heartbeat_age_seconds"] == {}
    assert "archwatch_readings_received" not in families
    # No gateway is not a reason for the API to be unready.
    assert ready.status_code == 200
    assert ready.json()["gateway_heartbeat_age_s"] == {}


def test_readiness_shows_a_stale_gateway_but_stays_ready(tmp_path: Path, state: StateDB) -> None:
    clock = ManualClock()
    heartbeat.write(state, "hn-archives", heartbeat.snapshot(Metrics()), clock.now_ns())
    clock.advance(600)
    with api_client(tmp_path, state, clock) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["gateway_heartbeat_age_s"] == {"hn-archives": 600.0}


def test_an_unreadable_heartbeat_leaves_the_rest_of_metrics(tmp_path: Path, state: StateDB) -> None:
    clock = ManualClock()
    heartbeat.write(state, "broken", "archwatch_x{oops 1\n", clock.now_ns())
    _, headers = api_key(state, Role.INSPECTOR)
    with api_client(tmp_path, state, clock) as client:
        response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    text = response.text
    check_exposition(text)
    assert value(text, "archwatch_gateway_heartbeat_age_seconds", gateway="broken") == 0
    assert "oops" not in text


# --- a real gateway in this process -------------------------------------------------------------


@pytest.fixture
async def th_sim() -> AsyncIterator[ModbusDeviceSimulator]:
    sim = ModbusDeviceSimulator(ProfileLibrary.load().get(TH_PROFILE))
    await sim.start()
    yield sim
    await sim.stop()


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_device_site(path: Path, live_port: int) -> Path:
    """A room with a live TH transmitter and one on a port nobody listens on."""

    def device(dev_id: str, port: int) -> dict[str, object]:
        return {
            "id": dev_id,
            "protocol": "modbus_tcp",
            "host": "127.0.0.1",
            "port": port,
            "unit_id": 1,
            "profile": TH_PROFILE,
            "poll_interval": 0.1,
            "timeout": 0.3,
            "retries": 0,
            "offline_after": 2,
            "sensors": [
                {"id": f"{dev_id}-t", "point": "temperature"},
                {"id": f"{dev_id}-h", "point": "humidity"},
            ],
        }

    room = {
        "id": "r1",
        "storage_class": "paper",
        "devices": [device("live", live_port), device("dead", closed_port())],
    }
    doc = {"site": {"id": "hb-site"}, "buildings": [{"id": "b1", "rooms": [room]}]}
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


async def test_metrics_show_a_gateways_final_counters_and_the_age_of_its_snapshot(
    tmp_path: Path, th_sim: ModbusDeviceSimulator
) -> None:
    th_sim.set("temperature", 21.5)
    th_sim.set("humidity", 150.0)  # impossible: rejected as out of range
    settings = Settings(data_dir=tmp_path / "data")
    site = load_site(two_device_site(tmp_path / "site.yaml", th_sim.port))
    gateway = Gateway(settings, site, heartbeat_interval_s=0.2)
    await gateway.start()
    try:

        async def counted() -> bool:
            beats = await asyncio.to_thread(heartbeat.read_all, gateway.statedb)
            if not beats:
                return False
            parsed = {f.name: f.samples for f in heartbeat.parse(beats[0].metrics)}
            return (
                parsed.get("archwatch_readings_stored", {}).get((), 0) >= 3
                and parsed.get("archwatch_devices_offline", {}).get((), 0) == 1
            )

        await wait_for(counted, what="a heartbeat with stored readings and the dead device")
        # No new reading from here on; the spool drains into the store.
        await gateway.stop_collectors()
        assert await gateway.drain(30.0), "the spool did not drain into the embedded store"
    finally:
        await gateway.stop()  # writes the last snapshot: the final counters
    state = StateDB(f"sqlite:///{settings.data_dir / 'state.sqlite'}")
    _, headers = api_key(state, Role.INSPECTOR)
    [last] = heartbeat.read_all(state)
    # The API is another program: its own app, reading the same data directory, here on a
    # clock 7 s after the last snapshot.
    soon = ManualClock(start_ns=last.updated_at_ns + 7 * S)
    with TestClient(create_app(settings, db=state, clock=soon)) as client:
        text = client.get("/metrics", headers=headers).text
    check_exposition(text)
    g = {"gateway": "hb-site"}
    received = value(text, "archwatch_readings_received", **g)
    rejected = value(text, "archwatch_readings_rejected", reason="out_of_range", **g)
    assert received >= 6
    assert rejected >= 1
    # Drained: every accepted reading reached the store and none waits in the spool.
    assert value(text, "archwatch_readings_stored", **g) == received - rejected
    assert value(text, "archwatch_spool_depth", **g) == 0
    assert value(text, "archwatch_devices_offline", **g) == 1
    assert value(text, "archwatch_devices_total", **g) == 2
    assert value(text, "archwatch_alerts", state="firing") == 0
    assert value(text, "archwatch_notifications_outbox", status="failed") == 0
    assert value(text, "archwatch_gateway_heartbeat_age_seconds", **g) == 7

    # The snapshot stays, and its age grows on the API's clock.
    later = ManualClock(start_ns=last.updated_at_ns + 90 * S)
    with TestClient(create_app(settings, db=state, clock=later)) as client:
        stale = client.get("/metrics", headers=headers).text
        ready = client.get("/readyz").json()
    state.close()
    assert value(stale, "archwatch_gateway_heartbeat_age_seconds", **g) == 90
    assert value(stale, "archwatch_readings_stored", **g) == value(
        text, "archwatch_readings_stored", **g
    )
    assert ready["status"] == "ok" and ready["gateway_heartbeat_age_s"] == {"hb-site": 90.0}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n", "HELP of a again"),
        ("# TYPE a gauge\n# TYPE a gauge\na 1\n", "TYPE of a twice"),
        ("a 1\n# TYPE a gauge\n", "before its TYPE"),
        ("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n", "family a appears twice"),
        ("# TYPE a gauge\na{x=1} 1\n", "not Prometheus text"),
    ],
)
def test_the_exposition_check_catches_what_prometheus_would_reject(text: str, why: str) -> None:
    """The control for :func:`check_exposition`: it is not a check that passes anything."""
    with pytest.raises(AssertionError, match=why):
        check_exposition(text)
