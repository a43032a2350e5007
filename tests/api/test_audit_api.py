"""``/api/v1/audit`` and ``/api/v1/audit/verify`` on a real SQLite state DB, API clock manual."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.models import Role
from gateway import audit
from gateway.clock import ManualClock
from gateway.statedb import StateDB
from tests.api.conftest import add_user, api_key, bearer
from tests.test_audit import drop_append_only_triggers


def now(clock: ManualClock) -> datetime:
    return datetime.fromtimestamp(clock.now_ns() / 1e9, UTC)


def seed(db: StateDB, clock: ManualClock) -> None:
    """Five entries over the last two days, as the gateway and the API write them."""
    t = now(clock)
    rows: list[tuple[timedelta, str, str, str, dict[str, Any]]] = [
        (timedelta(days=2), "user:zhang", "login", "", {"address": "10.0.0.5"}),
        (timedelta(hours=30), "system", "alert.fired", "a1", {"room": "r101"}),
        (timedelta(hours=20), "user:zhang", "alert.acknowledged", "a1", {"note": "已到现场"}),
        (timedelta(hours=10), "user:li", "silence.created", "s1", {"hours": 2}),
        (timedelta(hours=1), "system", "alert.resolved", "a1", {}),
    ]
    for ago, actor, action, target, detail in rows:
        audit.append(db, actor=actor, action=action, target=target, detail=detail, now=t - ago)


@pytest.fixture
def inspector(app: FastAPI, state: StateDB) -> dict[str, str]:
    return bearer(app, add_user(state, Role.INSPECTOR))


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("anonymous", 401),
        ("keeper", 403),
        ("drill_coordinator", 403),
        ("inspector", 200),
        ("security", 200),
        ("admin", 200),
        ("key:inspector", 200),
        ("key:drill_coordinator", 403),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/verify"])
def test_who_may_read_the_audit_log(
    app: FastAPI, client: TestClient, state: StateDB, who: str, status: int, path: str
) -> None:
    if who == "anonymous":
        headers = {}
    elif who.startswith("key:"):
        headers = api_key(state, Role(who.removeprefix("key:")))[1]
    else:
        headers = bearer(app, add_user(state, Role(who)))
    response = client.get(path, headers=headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert "inspector" in response.json()["detail"]


def test_entries_come_newest_first_with_their_hashes(
    client: TestClient, state: StateDB, clock: ManualClock, inspector: dict[str, str]
) -> None:
    seed(state, clock)
    page = client.get("/api/v1/audit", headers=inspector).json()
    assert page["total"] == 5 and page["offset"] == 0 and page["limit"] == 100
    items = page["items"]
    assert [e["seq"] for e in items] == [5, 4, 3, 2, 1]
    acked = items[2]
    assert acked["actor"] == "user:zhang" and acked["action"] == "alert.acknowledged"
    assert acked["target"] == "a1" and acked["detail"] == {"note": "已到现场"}
    # Everything needed to check the chain is there: each hash recomputes from the fields.
    for entry, before in zip(items, [*items[1:], None], strict=True):
        recomputed = audit.entry_hash(
            seq=entry["seq"],
            ts=datetime.fromisoformat(entry["ts"]),
            actor=entry["actor"],
            action=entry["action"],
            target=entry["target"],
            detail_json=audit.canonical_detail(entry["detail"]),
            prev_hash=entry["prev_hash"],
        )
        assert recomputed == entry["hash"]
        assert entry["prev_hash"] == (before["hash"] if before else audit.GENESIS_HASH)


@pytest.mark.parametrize(
    ("query", "seqs"),
    [
        ({"actor": "user:zhang"}, [3, 1]),
        ({"action": "alert."}, [5, 3, 2]),
        ({"action": "alert.acknowledged"}, [3]),
        ({"action": "alert.ack"}, [3]),
        ({"action": "alert%"}, []),  # a wildcard character matches only itself
        ({"action": "_lert."}, []),
        ({"target": "a1"}, [5, 3, 2]),
        ({"actor": "system", "action": "alert.", "target": "a1"}, [5, 2]),
        ({"actor": "nobody"}, []),
        # Time range: [start, end), default the last 30 days up to the API's clock.
        ({"start": "2025-12-31T00:00:00Z"}, [5, 4, 3]),
        ({"start": "2025-12-30T00:00:00Z", "end": "2025-12-31T04:00:00Z"}, [2, 1]),
        ({"start": "2025-12-30T08:00:00+08:00", "end": "2025-12-31T04:00:01Z"}, [3, 2, 1]),
        ({"end": "2025-12-30T00:00:00Z"}, []),
    ],
)
def test_filters(
    client: TestClient,
    state: StateDB,
    clock: ManualClock,
    inspector: dict[str, str],
    query: dict[str, str],
    seqs: list[int],
) -> None:
    seed(state, clock)
    page = client.get("/api/v1/audit", params=query, headers=inspector).json()
    assert [e["seq"] for e in page["items"]] == seqs
    assert page["total"] == len(seqs)


def test_paging_walks_the_whole_log(
    client: TestClient, state: StateDB, clock: ManualClock, inspector: dict[str, str]
) -> None:
    seed(state, clock)
    seen: list[int] = []
    for offset in (0, 2, 4):
        page = client.get(
            "/api/v1/audit", params={"limit": 2, "offset": offset}, headers=inspector
        ).json()
        assert page["total"] == 5
        seen += [e["seq"] for e in page["items"]]
    assert seen == [5, 4, 3, 2, 1]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ({"start": "2024-01-01T00:00:00Z"}, "longer than 366 days"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2025-12-01T00:00:00Z"}, "end must be after"),
        ({"start": "yesterday"}, "start"),
        ({"limit": "501"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"actor": "a\x00b"}, "actor"),
        ({"action": "x" * 201}, "action"),
    ],
)
def test_bad_queries_are_refused_with_a_reason(
    client: TestClient, inspector: dict[str, str], query: dict[str, str], says: str
) -> None:
    response = client.get("/api/v1/audit", params=query, headers=inspector)
    assert response.status_code == 422
    assert says in response.text


def test_verify_reports_an_intact_chain(
    client: TestClient, state: StateDB, clock: ManualClock, inspector: dict[str, str]
) -> None:
    seed(state, clock)
    result = client.get("/api/v1/audit/verify", headers=inspector).json()
    assert result["ok"] is True and result["entries"] == 5
    assert result["first_bad_seq"] is None
    assert result["head_hash"] == audit.entries(state, limit=1)[0].hash


def test_verify_names_the_first_tampered_entry(
    client: TestClient, state: StateDB, clock: ManualClock, inspector: dict[str, str]
) -> None:
    seed(state, clock)
    drop_append_only_triggers(state)
    with state.session() as s:
        s.execute(text("UPDATE audit_log SET actor = 'user:someone' WHERE seq = 3"))
    response = client.get("/api/v1/audit/verify", headers=inspector)
    assert response.status_code == 200
    result = response.json()
    assert result["ok"] is False
    assert result["first_bad_seq"] == 3 and result["entries"] == 2
    assert "modified" in result["reason"]
