"""``/api/v1/alerts``: who may call what, keeper scoping, bad input, filters, and the whole
path of an operator action: API request -> queue -> the gateway's engine -> shown applied.

A real :class:`AlertEngine` shares the API's SQLite state database and ManualClock, as the
gateway does in production (another process there; the queue is the only link).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerting.ackqueue import AckQueue
from alerting.dispatch import DispatchConfig
from alerting.engine import AlertEngine
from alerting.model import AlertState, Condition, NotificationBatch, Severity
from api.main import create_app
from api.models import Role
from gateway import audit
from gateway.clock import ManualClock
from gateway.settings import Settings
from gateway.statedb import StateDB
from tests.api.conftest import add_user, api_key, bearer
from tests.test_acklink import Events, Sink

ALERTS = "/api/v1/alerts"
_rooms = itertools.count(1)


@dataclass
class Gateway:
    """The gateway's side: an alert engine and the queue consumer on the same state DB."""

    clock: ManualClock
    sink: Sink
    engine: AlertEngine
    queue: AckQueue

    async def fire(
        self,
        building: str = "b1",
        room: str | None = None,
        *,
        severity: Severity = Severity.CRITICAL,
        kind: str = "band",
        for_s: float = 0.0,
        drill: str | None = None,
    ) -> str:
        labels = {"site": "hq", "building": building, "room": room or f"r{next(_rooms)}"}
        if drill:
            labels["drill_id"] = drill
        changes = await self.engine.process(
            [
                Condition(
                    rule_id=f"{kind}-rule",
                    rule_kind=kind,
                    severity=severity,
                    labels=labels,
                    active=True,
                    at_ns=self.clock.now_ns(),
                    value=62.0,
                    summary=f"{labels['room']} 相对湿度 62%",
                    for_s=for_s,
                )
            ]
        )
        return changes[0].alert.id

    async def tick(self) -> list[NotificationBatch]:
        self.clock.advance(1)
        batches = await self.engine.tick()
        for batch in batches:
            await self.engine.record_recipients(batch.id, ["duty-officer"])
        return batches


@pytest.fixture
def gateway(state: StateDB, clock: ManualClock) -> Gateway:
    sink = Sink()
    engine = AlertEngine(state, sink, Events(), clock, dispatch=DispatchConfig(group_wait_s=0))
    return Gateway(clock, sink, engine, AckQueue(state, engine))


@pytest.fixture
def api(client: TestClient) -> Iterator[TestClient]:
    yield client


def login(
    app: FastAPI, db: StateDB, who: str, buildings: tuple[str, ...] = ("b1",)
) -> dict[str, str]:
    if who == "anonymous":
        return {}
    if who.startswith("key:"):
        return api_key(db, Role(who.removeprefix("key:")))[1]
    role = Role(who)
    return bearer(app, add_user(db, role, buildings=buildings if role == Role.KEEPER else ()))


# --- the role x route matrix --------------------------------------------------------------------

READERS = {"keeper", "security", "inspector", "drill_coordinator"}
CALLS = [
    ("list", "GET", "", READERS, 200),
    ("show", "GET", "/{a}", READERS, 200),
    ("ack", "POST", "/{a}/ack", {"keeper", "security"}, 202),
    ("resolve", "POST", "/{b}/resolve", {"security"}, 202),
]
PRINCIPALS = [
    "anonymous",
    *(r.value for r in Role),
    "key:inspector",
    "key:security",
    "key:drill_coordinator",
]


@pytest.mark.parametrize("who", PRINCIPALS)
async def test_role_route_matrix(
    app: FastAPI, api: TestClient, state: StateDB, gateway: Gateway, who: str
) -> None:
    headers = login(app, state, who)
    a, b = await gateway.fire("b1"), await gateway.fire("b1")
    role = who.removeprefix("key:")
    for name, method, path, allowed, ok in CALLS:
        response = api.request(method, ALERTS + path.format(a=a, b=b), headers=headers)
        expected = 401 if who == "anonymous" else ok if role in allowed | {"admin"} else 403
        assert response.status_code == expected, (who, name, response.text)
        if expected == 401:
            assert response.headers["www-authenticate"] == "Bearer"
        if expected == 403:
            assert "roles" in response.json()["detail"]


# --- keepers see their own buildings only -------------------------------------------------------


