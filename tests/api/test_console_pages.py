"""The console over HTTP (TestClient): login, 401/403 pages per role, CSRF, and writes that go
through the API's functions (queued, audited with the user). Real SQLite state DB, the demo
site, an AlertEngine on the same DB and a ManualClock shared with the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from alerting.ack_models import AckRequestRow
from alerting.ackqueue import AckQueue
from alerting.dispatch import DispatchConfig
from alerting.engine import AlertEngine
from alerting.model import Condition, Severity
from api import accounts
from api.main import create_app
from api.models import Role
from api.security import CONSOLE_TTL_S
from gateway import audit
from gateway.clock import ManualClock
from gateway.settings import Settings
from gateway.site import load_site
from gateway.statedb import StateDB
from tests.api.conftest import PASSWORD, add_user
from tests.test_acklink import Events, Sink

DEMO_SITE = Path(__file__).resolve().parents[2] / "examples" / "site.yaml"
LOGIN_FORM = '<form method="post" action="/console/login"'
ORIGIN = "http://testserver"


def condition(clock: ManualClock, room: str = "r101") -> Condition:
    return Condition(
        rule_id="r101-smoke",
        rule_kind="smoke",
        severity=Severity.CRITICAL,
        labels={"site": "hn-archives", "building": "main", "room": room},
        active=True,
        at_ns=clock.now_ns(),
        value=1.0,
        summary=f"{room} 感烟探测器报警",
        limit="0",
    )


@dataclass
class Console:
    """The API app with the demo site, and the gateway's side on the same state DB."""

    app: FastAPI
    db: StateDB
    clock: ManualClock
    engine: AlertEngine
    queue: AckQueue

    async def fire(self, room: str = "r101") -> str:
        await self.engine.process([condition(self.clock, room)])
        views = await self.engine.alerts()
        self.clock.advance(1)  # listings cover [start, now): a second later it is in the past
        return next(v.alert.id for v in views if v.alert.labels["room"] == room)

    def client(self, user: accounts.User | None = None) -> TestClient:
        client = TestClient(self.app, base_url=ORIGIN)
        if user is not None:
            login(client, user.username)
        return client


@pytest.fixture
def console(tmp_path: Path, state: StateDB, clock: ManualClock) -> Iterator[Console]:
    settings = Settings(data_dir=tmp_path / "data", timezone="Asia/Shanghai")
    app = create_app(settings, db=state, clock=clock, site=load_site(DEMO_SITE))
    engine = AlertEngine(state, Sink(), Events(), clock, dispatch=DispatchConfig(group_wait_s=0))
    with TestClient(app):  # runs the lifespan once (store opened, closed at the end)
        yield Console(app, state, clock, engine, AckQueue(state, engine))


def login(client: TestClient, username: str, password: str = PASSWORD) -> None:
    got = client.post(
        "/console/login",
        data={"username": username, "password": password, "next": "/console"},
        follow_redirects=False,
    )
    assert got.status_code == 303, got.text


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found, html
    return found.group(1)


def queued(db: StateDB) -> int:
    with db.session() as session:
        return int(session.execute(select(func.count()).select_from(AckRequestRow)).scalar_one())


PAGES = [
    "/console",
    "/console/rooms/main/r101",
    "/console/alerts",
    "/console/silences",
    "/console/audit",
    "/console/audit?action=alert.&verify=true",
]


@pytest.mark.parametrize("path", PAGES)
def test_an_anonymous_page_is_a_401_with_the_login_form(console: Console, path: str) -> None:
    page = console.client().get(path, follow_redirects=False)
    assert page.status_code == 401
    assert "location" not in page.headers
    assert LOGIN_FORM in page.text and "请先登录" in page.text
    # After logging in the form leads back to the page asked for.
    assert f'name="next" value="{path.replace("&", "&amp;")}"' in page.text


async def test_a_form_posted_after_the_session_ended_asks_to_log_in_again(
    console: Console,
) -> None:
    alert_id = await console.fire()
    client = console.client(add_user(console.db, Role.SECURITY))
    token = csrf_of(client.get("/console/alerts").text)
    console.clock.advance(CONSOLE_TTL_S + 60)
    page = client.post(f"/console/alerts/{alert_id}/ack", data={"csrf": token, "note": "x"})
    assert page.status_code == 401 and LOGIN_FORM in page.text
    assert 'name="next" value="/console/alerts"' in page.text
    assert queued(console.db) == 0


