"""InfluxStore on the wire: requests it sends, how it maps InfluxDB's failures, no token leaks.

A tiny recording HTTP server on 127.0.0.1:0 answers what each case needs (400, 429 with
Retry-After, 503, ...); the cases that real InfluxDB can produce (missing database, partial
write, an outage, 1.8 authentication) run against the real influxd 1.8.10.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.clock import ManualClock
from gateway.reading import Event
from gateway.store.base import ReadingFilter, StoreError
from gateway.store.influx import InfluxStore
from gateway.store.influx_wire import parse_retry_after, scrub
from tests.servers import InfluxServer, ServerStartError, free_port
from tests.test_store import T0, rd

S = 1_000_000_000
TOKEN = "tok-Zq9xW3-secret-token=="
EVERYTHING = ReadingFilter()
# The test clock's now (T0) plus 30 s, as an HTTP date.
IN_30_S = format_datetime(datetime.fromtimestamp(T0 // S + 30, tz=UTC), usegmt=True)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    """HTTP/1.1 on loopback: records each request, answers from a script (default 204)."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    hang: bool = False
    port: int = 0
    _server: asyncio.Server | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._release.set()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            if not request_line:
                return
            method, target, _ = request_line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            parts = urlsplit(target)
            self.requests.append(Recorded(method, parts.path, parse_qs(parts.query), headers, body))
            if self.hang:
                await self._release.wait()
                return
            status, extra, payload = self.answers.pop(0) if self.answers else (204, {}, b"")
            head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
            head += [f"{k}: {v}" for k, v in {**extra, "Content-Length": str(len(payload))}.items()]
            head += ["Connection: close", "", ""]
            writer.write("\r\n".join(head).encode("latin-1") + payload)
            await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def recorder() -> AsyncIterator[RecordingServer]:
    server = RecordingServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def store(recorder: RecordingServer, clock: ManualClock) -> AsyncIterator[InfluxStore]:
    s = InfluxStore(
        recorder.url,
        token=TOKEN,
        org="-",
        bucket="archwatch/autogen",
        database="archwatch",
        timeout_s=5,
        clock=clock,
    )
    yield s
    await s.close()


async def test_a_batch_is_one_line_protocol_request_carrying_the_token(
    store: InfluxStore, recorder: RecordingServer
) -> None:
    batch = [rd("t1", T0 + i, 20.0 + i / 100) for i in range(500)]
    await store.write_readings(batch)
    assert len(recorder.requests) == 1
    req = recorder.requests[0]
    assert (req.method, req.path) == ("POST", "/api/v2/write")
    assert req.query["bucket"] == ["archwatch/autogen"]
    assert req.query["precision"] == ["ns"]
    assert req.headers["authorization"] == f"Token {TOKEN}"
    lines = req.body.decode().split("\n")
    assert len(lines) == 500
    assert lines[0] == (
        "readings,building=b1,device=th-1,kind=temperature,room=r101,sensor=t1,site=hq,"
        f"storage_class=paper value=20.0 {T0}"
    )


async def test_events_are_lines_of_the_events_measurement(
    store: InfluxStore, recorder: RecordingServer
) -> None:
    event = Event(
        ts_ns=T0,
        kind="alert_fired",
        title='smoke in "r201"',
        text="a\\b",
        severity="critical",
        tags={"room": "r201", "alert_id": "a 1", "empty": ""},
        drill_id="fire-2026",
    )
    await store.write_events([event])
    body = recorder.requests[0].body.decode()
    assert body == (
        "events,alert_id=a\\ 1,drill_id=fire-2026,kind=alert_fired,room=r201,severity=critical"
        f' text="a\\\\b",title="smoke in \\"r201\\"" {T0}'
    )


