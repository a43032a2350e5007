"""``archwatch grafana sync`` against a recording stand-in for Grafana's HTTP API.

No Grafana can run on the CI machines, so :class:`FakeGrafana` (a threaded HTTP server on
loopback) keeps just enough state to answer the calls the sync makes (health, folders,
dashboards, annotations), checks the bearer token like Grafana does, and records every
request: the tests assert the exact methods, paths, headers and JSON bodies, that a second
sync updates annotations instead of adding copies, and what a person sees on a bad token,
a dead Grafana or a wrong URL. The alerts come from a real state database.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from alerting.lifecycle import Alert
from alerting.model import AlertState, Severity
from alerting.state_models import save_alerts
from gateway.cli import main as cli
from gateway.clock import ManualClock
from gateway.resources import demo_site_path
from gateway.site import load_site
from gateway.statedb import StateDB
from grafana.sync import events_off, generated_dashboards, sync_command

TOKEN = "glsa_test_token_5f2c9a7d"  # a service-account token as Grafana issues them
MS = 1_000_000
T0 = 1_767_225_600_000_000_000  # ManualClock's default start, 2026-01-01 00:00 UTC


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    path: str  # with the query string, as sent
    headers: dict[str, str]
    body: Any

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


@dataclass
class FakeGrafana:
    """Grafana's HTTP API, the parts the sync uses, under an optional sub-path."""

    token: str = TOKEN
    prefix: str = ""
    read_only: bool = False  # the token's service account is a Viewer
    provisioned: set[str] = field(default_factory=set)  # dashboard uids loaded from files
    requests: list[Request] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    annotations: dict[int, dict[str, Any]] = field(default_factory=dict)
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def start(self) -> FakeGrafana:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                request = Request(self.command, self.path, dict(self.headers.items()), body)
                with fake._lock:
                    fake.requests.append(request)
                    status, reply = fake.answer(request)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def add_annotation(self, **item: Any) -> int:
        with self._lock:
            return self._store_annotation(item)

    def _store_annotation(self, item: dict[str, Any]) -> int:
        ident = self._next_id
        self._next_id += 1
        self.annotations[ident] = {"id": ident, **item}
        return ident

    # --- Grafana's behaviour -----------------------------------------------------------

    def answer(self, req: Request) -> tuple[int, Any]:
        if not req.route.startswith(self.prefix + "/api/"):
            return 404, {"message": "Not found"}
        route = req.route[len(self.prefix) :]
        if route == "/api/health":  # served before authentication, like Grafana's
            return 200, {"commit": "abc", "database": "ok", "version": "11.2.0"}
        if req.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "Unauthorized"}
        method = req.method
        if self.read_only and method != "GET":
            return 403, {"message": "Access denied"}
        if method == "GET" and (m := re.fullmatch(r"/api/folders/([^/]+)", route)):
            folder = self.folders.get(m.group(1))
            return (200, folder) if folder else (404, {"message": "folder not found"})
        if method == "GET" and route == "/api/folders":
            return 200, list(self.folders.values())
        if method == "POST" and route == "/api/folders":
            if any(f["title"] == req.body["title"] for f in self.folders.values()):
                return 409, {"message": "a folder with the same name already exists"}
            folder = {"id": len(self.folders) + 1, **req.body}
            self.folders[folder["uid"]] = folder
            return 200, folder
        if method == "POST" and route == "/api/dashboards/db":
            dash = req.body["dashboard"]
            if dash["uid"] in self.provisioned:
                return 400, {"message": "Cannot save provisioned dashboard"}
            old = self.dashboards.get(dash["uid"])
            if old is not None and not req.body.get("overwrite"):
                return 412, {"message": "The dashboard has been changed by someone else"}
            if req.body.get("folderUid") not in self.folders:
                return 400, {"message": "folder not found"}
            version = (old["version"] + 1) if old else 1
            self.dashboards[dash["uid"]] = {**req.body, "version": version}
            return 200, {"id": 1, "uid": dash["uid"], "status": "success", "version": version}
        if method == "GET" and route == "/api/annotations":
            tags = req.query.get("tags", [])
            found = [a for a in self.annotations.values() if set(tags) <= set(a["tags"])]
            # Grafana returns the tags in its own order, not as sent.
            return 200, [{**a, "tags": sorted(a["tags"])} for a in found]
        if method == "POST" and route == "/api/annotations":
            ident = self._store_annotation(dict(req.body))
            return 200, {"id": ident, "message": "Annotation added"}
        if m := re.fullmatch(r"/api/annotations/(\d+)", route):
            ident = int(m.group(1))
            if ident not in self.annotations:
                return 404, {"message": "Annotation not found"}
            if method == "PUT":
                self.annotations[ident].update(req.body)
                return 200, {"message": "Annotation updated"}
            if method == "DELETE":
                del self.annotations[ident]
                return 200, {"message": "Annotation deleted"}
        return 404, {"message": "Not found"}

    # --- what the tests look at ------------------------------------------------------------

    def calls(self) -> list[tuple[str, str]]:
        with self._lock:
            return [(r.method, r.path) for r in self.requests]

    def writes(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method != "GET"]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    fake = FakeGrafana().start()
    yield fake
    fake.stop()


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ARCHWATCH_GRAFANA_TOKEN", TOKEN)
    return TOKEN