# Page -> roles that may open it (admin always may).
ACCESS = {
    "/console": set(Role),
    "/console/rooms/main/r101": set(Role),
    "/console/alerts": set(Role),
    "/console/silences": set(Role),
    "/console/audit": {Role.INSPECTOR, Role.SECURITY},
}


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_sees_its_pages_and_only_its_actions(console: Console, role: Role) -> None:
    alert_id = await console.fire()
    user = add_user(console.db, role, buildings=("main",))
    client = console.client(user)
    for path, allowed in ACCESS.items():
        page = client.get(path)
        expected = 200 if role in allowed or role == Role.ADMIN else 403
        assert page.status_code == expected, (role, path, page.text)
        assert user.username in page.text  # the menu names who is logged in
        if expected == 403:
            assert "无权访问" in page.text and "检查员" in page.text
    listing = client.get("/console/alerts").text
    assert f'data-alert="{alert_id}"' in listing and "r101 感烟探测器报警" in listing
    may = {
        "ack": role in (Role.KEEPER, Role.SECURITY, Role.ADMIN),
        "resolve": role in (Role.SECURITY, Role.ADMIN),
        "silence": role in (Role.SECURITY, Role.ADMIN),
    }
    for action, shown in may.items():
        assert (f'action="/console/alerts/{alert_id}/{action}"' in listing) == shown, action
    assert ('href="/console/audit"' in listing) == (
        role in (Role.INSPECTOR, Role.SECURITY, Role.ADMIN)
    )


async def test_a_keeper_sees_only_the_rooms_and_alerts_of_their_buildings(
    console: Console,
) -> None:
    alert_id = await console.fire()
    client = console.client(add_user(console.db, Role.KEEPER, buildings=("annex",)))
    overview = client.get("/console")
    assert overview.status_code == 200 and 'data-room="main/r101"' not in overview.text
    assert client.get("/console/rooms/main/r101").status_code == 404
    assert alert_id not in client.get("/console/alerts").text
    page = client.post(
        f"/console/alerts/{alert_id}/ack", data={"csrf": csrf_of(overview.text), "note": ""}
    )
    assert page.status_code == 404 and queued(console.db) == 0


async def test_the_overview_colours_rooms_by_status(console: Console) -> None:
    await console.fire("r101")
    client = console.client(add_user(console.db, Role.SECURITY))
    html = client.get("/console").text
    # r101 has an open critical alert; the other rooms have sent nothing (offline).
    assert re.search(r'class="tile s-alarm"[^>]*data-room="main/r101" data-status="alarm"', html)
    assert 'data-room="main/r201" data-status="offline"' in html
    assert "101 纸质档案库" in html and "报警" in html and "离线" in html
    room = client.get("/console/rooms/main/r101")
    assert room.status_code == 200 and "101 温度" in room.text and "未恢复告警" in room.text