@pytest.mark.parametrize(
    ("status", "headers", "body", "retryable", "bad_request", "retry_after", "says"),
    [
        (
            400,
            {},
            b'{"error":"unable to parse \'x\': missing fields"}',
            False,
            True,
            None,
            "missing fields",
        ),
        (
            400,
            {"X-Influxdb-Error": "partial write: field type conflict dropped=1"},
            b"",
            False,
            True,
            None,
            "partial write",
        ),
        (
            422,
            {},
            b'{"code":"invalid","message":"points beyond retention policy"}',
            False,
            True,
            None,
            "retention",
        ),
        (429, {"Retry-After": "7"}, b"", True, False, 7.0, "busy"),
        (503, {"Retry-After": IN_30_S}, b"", True, False, 30.0, "busy"),
        (503, {}, b"", True, False, None, "503"),
        (
            500,
            {},
            b'{"error":"engine: cache-max-memory-size exceeded"}',
            True,
            False,
            None,
            "cache-max-memory-size",
        ),
        (502, {}, b"<html>Bad Gateway</html>", True, False, None, "502"),
        (
            401,
            {},
            f'{{"error":"token {TOKEN} is not valid"}}'.encode(),
            True,
            False,
            None,
            "ARCHWATCH_INFLUX_TOKEN",
        ),
        (
            403,
            {},
            b'{"message":"insufficient permissions"}',
            True,
            False,
            None,
            "ARCHWATCH_INFLUX_TOKEN",
        ),
        (
            404,
            {"X-Influxdb-Error": 'database not found: "archwatch"'},
            b"",
            True,
            False,
            None,
            'CREATE DATABASE "archwatch"',
        ),
        (
            404,
            {},
            b'{"code":"not found","message":"bucket \\"x\\" not found"}',
            True,
            False,
            None,
            "not found",
        ),
    ],
)
async def test_write_failures_map_to_store_errors(
    store: InfluxStore,
    recorder: RecordingServer,
    status: int,
    headers: dict[str, str],
    body: bytes,
    retryable: bool,
    bad_request: bool,
    retry_after: float | None,
    says: str,
) -> None:
    recorder.answers.append((status, headers, body))
    with pytest.raises(StoreError) as caught:
        await store.write_readings([rd("t1", T0, 21.0)])
    err = caught.value
    assert (err.retryable, err.bad_request) == (retryable, bad_request)
    assert err.retry_after == (pytest.approx(retry_after) if retry_after is not None else None)
    assert says in str(err)
    assert f"HTTP {status}" in str(err)
    assert TOKEN not in str(err)
    assert recorder.requests[0].headers["authorization"] == f"Token {TOKEN}"


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [
        (429, {"Retry-After": "12"}, True, 12.0),
        (503, {}, True, None),
        (401, {}, True, None),
        (400, {}, False, None),
    ],
)
async def test_query_failures_map_to_store_errors(
    store: InfluxStore,
    recorder: RecordingServer,
    status: int,
    headers: dict[str, str],
    retryable: bool,
    retry_after: float | None,
) -> None:
    recorder.answers.append((status, headers, f'{{"error":"no ({TOKEN})"}}'.encode()))
    with pytest.raises(StoreError) as caught:
        await store.count(EVERYTHING, T0, T0 + S)
    assert caught.value.retryable is retryable
    assert caught.value.retry_after == retry_after
    assert TOKEN not in str(caught.value)
    req = recorder.requests[0]
    assert (req.method, req.path) == ("GET", "/query")
    assert req.query["db"] == ["archwatch"]
    assert req.query["epoch"] == ["ns"]
    assert req.headers["authorization"] == f"Token {TOKEN}"


async def test_an_error_inside_a_query_answer_is_a_store_error(
    store: InfluxStore, recorder: RecordingServer
) -> None:
    recorder.answers.append(
        (200, {"Content-Type": "application/json"}, b'{"results":[{"error":"boom"}]}')
    )
    with pytest.raises(StoreError, match="boom"):
        await store.raw(EVERYTHING, T0, T0 + S)


async def test_ping_wants_a_2xx_answer_from_ping(
    store: InfluxStore, recorder: RecordingServer
) -> None:
    await store.ping()
    recorder.answers.append((500, {}, b""))
    with pytest.raises(StoreError) as caught:
        await store.ping()
    assert caught.value.retryable
    assert [(r.method, r.path) for r in recorder.requests] == [("GET", "/ping")] * 2


async def test_no_token_means_no_authorization_header(recorder: RecordingServer) -> None:
    store = InfluxStore(recorder.url, token=None, org="-", bucket="b", database="b")
    try:
        await store.write_readings([rd("t1", T0, 1.0)])
        await store.ping()
    finally:
        await store.close()
    assert all("authorization" not in r.headers for r in recorder.requests)