async def test_a_keeper_sees_and_acknowledges_only_their_buildings(
    app: FastAPI, api: TestClient, state: StateDB, gateway: Gateway
) -> None:
    mine, theirs = await gateway.fire("b1"), await gateway.fire("b2")
    keeper = login(app, state, "keeper", buildings=("b1",))
    security = login(app, state, "security")

    page = api.get(ALERTS, headers=keeper).json()
    assert [a["id"] for a in page["items"]] == [mine] and page["total"] == 1
    assert {a["id"] for a in api.get(ALERTS, headers=security).json()["items"]} == {mine, theirs}
    # Asking for the other building by name finds nothing either.
    assert api.get(ALERTS, params={"building": "b2"}, headers=keeper).json()["total"] == 0

    assert api.get(f"{ALERTS}/{mine}", headers=keeper).status_code == 200
    hidden = api.get(f"{ALERTS}/{theirs}", headers=keeper)
    unknown = api.get(f"{ALERTS}/{'0' * 32}", headers=keeper)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["detail"] == f"no alert {theirs}"  # the same words as for no alert

    assert api.post(f"{ALERTS}/{theirs}/ack", headers=keeper).status_code == 404
    assert api.post(f"{ALERTS}/{mine}/ack", headers=keeper).status_code == 202
    assert audit.count(state, action="alert.ack_requested") == 1


async def test_a_keeper_does_not_see_alerts_without_a_building(
    app: FastAPI, api: TestClient, state: StateDB, gateway: Gateway
) -> None:
    # A site-wide alert (no building label) is not one of the keeper's buildings'.
    mine = await gateway.fire("b1")
    changes = await gateway.engine.process(
        [
            Condition(
                rule_id="gateway-health",
                rule_kind="health",
                severity=Severity.WARNING,
                labels={"site": "hq"},
                active=True,
                at_ns=gateway.clock.now_ns(),
                summary="网关离线",
            )
        ]
    )
    sitewide = changes[0].alert.id
    keeper = login(app, state, "keeper", buildings=("b1",))
    security = login(app, state, "security")

    page = api.get(ALERTS, headers=keeper).json()
    assert [a["id"] for a in page["items"]] == [mine] and page["total"] == 1
    assert {a["id"] for a in api.get(ALERTS, headers=security).json()["items"]} == {
        mine,
        sitewide,
    }
    hidden = api.get(f"{ALERTS}/{sitewide}", headers=keeper)
    assert hidden.status_code == 404 and hidden.json()["detail"] == f"no alert {sitewide}"
    assert api.post(f"{ALERTS}/{sitewide}/ack", headers=keeper).status_code == 404
    assert audit.count(state, action="alert.ack_requested") == 0
    assert api.get(f"{ALERTS}/{sitewide}", headers=security).status_code == 200


# --- bad input -----------------------------------------------------------------------------------


async def _alert_in(gateway: Gateway, api: TestClient, headers: dict[str, str], what: str) -> str:
    """An alert in the situation ``what`` names."""
    if what == "pending":
        return await gateway.fire(for_s=600)
    alert_id = await gateway.fire()
    if what == "acknowledged":
        await gateway.engine.acknowledge(alert_id, "wangwu")
    elif what == "resolved":
        await gateway.engine.resolve(alert_id, "wangwu")
    elif what in ("ack-queued", "resolve-queued"):
        action = what.removesuffix("-queued")
        assert api.post(f"{ALERTS}/{alert_id}/{action}", headers=headers).status_code == 202
    return alert_id