@pytest.fixture
def alert_dir(tmp_path: Path) -> Path:
    """A data directory whose state database holds alerts in every state."""
    folder = tmp_path / "data"
    folder.mkdir()
    db = StateDB(f"sqlite:///{folder / 'state.sqlite'}")
    db.migrate()
    save_alerts(db, ALERTS)
    db.close()
    return folder


def _alert(ident: str, state: AlertState, **kw: Any) -> Alert:
    labels = {"site": "hn-archives", "building": "main", **kw.pop("labels", {})}
    return Alert(
        id=ident,
        fingerprint=f"fp-{ident}",
        rule_id=kw.pop("rule_id", "climate-band"),
        rule_kind=kw.pop("rule_kind", "band"),
        severity=kw.pop("severity", Severity.WARNING),
        labels=labels,
        state=state,
        started_at_ns=kw.pop("started_at_ns", T0 - 3_600 * 10**9),
        last_active_ns=T0 - 60 * 10**9,
        **kw,
    )


HUMID = _alert(
    "a1humid",
    AlertState.FIRING,
    labels={"room": "r101", "sensor": "r101-h", "kind": "humidity"},
    value=68.5,
    summary="101 纸质档案库 湿度 68.5 %RH 高于上限",
    limit="45–60 %RH",
    fired_at_ns=T0 - 3_000 * 10**9,
)
FILM = _alert(
    "a2film",
    AlertState.ACKNOWLEDGED,
    labels={"room": "r201", "sensor": "r201-t", "kind": "temperature"},
    value=17.2,
    summary="201 母片库 温度 17.2 °C 高于上限",
    limit="≤ 15 °C",
    fired_at_ns=T0 - 2_000 * 10**9,
    acked_by="user:wang",
    acked_note="空调已报修",
    acked_at_ns=T0 - 1_000 * 10**9,
)
SMOKE = _alert(
    "a3smoke",
    AlertState.RESOLVED,
    rule_id="smoke",
    rule_kind="smoke",
    severity=Severity.CRITICAL,
    labels={"room": "r101", "sensor": "r101-smoke", "kind": "smoke"},
    value=1.0,
    summary="101 纸质档案库 烟感报警",
    fired_at_ns=T0 - 7_200 * 10**9,
    started_at_ns=T0 - 7_200 * 10**9,
    resolved_at_ns=T0 - 6_600 * 10**9,
)
# Not drawn: still pending, a drill, and one that closed before it ever fired.
PENDING = _alert("b1pending", AlertState.PENDING, labels={"room": "r101"})
DRILL = _alert(
    "b2drill",
    AlertState.FIRING,
    labels={"room": "r101", "drill_id": "d-2026-01"},
    fired_at_ns=T0 - 100 * 10**9,
)
NEVER_FIRED = _alert(
    "b3quiet", AlertState.RESOLVED, labels={"room": "r201"}, resolved_at_ns=T0 - 10**9
)
ALERTS = [HUMID, FILM, SMOKE, PENDING, DRILL, NEVER_FIRED]


def run_sync(url: str, data_dir: Path, clock: ManualClock) -> None:
    sync_command(url, demo_site_path(), data_dir, clock=clock)


def expected_dashboard_calls() -> list[tuple[str, str, dict[str, Any]]]:
    site = load_site(demo_site_path())
    return [
        (
            "POST",
            "/api/dashboards/db",
            {
                "dashboard": {**events_off(dash), "id": None},
                "folderUid": "archwatch",
                "overwrite": True,
                "message": "archwatch grafana sync",
            },
        )
        for dash in generated_dashboards(site)
    ]


def ms(ns: int) -> int:
    return ns // MS


