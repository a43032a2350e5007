"""The acknowledgement page over HTTP (FastAPI TestClient) on a real SQLite state DB, with
the gateway side (an AlertEngine on a ManualClock and the ack queue) driven in the test."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from alerting.ack_models import AckRequestRow
from alerting.model import AlertState
from api.main import create_app
from gateway import audit
from gateway.clock import ManualClock
from gateway.net import free_port
from gateway.settings import Settings
from gateway.statedb import StateDB
from tests.db_helpers import start, stop, wait_for_api
from tests.test_acklink import KEY, PUBLIC, World, make_world, other_code

HOUR = 3600


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def world(state: StateDB) -> World:
    return make_world(state, ManualClock())


@pytest.fixture
def client(tmp_path: Path, state: StateDB, world: World) -> TestClient:
    # The API reads the data directory's key: the same one the gateway signs with.
    (tmp_path / "signing.key").write_text(KEY.hex() + "\n", encoding="ascii")
    app_settings = Settings(data_dir=tmp_path, public_url=PUBLIC, timezone="Asia/Shanghai")
    return TestClient(create_app(app_settings, db=state, clock=world.clock))


def requests_queued(db: StateDB) -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(AckRequestRow)).scalar_one())


def page_nonce(html: str) -> str:
    found = re.search(r'name="page_nonce" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def confirm(client: TestClient, token: str, note: str = "", **headers: str) -> tuple[int, str]:
    """Open the page, then press the button (as a phone's browser does)."""
    page = client.get(f"/ack/{token}")
    if page.status_code != 200:
        return page.status_code, page.text
    form = {"token": token, "page_nonce": page_nonce(page.text), "note": note}
    got = client.post(f"/ack/{token}", data=form, headers=headers)
    return got.status_code, got.text


async def test_opening_the_link_shows_the_alert_and_acknowledges_nothing(
    client: TestClient, world: World
) -> None:
    alert_id = await world.fire("a101")
    token = world.links.signer.sign(alert_id, "keeper")
    page = client.get(f"/ack/{token}")
    assert page.status_code == 200
    html = page.text
    for shown in ("确认告警", "a101", "62", "45–55 %RH", "2026-01-01 08:00", "keeper", "紧急"):
        assert shown in html
    assert '<form method="post"' in html
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    # Link previews and mail scanners: HEAD, GET with bot user agents, repeated.
    assert client.head(f"/ack/{token}").status_code == 200
    for agent in ("Slackbot-LinkExpanding 1.0", "Mozilla/5.0 (compatible; WeChat)", "curl/8"):
        assert client.get(f"/ack/{token}", headers={"User-Agent": agent}).status_code == 200

    assert await world.queue.run_once() == []
    assert await world.state(alert_id) == AlertState.FIRING
    assert requests_queued(world.db) == 0
    assert audit.count(world.db, action="ack_link.used") == 0
    # The link still works after all that fetching.
    status, _ = confirm(client, token)
    assert status == 200


async def test_pressing_the_button_acknowledges_exactly_once(
    client: TestClient, world: World
) -> None:
    alert_id = await world.fire("a101")
    token = world.links.signer.sign(alert_id, "keeper")
    status, html = confirm(client, token, note="已到现场")
    assert status == 200 and "已提交确认" in html
    assert requests_queued(world.db) == 1

    # The gateway's next tick applies it.
    [outcome] = await world.queue.run_once()
    assert outcome.status == "done"
    assert await world.state(alert_id) == AlertState.ACKNOWLEDGED
    [acked] = audit.entries(world.db, action="alert.acknowledged")
    assert acked.actor == "keeper" and acked.target == alert_id
    assert acked.detail["note"] == "已到现场"
    [used] = audit.entries(world.db, action="ack_link.used")
    assert used.actor == "keeper" and used.target == alert_id
    assert token not in used.detail_json

    # The same link again: the replay page, and nothing more is queued.
    again = client.post(f"/ack/{token}", data={"token": token, "page_nonce": "1.x", "note": ""})
    assert again.status_code == 409 and "已使用" in again.text
    assert client.get(f"/ack/{token}").status_code == 409
    assert requests_queued(world.db) == 1
    refused = audit.entries(world.db, action="ack_link.refused")
    assert refused and refused[0].detail["verdict"] == "replayed"


@pytest.mark.parametrize(
    ("make", "status", "text"),
    [
        ("forged", 400, "链接无效"),
        ("expired", 410, "链接已过期"),
        ("unknown", 404, "找不到"),
        ("acknowledged", 409, "已由 guard 确认"),
    ],
)
async def test_refused_links_get_a_clear_page(
    client: TestClient, world: World, make: str, status: int, text: str
) -> None:
    alert_id = await world.fire("a101")
    token = world.links.signer.sign(alert_id, "keeper")
    if make == "forged":
        token = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    if make == "unknown":
        token = world.links.signer.sign("0" * 32, "keeper")
    if make == "acknowledged":
        await world.engine.acknowledge(alert_id, "guard", "")
    page = client.get(f"/ack/{token}")
    nonce = re.search(r'name="page_nonce" value="([^"]+)"', page.text)
    if make == "expired":
        assert page.status_code == 200 and nonce  # opened in time, pressed a day later
        world.clock.advance(24 * HOUR + 5)
        page = client.get(f"/ack/{token}")
    assert page.status_code == status and text in page.text
    assert "<form" not in page.text
    form = {"token": token, "page_nonce": nonce.group(1) if nonce else ""}
    posted = client.post(f"/ack/{token}", data=form)
    assert posted.status_code == status and text in posted.text
    assert requests_queued(world.db) == 0


async def test_cross_site_and_stale_form_posts_are_refused(
    client: TestClient, world: World
) -> None:
    alert_id = await world.fire("a101")
    token = world.links.signer.sign(alert_id, "keeper")
    nonce = page_nonce(client.get(f"/ack/{token}").text)
    form = {"token": token, "page_nonce": nonce}
    for headers in (
        {"Origin": "https://evil.example.com"},
        {"Origin": "null"},
        {"Referer": "https://evil.example.com/page"},
    ):
        assert client.post(f"/ack/{token}", data=form, headers=headers).status_code == 403
    # No page nonce, a nonce for another link, or one from long ago: not from our page.
    other = world.links.signer.sign(alert_id, "guard")
    other_nonce = page_nonce(client.get(f"/ack/{other}").text)
    for bad in ({"token": token}, {"token": token, "page_nonce": other_nonce}):
        assert client.post(f"/ack/{token}", data=bad).status_code == 400
    assert client.post(f"/ack/{token}", json=form).status_code == 400  # not a form post
    world.clock.advance(3 * HOUR)
    assert client.post(f"/ack/{token}", data=form).status_code == 400
    assert requests_queued(world.db) == 0

    # From our own origin, with a fresh page: accepted.
    fresh = {"token": token, "page_nonce": page_nonce(client.get(f"/ack/{token}").text)}
    ok = client.post(f"/ack/{token}", data=fresh, headers={"Origin": PUBLIC})
    assert ok.status_code == 200
    assert requests_queued(world.db) == 1


async def test_sms_recipients_acknowledge_with_their_code(client: TestClient, world: World) -> None:
    alert_id = await world.fire("a101")
    code = world.links.issue_code(alert_id, "guard")
    page = client.get("/ack/code")
    assert page.status_code == 200 and "确认码" in page.text
    wrong = client.post("/ack/code", data={"contact": "keeper", "code": code})
    assert wrong.status_code == 400 and "不正确" in wrong.text
    done = client.post("/ack/code", data={"contact": "guard", "code": code, "note": "收到"})
    assert done.status_code == 200 and "a101" in done.text
    again = client.post("/ack/code", data={"contact": "guard", "code": code})
    assert again.status_code == 409
    [outcome] = await world.queue.run_once()
    assert outcome.status == "done"
    assert await world.state(alert_id) == AlertState.ACKNOWLEDGED
    [acked] = audit.entries(world.db, action="alert.acknowledged")
    assert acked.actor == "guard" and acked.detail["note"] == "收到"


async def test_the_code_alone_is_enough_on_the_code_page(client: TestClient, world: World) -> None:
    alert_id = await world.fire("a101")
    code = world.links.issue_code(alert_id, "guard")
    page = client.get("/ack/code")
    assert page.status_code == 200 and 'name="contact"' not in page.text  # not asked for
    done = client.post("/ack/code", data={"code": code.lower(), "note": "收到"})
    assert done.status_code == 200 and "guard" in done.text and "a101" in done.text
    assert client.post("/ack/code", data={"code": code}).status_code == 409
    [outcome] = await world.queue.run_once()
    assert outcome.status == "done" and outcome.request.user == "guard"
    [acked] = audit.entries(world.db, action="alert.acknowledged")
    assert acked.actor == "guard" and acked.detail["via"] == "code"


async def test_too_many_wrong_codes_get_429_for_that_client_only(
    client: TestClient, world: World, tmp_path: Path
) -> None:
    alert_id = await world.fire("a101")
    code = world.links.issue_code(alert_id, "guard")
    for i in range(1, 6):
        wrong = client.post("/ack/code", data={"code": other_code(code, i)})
        assert wrong.status_code == 400 and "不正确" in wrong.text
    blocked = client.post("/ack/code", data={"code": code})
    assert blocked.status_code == 429 and "链接" in blocked.text
    assert blocked.headers["Retry-After"] == "900"
    assert requests_queued(world.db) == 0
    # Another phone (another address) is not held up.
    other = TestClient(client.app, client=("203.0.113.7", 50000))
    done = other.post("/ack/code", data={"code": code})
    assert done.status_code == 200 and "guard" in done.text


@pytest.mark.realserver
@pytest.mark.parametrize(
    ("trusted", "next_client_status"),
    [
        # The proxy (here: the test, on loopback) is trusted: each forwarded client counts.
        ("127.0.0.1", 400),
        # Not trusted: everyone is the proxy's address and shares its limit.
        ("192.0.2.1", 429),
    ],
)
def test_behind_a_proxy_wrong_codes_count_per_forwarded_client(
    tmp_path: Path, trusted: str, next_client_status: int
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ARCHWATCH_") and k != "FORWARDED_ALLOW_IPS"
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = ["api", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    argv += ["--forwarded-allow-ips", trusted]
    api = start([sys.executable, "-m", "gateway.cli", *argv], env, tmp_path / "api.log")
    try:
        wait_for_api(base)

        def post(client_address: str) -> int:
            headers = {"X-Forwarded-For": client_address}
            got = httpx.post(f"{base}/ack/code", data={"code": "ZZZZZZ"}, headers=headers)
            return got.status_code

        assert [post("198.51.100.1") for _ in range(5)] == [400] * 5
        assert post("198.51.100.1") == 429
        assert post("198.51.100.2") == next_client_status
    finally:
        stop(api)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=st.text(max_size=600), body=st.binary(max_size=300))
def test_hostile_input_never_gets_a_5xx(client: TestClient, token: str, body: bytes) -> None:
    path = f"/ack/{quote(token, safe='')}"
    form = {"content-type": "application/x-www-form-urlencoded"}
    for response in (
        client.get(path),
        client.head(path),
        client.post(path, content=body, headers=form),
        client.post(path, data={"token": token, "page_nonce": token}),
        client.post("/ack/code", data={"contact": token[:80], "code": token[:10]}),
        client.post("/ack/code", content=body, headers=form),
    ):
        assert response.status_code < 500, (response.status_code, response.text)