def test_login_sets_a_strict_http_only_cookie_and_honours_only_console_targets(
    console: Console,
) -> None:
    user = add_user(console.db, Role.INSPECTOR)
    client = console.client()
    for target, lands in [
        ("/console/audit?action=login", "/console/audit?action=login"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/console/../ack/x", "/console"),
    ]:
        got = client.post(
            "/console/login",
            data={"username": user.username, "password": PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert got.status_code == 303 and got.headers["location"] == lands
        cookie = got.headers["set-cookie"]
        for flag in ("archwatch_session=", "HttpOnly", "SameSite=strict", "Path=/console"):
            assert flag in cookie
    [entry, *_] = audit.entries(console.db, action="login")
    assert entry.actor == f"user:{user.username}" and entry.detail["via"] == "console"


@pytest.mark.parametrize(
    ("public_url", "served_at", "secure"),
    [
        ("http://127.0.0.1:8080", "http://testserver", False),
        # TLS terminated by a proxy: the request here is plain HTTP, the browser's is not.
        ("https://archwatch.example.org", "http://testserver", True),
        ("HTTPS://archwatch.example.org:8443/", "http://testserver", True),
        ("http://127.0.0.1:8080", "https://testserver", True),
    ],
)
def test_the_session_cookie_is_secure_whenever_the_browser_uses_https(
    tmp_path: Path,
    state: StateDB,
    clock: ManualClock,
    public_url: str,
    served_at: str,
    secure: bool,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", public_url=public_url)
    app = create_app(settings, db=state, clock=clock, site=load_site(DEMO_SITE))
    user = add_user(state, Role.INSPECTOR)
    with TestClient(app, base_url=served_at) as client:
        got = client.post(
            "/console/login",
            data={"username": user.username, "password": PASSWORD, "next": "/console"},
            follow_redirects=False,
        )
        assert got.status_code == 303, got.text
        assert ("; secure" in got.headers["set-cookie"].lower()) == secure
        # The cookie is sent back (a Secure one only over https): log out with it.
        token = got.headers["set-cookie"].split(";")[0].split("=", 1)[1]
        client.cookies.set("archwatch_session", token, path="/console")
        page = client.get("/console")
        assert page.status_code == 200, page.text
        out = client.post("/console/logout", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 200 and "已退出登录" in out.text
        cleared = out.headers["set-cookie"]
        assert cleared.startswith("archwatch_session=")
        assert ("; secure" in cleared.lower()) == secure


def test_a_wrong_password_gets_the_form_again_and_counts_towards_the_limit(
    console: Console,
) -> None:
    user = add_user(console.db, Role.KEEPER)
    client = console.client()
    for _ in range(5):
        page = client.post("/console/login", data={"username": user.username, "password": "x"})
        assert page.status_code == 401
        assert "用户名或密码错误" in page.text and LOGIN_FORM in page.text
        assert "archwatch_session" not in page.headers.get("set-cookie", "")
    # The API's limit applies here too: even the right password waits now.
    page = client.post("/console/login", data={"username": user.username, "password": PASSWORD})
    assert page.status_code == 429 and "秒后再试" in page.text
    assert int(page.headers["retry-after"]) > 0


def test_a_login_posted_from_another_site_is_refused(console: Console) -> None:
    user = add_user(console.db, Role.KEEPER)
    got = console.client().post(
        "/console/login",
        data={"username": user.username, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert got.status_code == 403 and "set-cookie" not in got.headers


def test_an_expired_or_disabled_session_gets_the_login_form(console: Console) -> None:
    user = add_user(console.db, Role.KEEPER)
    client = console.client(user)
    assert client.get("/console").status_code == 200
    console.clock.advance(CONSOLE_TTL_S - 1)  # a working shift later: still in
    assert client.get("/console").status_code == 200
    console.clock.advance(2)
    page = client.get("/console")
    assert page.status_code == 401 and "登录已过期" in page.text

    other = add_user(console.db, Role.KEEPER)
    client = console.client(other)
    accounts.update_user(console.db, other.id, disabled=True, now=datetime.now(UTC))
    page = client.get("/console")
    assert page.status_code == 401 and "停用" in page.text


@pytest.mark.parametrize(
    ("csrf", "headers"),
    [
        (None, {}),
        ("0" * 64, {}),
        ("good", {"Origin": "https://evil.example"}),
        ("good", {"Referer": "https://evil.example/page"}),
    ],
    ids=["no token", "wrong token", "other origin", "other referer"],
)
async def test_console_posts_without_the_session_token_or_from_elsewhere_change_nothing(
    console: Console, csrf: str | None, headers: dict[str, str]
) -> None:
    alert_id = await console.fire()
    client = console.client(add_user(console.db, Role.SECURITY))
    token = csrf_of(client.get("/console/alerts").text)
    form = {"note": "x"} if csrf is None else {"csrf": token if csrf == "good" else csrf}
    for path in (f"/console/alerts/{alert_id}/ack", f"/console/alerts/{alert_id}/resolve"):
        page = client.post(path, data=form, headers=headers, follow_redirects=False)
        assert page.status_code == 403, page.text
    assert queued(console.db) == 0
    assert audit.count(console.db, action="alert.ack_requested") == 0


async def test_acknowledging_in_the_console_is_queued_audited_and_shown(console: Console) -> None:
    alert_id = await console.fire()
    user = add_user(console.db, Role.KEEPER, buildings=("main",))
    client = console.client(user)
    listing = client.get("/console/alerts").text
    page = client.post(
        f"/console/alerts/{alert_id}/ack",
        data={"csrf": csrf_of(listing), "note": "已到现场，误报"},
        headers={"Origin": ORIGIN},
    )
    assert page.status_code == 200 and "已提交确认" in page.text
    assert f"{user.username} 已请求确认" in page.text
    [requested] = audit.entries(console.db, action="alert.ack_requested")
    assert requested.actor == f"user:{user.username}" and requested.target == alert_id
    assert requested.detail["via"] == "console" and requested.detail["note"] == "已到现场，误报"
    # A second press while it is queued is refused, not queued twice.
    again = client.post(f"/console/alerts/{alert_id}/ack", data={"csrf": csrf_of(listing)})
    assert again.status_code == 409 and queued(console.db) == 1

    [outcome] = await console.queue.run_once()  # the gateway's next tick
    assert outcome.status == "done"
    shown = client.get("/console/alerts").text
    assert f'data-alert="{alert_id}" data-state="acknowledged"' in shown
    assert f"{user.username}，" in shown and "已到现场，误报" in shown
    [acked] = audit.entries(console.db, action="alert.acknowledged")
    assert acked.actor == f"user:{user.username}"


async def test_a_role_without_the_action_is_refused_even_with_a_crafted_form(
    console: Console,
) -> None:
    alert_id = await console.fire()
    client = console.client(add_user(console.db, Role.KEEPER, buildings=("main",)))
    token = csrf_of(client.get("/console/alerts").text)
    for action in ("resolve", "silence"):
        page = client.post(
            f"/console/alerts/{alert_id}/{action}",
            data={"csrf": token, "hours": "2", "reason": "x"},
        )
        assert page.status_code == 403, (action, page.text)
    assert queued(console.db) == 0
    assert audit.count(console.db, action="silence.created") == 0


async def test_security_silences_a_room_and_ends_the_silence(console: Console) -> None:
    alert_id = await console.fire()
    user = add_user(console.db, Role.SECURITY)
    client = console.client(user)
    token = csrf_of(client.get("/console/alerts").text)
    page = client.post(
        f"/console/alerts/{alert_id}/silence",
        data={"csrf": token, "hours": "4", "reason": "空调检修"},
    )
    assert page.status_code == 200 and "已创建静默" in page.text
    assert "已被静默" in page.text
    [created] = audit.entries(console.db, action="silence.created")
    assert created.actor == f"user:{user.username}"
    assert sorted(created.detail["matchers"]) == ["building=main", "room=r101"]

    silences = client.get("/console/silences").text
    assert "空调检修" in silences and "生效中" in silences
    silence_id = created.target
    page = client.post(f"/console/silences/{silence_id}/expire", data={"csrf": token})
    assert page.status_code == 200 and "静默已结束" in page.text
    assert f'data-silence="{silence_id}"' not in page.text  # active ones only
    [expired] = audit.entries(console.db, action="silence.expired")
    assert expired.actor == f"user:{user.username}" and expired.target == silence_id
    again = client.post(f"/console/silences/{silence_id}/expire", data={"csrf": token})
    assert again.status_code == 409


async def test_a_keeper_sees_only_the_silences_of_their_buildings(console: Console) -> None:
    alert_id = await console.fire()
    client = console.client(add_user(console.db, Role.SECURITY))
    token = csrf_of(client.get("/console/alerts").text)
    made = client.post(
        f"/console/alerts/{alert_id}/silence",
        data={"csrf": token, "hours": "4", "reason": "空调检修"},
    )
    assert made.status_code == 200
    [created] = audit.entries(console.db, action="silence.created")
    shown = f'data-silence="{created.target}"'
    assert shown in client.get("/console/silences").text
    for buildings, sees in [(("main",), True), (("annex",), False)]:
        keeper = console.client(add_user(console.db, Role.KEEPER, buildings=buildings))
        page = keeper.get("/console/silences")
        assert page.status_code == 200
        assert (shown in page.text) == sees, buildings
        assert ("空调检修" in page.text) == sees


@pytest.mark.parametrize(
    ("form", "says"),
    [
        ({"hours": "0", "reason": "x"}, "hours"),
        ({"hours": "10000", "reason": "x"}, "hours"),
        ({"hours": "soon", "reason": "x"}, "hours"),
        ({"hours": "2", "reason": "   "}, "reason"),
    ],
)
async def test_a_bad_silence_form_is_a_422_page(
    console: Console, form: dict[str, str], says: str
) -> None:
    alert_id = await console.fire()
    client = console.client(add_user(console.db, Role.SECURITY))
    token = csrf_of(client.get("/console/alerts").text)
    page = client.post(f"/console/alerts/{alert_id}/silence", data={"csrf": token, **form})
    assert page.status_code == 422 and says in page.text and "输入有误" in page.text
    assert audit.count(console.db, action="silence.created") == 0


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/console/alerts?offset=-1", 422),
        ("/console/alerts?state=bogus", 422),
        ("/console/alerts?room=%00", 422),
        ("/console/audit?days=0", 422),
        ("/console/audit?actor=" + "x" * 300, 422),
        ("/console/rooms/main/nowhere", 404),
    ],
)
def test_bad_page_requests_get_a_page_not_a_500(console: Console, path: str, status: int) -> None:
    client = console.client(add_user(console.db, Role.SECURITY))
    page = client.get(path)
    assert page.status_code == status
    assert page.headers["content-type"].startswith("text/html")


def test_the_audit_page_filters_pages_and_verifies(console: Console) -> None:
    now = datetime.fromtimestamp(console.clock.now_ns() / 1e9, UTC)
    for i in range(60):
        audit.append(console.db, actor="system", action="alert.fired", target=f"a{i}", now=now)
    audit.append(console.db, actor="user:zhang", action="silence.created", target="s1", now=now)
    client = console.client(add_user(console.db, Role.INSPECTOR))
    page = client.get("/console/audit", params={"action": "alert."}).text
    assert "共 60 条" in page and "a59" in page and "a9<" not in page and "较早" in page
    older = client.get("/console/audit", params={"action": "alert.", "offset": 50}).text
    assert "a9<" in older and "a59" not in older
    mine = client.get("/console/audit", params={"actor": "user:zhang"}).text
    assert "共 1 条" in mine and "silence.created" in mine
    checked = client.get("/console/audit", params={"verify": "true"}).text
    assert "审计链完整" in checked


def test_logout_needs_the_token_and_ends_the_session(console: Console) -> None:
    user = add_user(console.db, Role.KEEPER)
    client = console.client(user)
    token = csrf_of(client.get("/console").text)
    assert client.post("/console/logout", data={"csrf": "0" * 64}).status_code == 403
    assert client.get("/console").status_code == 200
    page = client.post("/console/logout", data={"csrf": token})
    assert page.status_code == 200 and "已退出登录" in page.text
    assert client.get("/console").status_code == 401
    [entry] = audit.entries(console.db, action="logout")
    assert entry.actor == f"user:{user.username}"


def test_without_a_site_file_the_overview_says_so(
    tmp_path: Path, state: StateDB, clock: ManualClock
) -> None:
    app = create_app(Settings(data_dir=tmp_path / "d"), db=state, clock=clock)
    user = add_user(state, Role.KEEPER)
    with TestClient(app, base_url=ORIGIN) as client:
        login(client, user.username)
        page = client.get("/console")
    assert page.status_code == 200 and "未加载站点文件" in page.text


def test_console_pages_forbid_framing_and_caching(console: Console) -> None:
    page = console.client().get("/console")
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_an_unknown_console_address_gets_a_console_page(console: Console) -> None:
    client = console.client(add_user(console.db, Role.KEEPER))
    page = client.get("/console/no-such-page")
    assert page.status_code == 404 and "text/html" in page.headers["content-type"]
    assert "没有这个页面" in page.text
    api = client.get("/api/v1/no-such-route")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("path", ["/console", "/console/"])
def test_an_anonymous_visitor_gets_the_login_page_not_a_redirect(
    console: Console, path: str
) -> None:
    with TestClient(console.app) as client:
        page = client.get(path, follow_redirects=False)
    assert page.status_code == 401 and LOGIN_FORM in page.text