def state_timeline_id(uid: str) -> int:
    dash = next(d for d in generated_dashboards(load_site(demo_site_path())) if d["uid"] == uid)
    return next(int(p["id"]) for p in dash["panels"] if p["type"] == "state-timeline")


def annotation_lookup(alert_id: str) -> tuple[str, str]:
    return ("GET", f"/api/annotations?type=annotation&tags=alert:{alert_id}&limit=100")


def first_sync_annotations() -> dict[str, dict[str, Any]]:
    """What the first sync (clock at T0) must create, by alert id."""
    return {
        "a3smoke": {
            "panelId": state_timeline_id("aw-room-main-r101"),
            "time": ms(T0 - 7_200 * 10**9),
            "timeEnd": ms(T0 - 6_600 * 10**9),
            "tags": [
                "archwatch",
                "alert",
                "alert:a3smoke",
                "severity:critical",
                "building:main",
                "room:r101",
            ],
            "text": "【紧急】101 纸质档案库 烟感报警；当前值 1；已恢复；规则 smoke",
            "dashboardUID": "aw-room-main-r101",
        },
        "a1humid": {
            "panelId": None,  # climate alerts span the whole room dashboard
            "time": ms(T0 - 3_000 * 10**9),
            "timeEnd": ms(T0),  # still firing: up to now
            "tags": [
                "archwatch",
                "alert",
                "alert:a1humid",
                "severity:warning",
                "building:main",
                "room:r101",
            ],
            "text": "【警告】101 纸质档案库 湿度 68.5 %RH 高于上限；当前值 68.5；限值 45–60 %RH；"
            "告警中；规则 climate-band",
            "dashboardUID": "aw-room-main-r101",
        },
        "a2film": {
            "panelId": None,
            "time": ms(T0 - 2_000 * 10**9),
            "timeEnd": ms(T0),
            "tags": [
                "archwatch",
                "alert",
                "alert:a2film",
                "severity:warning",
                "building:main",
                "room:r201",
            ],
            "text": "【警告】201 母片库 温度 17.2 °C 高于上限；当前值 17.2；限值 ≤ 15 °C；"
            "已由 user:wang 确认（空调已报修）；规则 climate-band",
            "dashboardUID": "aw-room-main-r201",
        },
    }