async def test_a_server_that_never_answers_is_a_retryable_timeout(
    recorder: RecordingServer,
) -> None:
    recorder.hang = True
    store = InfluxStore(recorder.url, token=TOKEN, org="-", bucket="b", database="b", timeout_s=0.3)
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.write_readings([rd("t1", T0, 1.0)]),
        lambda: store.count(EVERYTHING, T0, T0 + S),
        store.ping,
    ]
    try:
        for call in calls:
            with pytest.raises(StoreError) as caught:
                await call()
            assert caught.value.retryable
            assert "no answer within 0.3 s" in str(caught.value)
            assert TOKEN not in str(caught.value)
    finally:
        await store.close()


async def test_nothing_listening_is_retryable() -> None:
    port = free_port()
    store = InfluxStore(f"http://127.0.0.1:{port}", token=TOKEN, org="-", bucket="b", database="b")
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: store.write_readings([rd("t1", T0, 1.0)]),
        lambda: store.write_events([Event(ts_ns=T0, kind="k", title="t")]),
        lambda: store.latest(EVERYTHING),
        store.ping,
    ]
    try:
        for call in calls:
            with pytest.raises(StoreError) as caught:
                await call()
            assert caught.value.retryable
            assert f"127.0.0.1:{port}" in str(caught.value)
            assert TOKEN not in str(caught.value)
    finally:
        await store.close()


async def test_credentials_in_the_url_become_the_token_and_are_never_printed(
    recorder: RecordingServer,
) -> None:
    url = recorder.url.replace("http://", "http://reader:pw-Very-Secret@")
    store = InfluxStore(url, token=None, org="-", bucket="b", database="b")
    explicit = InfluxStore(url, token=TOKEN, org="-", bucket="b", database="b")
    recorder.answers += [(204, {}, b""), (500, {}, b""), (204, {}, b""), (503, {}, b"")]
    try:
        await store.write_readings([rd("t1", T0, 1.0)])
        with pytest.raises(StoreError) as caught:
            await store.count(EVERYTHING, T0, T0 + S)
        await explicit.write_readings([rd("t1", T0, 1.0)])
        with pytest.raises(StoreError) as caught_explicit:
            await explicit.ping()
    finally:
        await store.close()
        await explicit.close()
    sent = [r.headers["authorization"] for r in recorder.requests]
    assert sent == ["Token reader:pw-Very-Secret"] * 2 + [f"Token {TOKEN}"] * 2
    for err in (caught.value, caught_explicit.value):
        assert "pw-Very-Secret" not in str(err)
        assert f"127.0.0.1:{recorder.port}" in str(err)


@pytest.mark.parametrize("sensor", ["back\\slash", "trailing\\", "line\nbreak", "cr\rhere"])
async def test_an_id_line_protocol_cannot_carry_is_refused_before_sending(
    store: InfluxStore, recorder: RecordingServer, sensor: str
) -> None:
    with pytest.raises(StoreError) as caught:
        await store.write_readings([rd("t1", T0, 1.0), rd(sensor, T0, 2.0)])
    assert caught.value.bad_request
    assert not caught.value.retryable
    assert recorder.requests == []


# --- against the real InfluxDB 1.8.10 ----------------------------------------------------


def _real(server: InfluxServer, **kwargs: str) -> InfluxStore:
    db = kwargs.get("database", server.database)
    return InfluxStore(
        server.url, token=kwargs.get("token"), org="-", bucket=db, database=db, timeout_s=5
    )


async def test_a_missing_database_is_retryable_and_says_to_create_it(
    influx: InfluxServer,
) -> None:
    store = _real(influx, database="not_created_yet")
    try:
        with pytest.raises(StoreError) as caught:
            await store.write_readings([rd("t1", T0, 1.0)])
        assert caught.value.retryable
        assert 'CREATE DATABASE "not_created_yet"' in str(caught.value)
        with pytest.raises(StoreError) as caught:
            await store.count(EVERYTHING, T0, T0 + S)
        assert caught.value.retryable
        assert 'CREATE DATABASE "not_created_yet"' in str(caught.value)
    finally:
        await store.close()


async def test_a_field_type_conflict_is_a_bad_request(influx: InfluxServer) -> None:
    # Someone else wrote 'value' as a string first: InfluxDB refuses our floats for good.
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{influx.url}/write",
            params={"db": influx.database},
            content=f'readings,sensor=x value="on" {T0}',
        )
        r.raise_for_status()
    store = _real(influx)
    try:
        with pytest.raises(StoreError) as caught:
            await store.write_readings([rd("t1", T0 + S, 21.0)])
        assert caught.value.bad_request
        assert not caught.value.retryable
        assert "field type conflict" in str(caught.value)
    finally:
        await store.close()