BAD = [
    # (case, alert situation, method, path, body, status, words in the detail)
    ("show unknown", None, "GET", "/{unknown}", None, 404, "no alert"),
    ("ack unknown", None, "POST", "/{unknown}/ack", None, 404, "no alert"),
    ("resolve unknown", None, "POST", "/{unknown}/resolve", None, 404, "no alert"),
    ("malformed id", None, "GET", "/not-an-id", None, 422, "pattern"),
    ("ack resolved", "resolved", "POST", "/{a}/ack", None, 409, "already resolved by wangwu"),
    ("ack twice", "acknowledged", "POST", "/{a}/ack", None, 409, "acknowledged by wangwu"),
    ("ack pending", "pending", "POST", "/{a}/ack", None, 409, "pending"),
    ("ack queued", "ack-queued", "POST", "/{a}/ack", None, 409, "already asked to acknowledge"),
    ("resolve resolved", "resolved", "POST", "/{a}/resolve", None, 409, "already resolved"),
    ("resolve pending", "pending", "POST", "/{a}/resolve", None, 409, "pending"),
    ("resolve queued", "resolve-queued", "POST", "/{a}/resolve", None, 409, "already asked"),
    ("ack after resolve", "resolve-queued", "POST", "/{a}/ack", None, 409, "to resolve"),
    ("extra field", "firing", "POST", "/{a}/ack", {"note": "x", "acked_by": "z"}, 422, "extra"),
    ("NUL in note", "firing", "POST", "/{a}/ack", {"note": "a\x00b"}, 422, "pattern"),
    ("long note", "firing", "POST", "/{a}/resolve", {"note": "x" * 501}, 422, "500"),
    ("unknown kind", None, "GET", "?rule_kind=nope", None, 422, "unknown rule kind 'nope'"),
    ("bad state", None, "GET", "?state=burning", None, 422, "firing"),
    ("end before start", None, "GET", "?start=2026-01-02T00:00&end=2026-01-01T00:00", None,
     422, "end must be after start"),
    ("window too long", None, "GET", "?start=2024-01-01T00:00Z&end=2026-01-01T00:00Z", None,
     422, "longer than 366 days"),
    ("bad building", None, "GET", "?building=b%201", None, 422, "pattern"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("situation", "method", "path", "body", "status", "words"),
    [case[1:] for case in BAD],
    ids=[case[0] for case in BAD],
)
async def test_bad_input_gets_a_clear_4xx(
    app: FastAPI,
    api: TestClient,
    state: StateDB,
    gateway: Gateway,
    situation: str | None,
    method: str,
    path: str,
    body: object,
    status: int,
    words: str,
) -> None:
    headers = login(app, state, "security")
    alert_id = await _alert_in(gateway, api, headers, situation) if situation else ""
    before = audit.count(state)
    response = api.request(
        method, ALERTS + path.format(a=alert_id, unknown="f" * 32), headers=headers, json=body
    )
    assert response.status_code == status, response.text
    assert words in response.text
    assert audit.count(state) == before  # a refused request changes nothing


# --- listing and filters --------------------------------------------------------------------------


async def test_filters_paging_and_newest_first(
    app: FastAPI, api: TestClient, state: StateDB, gateway: Gateway, clock: ManualClock
) -> None:
    old = await gateway.fire("b1", "a101", kind="threshold", severity=Severity.WARNING)
    clock.advance(40 * 86400)
    await gateway.engine.resolve(old, "wangwu")  # closed: only found by asking for its time
    band = await gateway.fire("b1", "a101")
    clock.advance(60)
    smoke = await gateway.fire("b2", "b201", kind="smoke")
    clock.advance(60)
    drill = await gateway.fire("b1", "a102", drill="d-1")
    await gateway.engine.acknowledge(smoke, "lisi")
    headers = login(app, state, "inspector")  # tokens are short-lived: log in now

    def ids(**params: object) -> list[str]:
        response = api.get(ALERTS, params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total"] == len(page["items"]) or "limit" in params
        return [a["id"] for a in page["items"]]

    assert ids() == [smoke, band]  # real alerts of the last 30 days, newest first
    assert ids(drill="drill") == [drill]
    assert ids(drill="all") == [drill, smoke, band]
    assert ids(state="acknowledged") == [smoke]
    assert ids(state=["firing", "acknowledged"]) == [smoke, band]
    assert ids(severity="critical", building="b1") == [band]
    assert ids(room="b201") == [smoke]
    assert ids(rule_kind="smoke") == [smoke]
    assert ids(rule_kind=["smoke", "band"], building="b2") == [smoke]
    assert ids(start="2025-12-31T00:00:00Z", end="2026-01-02T00:00:00Z") == [old]
    page = api.get(ALERTS, params={"limit": 1, "offset": 1}, headers=headers).json()
    assert ([a["id"] for a in page["items"]], page["total"]) == ([band], 2)


async def test_an_alert_open_for_longer_than_the_window_is_still_listed(
    app: FastAPI, api: TestClient, state: StateDB, gateway: Gateway, clock: ManualClock
) -> None:
    overdue = await gateway.fire("b1", kind="calibration_overdue", severity=Severity.INFO)
    clock.advance(90 * 86400)
    headers = login(app, state, "keeper")
    assert [a["id"] for a in api.get(ALERTS, headers=headers).json()["items"]] == [overdue]


# --- the whole path of an action ----------------------------------------------------------------


async def test_acknowledge_then_resolve_end_to_end(
    app: FastAPI, api: TestClient, state: StateDB, gateway: Gateway, clock: ManualClock
) -> None:
    guard = add_user(state, Role.SECURITY, username="zhangsan")
    headers = bearer(app, guard)
    alert_id = await gateway.fire("b1", "a101")
    assert [b.kind for b in await gateway.tick()] == ["firing"]

    queued = api.post(f"{ALERTS}/{alert_id}/ack", json={"note": "已派人查看"}, headers=headers)
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert (body["status"], body["action"], body["user"]) == ("pending", "ack", "zhangsan")
    shown = api.get(f"{ALERTS}/{alert_id}", headers=headers).json()
    assert shown["state"] == "firing"
    assert shown["pending_action"]["request_id"] == body["request_id"]

    [outcome] = await gateway.queue.run_once()  # the gateway's next tick
    assert outcome.status == "done"
    shown = api.get(f"{ALERTS}/{alert_id}", headers=headers).json()
    assert (shown["state"], shown["acked_by"], shown["acked_note"]) == (
        "acknowledged",
        "zhangsan",
        "已派人查看",
    )
    assert shown["pending_action"] is None
    assert [(a["action"], a["status"]) for a in shown["actions"]] == [("ack", "done")]
    told = [b.kind for _ in range(5) for b in await gateway.tick()]
    assert told == ["acknowledged"]  # one notice that someone is on it
    clock.advance(31 * 60)  # past the 30-minute repeat interval: no repeat
    assert await gateway.tick() == []
    headers = bearer(app, guard)  # tokens are short-lived: log in again

    queued = api.post(f"{ALERTS}/{alert_id}/resolve", json={"note": "已修复"}, headers=headers)
    assert queued.status_code == 202, queued.text
    await gateway.queue.run_once()
    shown = api.get(f"{ALERTS}/{alert_id}", headers=headers).json()
    assert (shown["state"], shown["resolved_by"], shown["resolved_note"]) == (
        "resolved",
        "zhangsan",
        "已修复",
    )
    assert [b.kind for b in await gateway.tick()] == ["resolved"]  # the duty officer hears

    log = [(e.actor, e.action, e.detail.get("via")) for e in audit.entries(state, limit=50)]
    assert ("user:zhangsan", "alert.ack_requested", "api") in log
    assert ("user:zhangsan", "alert.acknowledged", "api") in log
    assert ("user:zhangsan", "alert.resolve_requested", "api") in log
    assert ("user:zhangsan", "alert.resolved", "api") in log
    assert audit.verify(state).ok


async def test_an_action_overtaken_by_events_shows_why_it_failed(
    app: FastAPI, api: TestClient, state: StateDB, gateway: Gateway
) -> None:
    headers = login(app, state, "keeper")
    alert_id = await gateway.fire("b1")
    assert api.post(f"{ALERTS}/{alert_id}/ack", headers=headers).status_code == 202
    await gateway.engine.resolve(alert_id, "wangwu")  # before the gateway got to the request
    await gateway.queue.run_once()
    shown = api.get(f"{ALERTS}/{alert_id}", headers=headers).json()
    [action] = shown["actions"]
    assert action["status"] == "failed" and "no open alert" in action["error"]
    assert shown["state"] == AlertState.RESOLVED.value and shown["pending_action"] is None


async def test_an_api_key_is_recorded_as_such(
    api: TestClient, state: StateDB, gateway: Gateway
) -> None:
    key, headers = api_key(state, Role.SECURITY)
    alert_id = await gateway.fire()
    assert api.post(f"{ALERTS}/{alert_id}/ack", headers=headers).json()["user"] == (
        f"apikey:{key.name}"
    )
    await gateway.queue.run_once()
    assert api.get(f"{ALERTS}/{alert_id}", headers=headers).json()["acked_by"] == (
        f"apikey:{key.name}"
    )


async def test_the_same_path_on_postgresql(postgres_url: str, settings: Settings) -> None:
    db = StateDB(postgres_url)
    db.migrate()
    clock = ManualClock()
    sink = Sink()
    engine = AlertEngine(db, sink, Events(), clock, dispatch=DispatchConfig(group_wait_s=0))
    gateway = Gateway(clock, sink, engine, AckQueue(db, engine))
    app = create_app(settings, db=db, clock=clock)
    try:
        mine, theirs = await gateway.fire("b1", "A101"), await gateway.fire("b2", "a101")
        keeper = bearer(app, add_user(db, Role.KEEPER, username="liuliu", buildings=("b1",)))
        with TestClient(app) as api:
            page = api.get(ALERTS, params={"room": "A101"}, headers=keeper).json()
            assert [a["id"] for a in page["items"]] == [mine]
            assert api.post(f"{ALERTS}/{theirs}/ack", headers=keeper).status_code == 404
            assert api.post(f"{ALERTS}/{mine}/ack", headers=keeper).status_code == 202
            assert api.post(f"{ALERTS}/{mine}/ack", headers=keeper).status_code == 409
            await gateway.queue.run_once()
            shown = api.get(f"{ALERTS}/{mine}", headers=keeper).json()
            assert (shown["state"], shown["acked_by"]) == ("acknowledged", "liuliu")
    finally:
        db.close()