def test_first_sync_creates_the_folder_dashboards_and_one_annotation_per_alert(
    grafana: FakeGrafana, token: str, alert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_sync(grafana.url, alert_dir, ManualClock(T0))

    wanted = first_sync_annotations()
    dashboards = expected_dashboard_calls()
    assert len(dashboards) >= 4
    # Oldest alert first; pending, drill and never-fired alerts are not drawn.
    expected: list[tuple[str, str, Any]] = [
        ("GET", "/api/health", None),
        ("GET", "/api/folders/archwatch", None),
        ("POST", "/api/folders", {"title": "archwatch", "uid": "archwatch"}),
        *dashboards,
    ]
    for alert_id, payload in wanted.items():
        expected += [(*annotation_lookup(alert_id), None), ("POST", "/api/annotations", payload)]
    assert [(r.method, r.path, r.body) for r in grafana.requests] == expected
    for request in grafana.requests:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        if request.body is not None:
            assert request.headers["Content-Type"] == "application/json"
    assert set(grafana.dashboards) == {d[2]["dashboard"]["uid"] for d in dashboards}
    out = capsys.readouterr()
    assert f"synced to {grafana.url}: folder archwatch (created)" in out.out
    assert "alert annotations: 3 created, 0 updated, 0 unchanged" in out.out
    assert token not in out.out + out.err


def test_second_sync_updates_annotations_instead_of_adding_copies(
    grafana: FakeGrafana, token: str, alert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = ManualClock(T0)
    run_sync(grafana.url, alert_dir, clock)
    ids = {alert_id: n for n, alert_id in enumerate(first_sync_annotations(), start=1)}
    # Meanwhile the humidity alert resolved and a minute passed.
    db = StateDB(f"sqlite:///{alert_dir / 'state.sqlite'}")
    save_alerts(
        db,
        [
            Alert(
                **{
                    **{f: getattr(HUMID, f) for f in HUMID.__dataclass_fields__},
                    "state": AlertState.RESOLVED,
                    "resolved_at_ns": T0 + 30 * 10**9,
                }
            )
        ],
    )
    db.close()
    clock.advance(60)
    grafana.clear()
    capsys.readouterr()

    run_sync(grafana.url, alert_dir, clock)

    wanted = first_sync_annotations()
    expected: list[tuple[str, str, Any]] = [
        ("GET", "/api/health", None),
        ("GET", "/api/folders/archwatch", None),  # exists now: not created again
        *expected_dashboard_calls(),  # overwritten in place (stable uids)
        # The resolved smoke alert is unchanged: looked up, not written.
        (*annotation_lookup("a3smoke"), None),
        (*annotation_lookup("a1humid"), None),
        (
            "PUT",
            f"/api/annotations/{ids['a1humid']}",
            {
                "time": wanted["a1humid"]["time"],
                "timeEnd": ms(T0 + 30 * 10**9),
                "tags": wanted["a1humid"]["tags"],
                "text": wanted["a1humid"]["text"].replace("告警中", "已恢复"),
            },
        ),
        (*annotation_lookup("a2film"), None),
        (
            "PUT",
            f"/api/annotations/{ids['a2film']}",
            {
                "time": wanted["a2film"]["time"],
                "timeEnd": ms(T0 + 60 * 10**9),  # still open: extended to the new now
                "tags": wanted["a2film"]["tags"],
                "text": wanted["a2film"]["text"],
            },
        ),
    ]
    assert [(r.method, r.path, r.body) for r in grafana.requests] == expected
    assert not [r for r in grafana.requests if r.method == "POST" and "annotations" in r.path]
    assert sorted(grafana.annotations) == [1, 2, 3]
    assert all(d["version"] == 2 for d in grafana.dashboards.values())
    assert "folder archwatch (exists)" in capsys.readouterr().out


def test_duplicate_annotations_of_an_alert_are_removed(
    grafana: FakeGrafana, token: str, alert_dir: Path
) -> None:
    for _ in range(2):
        grafana.add_annotation(time=1, timeEnd=2, tags=["alert:a3smoke"], text="old")

    run_sync(grafana.url, alert_dir, ManualClock(T0))

    smoke = [a for a in grafana.annotations.values() if "alert:a3smoke" in a["tags"]]
    assert [a["id"] for a in smoke] == [1]
    assert smoke[0]["text"] == first_sync_annotations()["a3smoke"]["text"]
    assert ("DELETE", "/api/annotations/2") in grafana.calls()
    assert ("PUT", "/api/annotations/1") in grafana.calls()


def test_a_folder_titled_archwatch_made_by_hand_is_reused(
    grafana: FakeGrafana, token: str, alert_dir: Path
) -> None:
    grafana.folders["hand-made"] = {"id": 7, "uid": "hand-made", "title": "archwatch"}

    run_sync(grafana.url, alert_dir, ManualClock(T0))

    assert ("GET", "/api/folders") in grafana.calls()
    assert {d["folderUid"] for d in grafana.dashboards.values()} == {"hand-made"}
    assert set(grafana.folders) == {"hand-made"}


def test_dashboards_provisioned_from_files_are_left_and_alerts_still_drawn(
    grafana: FakeGrafana, token: str, alert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The compose stack loads the same dashboards from grafana/dashboards; Grafana refuses
    to overwrite those. The sync leaves them and still draws the alerts, each once."""
    grafana.provisioned = {
        d[2]["dashboard"]["uid"]
        for d in expected_dashboard_calls()
        if d[2]["dashboard"]["uid"] != "aw-room-main-r201"
    }

    run_sync(grafana.url, alert_dir, ManualClock(T0))

    # Only r201's dashboard was pushed, with its InfluxDB alert events switched off...
    (pushed,) = grafana.dashboards.values()
    assert pushed["dashboard"]["uid"] == "aw-room-main-r201"
    events = [a for a in pushed["dashboard"]["annotations"]["list"] if a["name"] == "告警事件"]
    assert [a["enable"] for a in events] == [False]
    # ...so r201's alert is drawn by the sync; r101's provisioned dashboard draws its two
    # alerts from InfluxDB's events itself, and a pushed annotation would show them twice.
    assert sorted(
        tag for a in grafana.annotations.values() for tag in a["tags"] if tag.startswith("alert:")
    ) == ["alert:a2film"]
    n = len(grafana.provisioned)
    out = capsys.readouterr().out
    assert f"{n + 1} dashboards ({n} provisioned from files, left as they are)" in out
    assert "1 created" in out
    assert "2 left to the provisioned dashboards' own alert events" in out


def test_provisioned_dashboards_keep_their_alert_events_switched_on() -> None:
    """The files Grafana provisions draw alerts from InfluxDB's events (nothing else draws
    them there); only the copies the sync pushes switch that annotation off."""
    folder = Path(__file__).parents[1] / "grafana" / "dashboards"
    paths = sorted(folder.glob("aw-room-*.json"))
    assert len(paths) == 2  # the demo's two rooms
    for path in paths:
        listed = json.loads(path.read_text())["annotations"]["list"]
        assert [a["enable"] for a in listed if a["name"] == "告警事件"] == [True], path


def test_grafana_under_a_sub_path(token: str, alert_dir: Path) -> None:
    fake = FakeGrafana(prefix="/grafana").start()
    try:
        run_sync(fake.url, alert_dir, ManualClock(T0))
        assert all(path.startswith("/grafana/api/") for _m, path in fake.calls())
        assert len(fake.annotations) == 3
    finally:
        fake.stop()


def test_without_a_state_database_only_dashboards_are_pushed(
    grafana: FakeGrafana, token: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    run_sync(grafana.url, empty, ManualClock(T0))
    assert not [path for _m, path in grafana.calls() if "annotations" in path]
    assert len(grafana.dashboards) == len(expected_dashboard_calls())
    assert "no state database" in capsys.readouterr().err
    assert not empty.exists()  # a mistyped --data-dir is not silently created


def _fails(url: str, alert_dir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_sync(url, alert_dir, ManualClock(T0))
    assert exit_info.value.code == 1
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    assert out.err.startswith("error: ")
    return out.err


def test_a_bad_token_is_reported_before_anything_is_written(
    grafana: FakeGrafana,
    monkeypatch: pytest.MonkeyPatch,
    alert_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    grafana.token = "the-right-one"
    monkeypatch.setenv("ARCHWATCH_GRAFANA_TOKEN", TOKEN)
    err = _fails(grafana.url, alert_dir, capsys)
    assert err == (
        f"error: Grafana at {grafana.url} refused the token (401 Unauthorized): "
        "set ARCHWATCH_GRAFANA_TOKEN to a valid service-account token\n"
    )
    assert grafana.writes() == []


def test_a_viewer_token_is_told_it_needs_the_editor_role(
    grafana: FakeGrafana, token: str, alert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grafana.read_only = True
    err = _fails(grafana.url, alert_dir, capsys)
    assert "403 Forbidden" in err and "Editor role" in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_grafana(
    token: str, alert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    err = _fails(url, alert_dir, capsys)
    assert err == f"error: cannot reach Grafana at {url}: connection refused\n"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("grafana.local:3000", "is not a Grafana base URL"),
        ("ftp://127.0.0.1/", "is not a Grafana base URL"),
        ("http://", "is not a Grafana base URL"),
        ("http://127.0.0.1:99999", "is not a URL"),
    ],
)
def test_a_malformed_url_is_refused_before_any_request(
    url: str, says: str, token: str, alert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _fails(url, alert_dir, capsys)
    assert says in err and f"'{url}'" in err


def test_a_url_that_is_not_grafana(
    token: str, alert_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeGrafana(prefix="/grafana").start()  # the URL below forgets the sub-path
    try:
        url = fake.url.removesuffix("/grafana")
        err = _fails(url, alert_dir, capsys)
        assert "GET /api/health answered 404: this is not Grafana's base URL" in err
        assert fake.writes() == []
    finally:
        fake.stop()


def test_a_missing_token(
    grafana: FakeGrafana,
    monkeypatch: pytest.MonkeyPatch,
    alert_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ARCHWATCH_GRAFANA_TOKEN", raising=False)
    err = _fails(grafana.url, alert_dir, capsys)
    assert "set ARCHWATCH_GRAFANA_TOKEN" in err
    assert grafana.requests == []


def test_the_command_line(grafana: FakeGrafana, token: str, alert_dir: Path) -> None:
    args = ["grafana", "sync", "--url", grafana.url, "--data-dir", str(alert_dir)]
    ok = CliRunner().invoke(cli, [*args, "--site", str(demo_site_path())])
    assert ok.exit_code == 0, ok.output
    assert "alert annotations: 3 created" in ok.output
    grafana.token = "another"
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1
    assert "refused the token (401 Unauthorized)" in refused.output
    assert TOKEN not in refused.output


def test_an_unreadable_state_database_is_named_without_its_password(
    grafana: FakeGrafana,
    token: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql://archwatch:s3cret-pw@127.0.0.1:{_closed_port()}/archwatch"
    monkeypatch.setenv("ARCHWATCH_STATE_DB_URL", url)
    err = _fails(grafana.url, tmp_path, capsys)
    assert err.startswith("error: cannot read the alerts from the state database ")
    assert "archwatch:***@127.0.0.1" in err and "s3cret-pw" not in err
    assert grafana.requests == []  # nothing was sent to Grafana