async def test_an_outage_is_retryable_and_the_same_batch_lands_afterwards(
    influx: InfluxServer,
) -> None:
    store = _real(influx)
    batch = [rd("t1", T0 + i * S, float(i)) for i in range(10)]
    try:
        await store.write_readings(batch[:5])
        await asyncio.to_thread(influx.stop)
        with pytest.raises(StoreError) as caught:
            await store.write_readings(batch)
        assert caught.value.retryable
        with pytest.raises(StoreError):
            await store.ping()
        await asyncio.to_thread(influx.start)
        await store.write_readings(batch)  # the spool's retry: the first five are overwritten
        assert await store.count(EVERYTHING, T0, T0 + 60 * S) == 10
    finally:
        await store.close()


class AuthInfluxServer(InfluxServer):
    """influxd 1.8.10 with ``auth-enabled = true`` and one admin user."""

    user = "archwatch"
    password = "pw-Kq7-Real-Secret"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        text = self.config.read_text(encoding="utf-8")
        self.config.write_text(text.replace("[http]\n", "[http]\n  auth-enabled = true\n"))

    def after_start(self) -> None:
        # With no user yet, influxd accepts nothing but the creation of an admin.
        create_user = f"CREATE USER {self.user} WITH PASSWORD '{self.password}' WITH ALL PRIVILEGES"
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                r = httpx.post(f"{self.url}/query", params={"q": create_user})
                if r.status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise ServerStartError("influxd did not accept CREATE USER")
            time.sleep(0.2)
        httpx.post(
            f"{self.url}/query",
            params={"q": f"CREATE DATABASE {self.database}"},
            auth=(self.user, self.password),
        ).raise_for_status()


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthInfluxServer]:
    server = AuthInfluxServer(tmp_path_factory.mktemp("influx-auth"))
    server.start()
    yield server
    server.stop()


async def test_influx_18_takes_user_colon_password_as_the_token(
    auth_influx: AuthInfluxServer,
) -> None:
    store = _real(auth_influx, token=f"{auth_influx.user}:{auth_influx.password}")
    try:
        await store.write_readings([rd("t1", T0, 21.0), rd("h1", T0, 55.0)])
        assert await store.count(EVERYTHING, T0, T0 + S) == 2
        assert [r.sensor for r in await store.latest(EVERYTHING)] == ["h1", "t1"]
        await store.ping()
    finally:
        await store.close()


async def test_a_wrong_password_is_retryable_and_never_printed(
    auth_influx: AuthInfluxServer,
) -> None:
    wrong = f"{auth_influx.user}:pw-Wrong-Guess-42"
    store = _real(auth_influx, token=wrong)
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.write_readings([rd("t1", T0, 1.0)]),
            lambda: store.raw(EVERYTHING, T0, T0 + S),
        ]
        for call in calls:
            with pytest.raises(StoreError) as caught:
                await call()
            assert caught.value.retryable
            assert "HTTP 401" in str(caught.value)
            assert "ARCHWATCH_INFLUX_TOKEN" in str(caught.value)
            assert "pw-Wrong-Guess-42" not in str(caught.value)
    finally:
        await store.close()


# --- pure helpers ---------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**9))
def test_retry_after_in_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds), T0) == float(seconds)
    assert parse_retry_after(f"  {seconds} ", T0) == float(seconds)


@given(st.integers(min_value=-86_400, max_value=10 * 86_400))
def test_retry_after_as_an_http_date_counts_from_the_clock(offset_s: int) -> None:
    when = datetime.fromtimestamp(T0 // S + offset_s, tz=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), T0) == max(0.0, offset_s)


@given(st.text())
def test_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, T0)
    assert result is None or result >= 0.0


def test_retry_after_absent_or_garbage_is_none() -> None:
    assert parse_retry_after(None, T0) is None
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after("-5", T0) == 0.0


@pytest.mark.parametrize(
    ("text", "token", "expected"),
    [
        ("bad token abc-123", "abc-123", "bad token ***"),
        ("user admin pw hunter22 rejected", "admin:hunter22", "user admin pw *** rejected"),
        ("admin:hunter22 rejected", "admin:hunter22", "*** rejected"),
        ("nothing secret", None, "nothing secret"),
    ],
)
def test_scrub_removes_the_token_and_a_18_password(
    text: str, token: str | None, expected: str
) -> None:
    assert scrub(text, token) == expected
