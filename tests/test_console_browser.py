"""The console in a real browser: Debian's Chromium (``/usr/bin/chromium``) driven by
Playwright, against the API served by uvicorn on a loopback port.

The gateway's side runs in a background thread as the gateway runs it: a real
:class:`~alerting.engine.AlertEngine` on the same state database fires an alert, and
:meth:`~alerting.ackqueue.AckQueue.run_once` is called in a loop (the gateway does so on
every alerting tick). In Chromium: open the alert list (401: the login form), log in, see
the firing alert, acknowledge it with a note, and reload until it shows as acknowledged.

Chromium comes from Debian's package (``scripts/test.sh`` installs it); Playwright's own
browser download is never used. A missing Chromium fails this test, it is never skipped.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Page, sync_playwright

from alerting.ackqueue import AckQueue
from alerting.dispatch import DispatchConfig
from alerting.engine import AlertEngine
from alerting.model import Condition, Severity
from api import accounts
from api.main import create_app
from api.models import Role
from gateway import audit
from gateway.clock import SystemClock
from gateway.settings import Settings
from gateway.site import load_site
from gateway.statedb import StateDB
from tests.servers import free_port
from tests.test_acklink import Events, Sink

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
DEMO_SITE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"
PASSWORD = "correct horse battery"
NOTE = "已到现场，空调已重启"
WAIT_S = 60.0  # an upper bound for a slow machine; the test passes as soon as it is true


def _serve(server: uvicorn.Server) -> None:
    asyncio.run(server.serve())


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDB]:
    db = StateDB(f"sqlite:///{tmp_path / 'state.sqlite'}")
    db.migrate()
    yield db
    db.close()


@pytest.fixture
def base_url(tmp_path: Path, state: StateDB) -> Iterator[str]:
    """The API (and console) served by uvicorn on a free loopback port."""
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data",
        public_url=f"http://127.0.0.1:{port}",
        timezone="Asia/Shanghai",
    )
    app = create_app(settings, db=state, site=load_site(DEMO_SITE))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=_serve, args=(server,), name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
    assert not thread.is_alive(), "uvicorn did not stop"


@dataclass
class Gateway:
    """The gateway's alerting side in a thread of its own: fire one alert, then apply the
    queued acknowledgements on every tick until stopped."""

    db: StateDB
    fired: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    alert_id: str = ""
    applied: list[str] = field(default_factory=list)
    error: BaseException | None = None

    async def _run(self) -> None:
        clock = SystemClock()
        engine = AlertEngine(
            self.db, Sink(), Events(), clock, dispatch=DispatchConfig(group_wait_s=0)
        )
        condition = Condition(
            rule_id="r101-smoke",
            rule_kind="smoke",
            severity=Severity.CRITICAL,
            labels={"site": "hn-archives", "building": "main", "room": "r101"},
            active=True,
            at_ns=clock.now_ns(),
            value=1.0,
            summary="101 纸质档案库 感烟探测器报警",
            limit="0",
        )
        await engine.process([condition])
        [view] = await engine.alerts()
        self.alert_id = view.alert.id
        self.fired.set()
        queue = AckQueue(self.db, engine)
        while not self.stop.is_set():
            for outcome in await queue.run_once():
                self.applied.append(outcome.status)
            await asyncio.sleep(0.2)  # the gateway's tick

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
            self.fired.set()


@pytest.fixture
def gateway(state: StateDB) -> Iterator[Gateway]:
    side = Gateway(state)
    thread = threading.Thread(target=side.run, name="gateway", daemon=True)
    thread.start()
    assert side.fired.wait(WAIT_S), "the alert engine did not fire the alert"
    assert side.error is None, f"the gateway side failed: {side.error!r}"
    yield side
    side.stop.set()
    thread.join(timeout=30)
    assert side.error is None, f"the gateway side failed: {side.error!r}"


def card_state(page: Page, alert_id: str) -> str | None:
    card = page.locator(f'[data-alert="{alert_id}"]')
    return card.get_attribute("data-state") if card.count() else None


def test_log_in_see_a_firing_alert_acknowledge_it_and_see_it_acknowledged(
    state: StateDB, base_url: str, gateway: Gateway
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium with "
            "`apt-get install -y chromium` (scripts/test.sh does this)"
        )
    accounts.create_user(
        state,
        username="zhang.wei",
        display_name="张伟",
        password=PASSWORD,
        roles=[Role.KEEPER],
        buildings=["main"],
        now=datetime.now(UTC),
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            # A phone-sized window: the console is used from phones.
            context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
            page = context.new_page()

            response = page.goto(f"{base_url}/console/alerts")
            assert response is not None and response.status == 401
            assert page.locator("form#login").is_visible()

            page.fill("#username", "zhang.wei")
            page.fill("#password", PASSWORD)
            with page.expect_navigation():
                page.click("form#login button[type=submit]")
            assert page.url == f"{base_url}/console/alerts"
            assert "张伟" in page.locator("nav").inner_text()

            alert_id = gateway.alert_id
            card = page.locator(f'[data-alert="{alert_id}"]')
            assert card.get_attribute("data-state") == "firing"
            assert "感烟探测器报警" in card.inner_text()
            assert "告警中" in card.inner_text()

            card.locator("form.ack input[name=note]").fill(NOTE)
            with page.expect_navigation():
                card.locator("form.ack button[type=submit]").click()
            assert "已提交确认" in page.locator(".flash").inner_text()

            # The gateway applies the request on one of its next ticks: reload until shown.
            deadline = time.monotonic() + WAIT_S
            while card_state(page, alert_id) != "acknowledged":
                assert gateway.error is None, f"the gateway side failed: {gateway.error!r}"
                assert time.monotonic() < deadline, (
                    f"not shown as acknowledged; gateway applied {gateway.applied}"
                )
                page.wait_for_timeout(200)
                page.reload()
            card = page.locator(f'[data-alert="{alert_id}"]')
            shown = card.inner_text()
            assert "已确认" in shown and "zhang.wei" in shown and NOTE in shown
            assert card.locator("form.ack").count() == 0  # nothing left to acknowledge
        finally:
            browser.close()

    assert gateway.applied == ["done"]
    [requested] = audit.entries(state, action="alert.ack_requested")
    assert requested.actor == "user:zhang.wei" and requested.detail["via"] == "console"
    [acked] = audit.entries(state, action="alert.acknowledged")
    assert acked.actor == "user:zhang.wei" and acked.target == gateway.alert_id
    assert acked.detail["note"] == NOTE
