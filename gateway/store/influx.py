"""InfluxDB back end: writes with influxdb-client's async write API, reads with InfluxQL.

Works with InfluxDB 1.8 (``/api/v2/write`` and ``/query`` compatibility endpoints), 2.x
(with a DBRP mapping for InfluxQL) and 3.x. Every request carries
``Authorization: Token <token>`` when a token is set: 2.x/3.x take an API token there, and
1.8 takes ``user:password`` in the same header, on ``/query`` as on ``/api/v2/write``
(checked against influxd 1.8.10 with auth-enabled), so one scheme serves every version and
the password never appears in a URL.

Exactly once on the write path: ``write_readings`` says, through
``StoreError.maybe_applied``, whether a failed write may have been applied anyway (timeout,
connection lost after sending, 5xx, partial write), and ``present`` answers which readings
InfluxDB already holds, with InfluxQL through ``/query`` (epoch=ns, the exact tag set and
value), so the forwarder re-sends only what is missing and no line reaches InfluxDB twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import httpx
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.client.write_api_async import WriteApiAsync
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from gateway.clock import Clock, SystemClock
from gateway.reading import Event, Reading, SensorKind
from gateway.settings import redact_url
from gateway.store.base import Aggregate, ReadingFilter, SeriesPoint, StoreError
from gateway.store.buckets import bucket_starts, fill_buckets
from gateway.store.influx_wire import (
    EVENT_FIELDS,
    EVENTS,
    READINGS,
    LineProtocolError,
    event_line,
    http_error,
    quote_ident,
    quote_literal,
    reading_line,
    scrub,
)

_TAG_COLUMNS = ("site", "building", "room", "device", "sensor", "kind", "storage_class")
_FILTER_TAGS = ("site", "building", "room", "device", "sensor", "kind")
_FUNCTIONS = {
    Aggregate.MEAN: "mean",
    Aggregate.MIN: "min",
    Aggregate.MAX: "max",
    Aggregate.COUNT: "count",
    Aggregate.LAST: "last",
}

Row = dict[str, Any]
Key = tuple[str, int, str]

# ``present`` sends its InfluxQL statements in the body of a POST, a bounded number at a time:
# a 5000-reading batch of 1000 sensors makes 1000 statements, far beyond a safe URL.
MAX_PRESENT_STATEMENTS = 200
MAX_PRESENT_QUERY_CHARS = 64_000


def _where(flt: ReadingFilter, start_ns: int | None = None, end_ns: int | None = None) -> str:
    conds = [
        f"{quote_ident(tag)} = {quote_literal(value)}"
        for tag in _FILTER_TAGS
        if (value := getattr(flt, tag)) is not None
    ]
    # A missing tag compares equal to '' in InfluxQL: this keeps drill readings out.
    conds.append(f"{quote_ident('drill_id')} = {quote_literal(flt.drill_id or '')}")
    if start_ns is not None:
        conds.append(f"time >= {int(start_ns)}")
    if end_ns is not None:
        conds.append(f"time < {int(end_ns)}")
    return " WHERE " + " AND ".join(conds)


def _reading(row: Row) -> Reading | None:
    """A Reading from one row of tag and value columns; None if it is not one of ours."""
    try:
        return Reading(
            site=str(row.get("site") or ""),
            building=str(row.get("building") or ""),
            room=str(row.get("room") or ""),
            device=str(row.get("device") or ""),
            sensor=str(row.get("sensor") or ""),
            kind=SensorKind(str(row.get("kind") or "")),
            storage_class=str(row.get("storage_class") or ""),
            value=float(row["value"]),
            ts_ns=int(row["time"]),
            drill_id=str(row["drill_id"]) if row.get("drill_id") else None,
        )
    except (KeyError, TypeError, ValueError):
        return None


def _rows(series: Row) -> list[Row]:
    """The rows of one InfluxQL series as dicts, its group-by tags merged in."""
    columns = [str(c) for c in series.get("columns", [])]
    tags = dict(series.get("tags") or {})
    return [{**tags, **dict(zip(columns, values, strict=False))} for values in series["values"]]


def _split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without ``user:password@``, and that ``user:password`` as a 1.8 token."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    return bare, f"{user}:{password}" if password else user or None


class InfluxStore:
    """Store on InfluxDB: one write request per batch, no client-side batching or retries.

    The spool is the durability path: a failed write raises StoreError and the spool keeps
    the batch. Error messages name the server and never the token. A ``user:password@`` in
    ``url`` is taken off the URL and used as the token when ``token`` is None (1.8 style).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        org: str,
        bucket: str,
        database: str,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        self._url, url_token = _split_credentials(url.rstrip("/"))
        self._server = redact_url(self._url)
        # An explicit token wins over user:password in the URL (aiohttp refuses both at once).
        self._token = token or url_token
        self._org = org
        self._bucket = bucket
        self._database = database
        self._timeout_s = timeout_s
        self._clock = clock or SystemClock()
        self._client: InfluxDBClientAsync | None = None
        self._write_api: WriteApiAsync | None = None
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"InfluxStore({self._server!r}, bucket={self._bucket!r})"

    # --- writes -------------------------------------------------------------------------

    async def write_readings(self, readings: Sequence[Reading]) -> None:
        action = f"writing {len(readings)} readings to InfluxDB at {self._server}"
        try:
            lines = [reading_line(r) for r in readings]
        except LineProtocolError as exc:
            # Refused before anything was sent: certainly not applied.
            raise StoreError(
                f"{action}: {exc}", retryable=False, bad_request=True, maybe_applied=False
            ) from None
        await self._write(lines, action)

    async def write_events(self, events: Sequence[Event]) -> None:
        action = f"writing {len(events)} events to InfluxDB at {self._server}"
        try:
            lines = [event_line(e) for e in events]
        except LineProtocolError as exc:
            raise StoreError(
                f"{action}: {exc}", retryable=False, bad_request=True, maybe_applied=False
            ) from None
        await self._write(lines, action)

    async def _write(self, lines: list[str], action: str) -> None:
        if not lines:
            return
        body = "\n".join(lines)
        try:
            await self._writer().write(
                bucket=self._bucket,
                org=self._org,
                record=body,
                write_precision=cast(WritePrecision, WritePrecision.NS),
            )
        except ApiException as exc:
            raise self._http_error(
                int(exc.status or 0), exc.headers or {}, exc.body, action
            ) from None
        except aiohttp.ClientConnectorError as exc:
            # No connection was made, so no byte of the request left: certainly not applied.
            raise self._unreachable(action, exc, maybe_applied=False) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # A timeout or a connection lost once the request may have gone out: InfluxDB
            # may have applied it. The forwarder asks ``present`` before sending it again.
            raise self._unreachable(action, exc) from None

    async def present(self, readings: Sequence[Reading]) -> set[Key]:
        """Keys of ``readings`` InfluxDB holds with the same tag set, time and value.

        One InfluxQL statement per tag set (a sensor's series): its points between the
        batch's first and last time of that series, ``GROUP BY *`` so that a series with
        extra tags is told apart; statements go a bounded number per request.
        """
        groups: dict[tuple[tuple[str, str], ...], list[Reading]] = {}
        for r in readings:
            groups.setdefault(_tag_set(r.tags()), []).append(r)
        pending = [sorted(g, key=lambda r: r.ts_ns) for g in groups.values()]
        found: set[Key] = set()
        while pending:
            retry: list[list[Reading]] = []
            for chunk in _chunks(pending):
                statements = [_present_statement(group) for group in chunk]
                answers = await self._query_many(statements, "asking which readings InfluxDB holds")
                for group, (series, partial) in zip(chunk, answers, strict=True):
                    if partial:
                        # The server's row limit cut the answer: ask again in two halves.
                        if len(group) == 1:
                            raise StoreError(
                                f"asking InfluxDB at {self._server} which readings it holds:"
                                " the answer was cut short (max-row-limit)",
                                retryable=True,
                            )
                        half = len(group) // 2
                        retry += [group[:half], group[half:]]
                        continue
                    found |= _matches(group, series)
            pending = retry
        return found

    def _writer(self) -> WriteApiAsync:
        if self._write_api is None:
            # Created lazily: the async client needs a running event loop.
            self._client = InfluxDBClientAsync(
                url=self._url,
                token=self._token or "",  # '' sends no Authorization header
                org=self._org,
                timeout=int(self._timeout_s * 1000),
            )
            self._write_api = self._client.write_api()
        return self._write_api

    # --- reads --------------------------------------------------------------------------

    async def latest(self, flt: ReadingFilter) -> list[Reading]:
        where = _where(flt)
        q = f'SELECT last("value") AS "value" FROM {quote_ident(READINGS)}{where} GROUP BY *'  # noqa: S608
        newest: dict[str, Reading] = {}
        for series in await self._query(q):
            for row in _rows(series):
                reading = _reading(row)
                if reading is None:
                    continue
                # GROUP BY * splits a sensor whose tags changed (moved room) into two series.
                seen = newest.get(reading.sensor)
                if seen is None or reading.ts_ns > seen.ts_ns:
                    newest[reading.sensor] = reading
        return [newest[s] for s in sorted(newest)]

    async def series(
        self,
        sensor: str,
        start_ns: int,
        end_ns: int,
        step_s: int,
        agg: Aggregate = Aggregate.MEAN,
        drill_id: str | None = None,
        offset_s: int = 0,
    ) -> list[SeriesPoint]:
        if not bucket_starts(start_ns, end_ns, step_s, offset_s):
            return []
        fn = _FUNCTIONS[Aggregate(agg)]
        flt = ReadingFilter(sensor=sensor, drill_id=drill_id)
        # InfluxQL's offset_interval: buckets start at epoch + offset + k × step.
        offset = int(offset_s) % int(step_s)
        group = f"time({int(step_s)}s, {offset}s)" if offset else f"time({int(step_s)}s)"
        q = (
            f'SELECT {fn}("value") AS "value" FROM {quote_ident(READINGS)}'  # noqa: S608
            f"{_where(flt, start_ns, end_ns)} GROUP BY {group} fill(null)"
        )
        values: dict[int, float | None] = {}
        for series in await self._query(q):
            for row in _rows(series):
                value = row.get("value")
                # count() fills empty buckets with 0 whatever fill() says; the Store contract
                # (and the embedded store) says an empty bucket is None.
                if value is None or (agg == Aggregate.COUNT and value == 0):
                    continue
                values[int(row["time"])] = float(value)
        return fill_buckets(start_ns, end_ns, step_s, values, offset_s)

    async def raw(
        self, flt: ReadingFilter, start_ns: int, end_ns: int, limit: int = 10_000
    ) -> list[Reading]:
        if limit <= 0 or end_ns <= start_ns:
            return []
        columns = ", ".join(quote_ident(c) for c in ("value", *_TAG_COLUMNS, "drill_id"))
        q = (
            f"SELECT {columns} FROM {quote_ident(READINGS)}{_where(flt, start_ns, end_ns)}"  # noqa: S608
            f" ORDER BY time ASC LIMIT {int(limit)}"
        )
        out = [r for s in await self._query(q) for row in _rows(s) if (r := _reading(row))]
        return out[:limit]

    async def count(self, flt: ReadingFilter, start_ns: int, end_ns: int) -> int:
        if end_ns <= start_ns:
            return 0
        where = _where(flt, start_ns, end_ns)
        q = f'SELECT count("value") AS "n" FROM {quote_ident(READINGS)}{where}'  # noqa: S608
        return sum(int(row.get("n") or 0) for s in await self._query(q) for row in _rows(s))

    async def events(
        self, start_ns: int, end_ns: int, kind: str | None = None, limit: int = 10_000
    ) -> list[Event]:
        if limit <= 0 or end_ns <= start_ns:
            return []
        conds = [f"time >= {int(start_ns)}", f"time < {int(end_ns)}"]
        if kind is not None:
            conds.append(f"{quote_ident('kind')} = {quote_literal(kind)}")
        q = (
            f"SELECT * FROM {quote_ident(EVENTS)} WHERE {' AND '.join(conds)}"  # noqa: S608
            f" ORDER BY time ASC LIMIT {int(limit)}"
        )
        out: list[Event] = []
        for series in await self._query(q):
            for row in _rows(series):
                tags = {
                    str(k): str(v)
                    for k, v in row.items()
                    if k != "time" and k not in EVENT_FIELDS and v not in (None, "")
                }
                out.append(
                    Event(
                        ts_ns=int(row["time"]),
                        kind=tags.pop("kind", ""),
                        title=str(row.get("title") or ""),
                        text=str(row.get("text") or ""),
                        severity=tags.pop("severity", "info"),
                        drill_id=tags.pop("drill_id", None),
                        tags=tags,
                    )
                )
        return out[:limit]

    async def ping(self) -> None:
        action = f"pinging InfluxDB at {self._server}"
        try:
            response = await self._http_client().get("/ping")
        except httpx.TransportError as exc:
            raise self._unreachable(action, exc) from None
        if not response.is_success:
            raise self._http_error(response.status_code, response.headers, response.content, action)

    async def close(self) -> None:
        http, client = self._http, self._client
        self._http = self._client = self._write_api = None
        if http is not None:
            await http.aclose()
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]

    # --- plumbing -----------------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"Authorization": f"Token {self._token}"} if self._token else {}
            self._http = httpx.AsyncClient(
                base_url=self._url, headers=headers, timeout=self._timeout_s
            )
        return self._http

    async def _query(self, q: str) -> list[Row]:
        """The series of one InfluxQL statement's result (empty when nothing matched)."""
        action = f"querying InfluxDB at {self._server}"
        params = {"db": self._database, "epoch": "ns", "q": q}
        try:
            response = await self._http_client().get("/query", params=params)
        except httpx.TransportError as exc:
            raise self._unreachable(action, exc) from None
        if not response.is_success:
            raise self._http_error(response.status_code, response.headers, response.content, action)
        try:
            data = response.json()
            result = data["results"][0] if "results" in data else data
            if not isinstance(result, dict):
                raise TypeError(type(result).__name__)
        except (ValueError, KeyError, IndexError, TypeError):
            raise StoreError(f"{action}: not an InfluxQL answer", retryable=True) from None
        if result.get("error"):
            said = str(result["error"])
            missing = "database not found" in said
            hint = f'; create it (CREATE DATABASE "{self._database}")' if missing else ""
            raise StoreError(scrub(f"{action}: {said}{hint}", self._token), retryable=missing)
        return list(result.get("series") or [])

    def _http_error(self, status: int, headers: Any, body: Any, action: str) -> StoreError:
        return http_error(
            status,
            headers,
            body,
            action=action,
            database=self._database,
            token=self._token,
            now_ns=self._clock.now_ns(),
        )

    async def _query_many(self, statements: list[str], what: str) -> list[tuple[list[Row], bool]]:
        """Each statement's series and whether its answer was cut short, in one POST."""
        action = f"{what} at {self._server}"
        params = {"db": self._database, "epoch": "ns"}
        try:
            response = await self._http_client().post(
                "/query", params=params, data={"q": ";\n".join(statements)}
            )
        except httpx.TransportError as exc:
            raise self._unreachable(action, exc) from None
        if not response.is_success:
            raise self._http_error(response.status_code, response.headers, response.content, action)
        try:
            results = response.json()["results"]
            if not isinstance(results, list) or len(results) != len(statements):
                raise TypeError("results")
            by_id = {int(r.get("statement_id", i)): r for i, r in enumerate(results)}
            ordered = [by_id[i] for i in range(len(statements))]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StoreError(f"{action}: not an InfluxQL answer", retryable=True) from None
        out: list[tuple[list[Row], bool]] = []
        for result in ordered:
            if result.get("error"):
                said = str(result["error"])
                missing = "database not found" in said
                hint = f'; create it (CREATE DATABASE "{self._database}")' if missing else ""
                raise StoreError(scrub(f"{action}: {said}{hint}", self._token), retryable=True)
            series = list(result.get("series") or [])
            partial = bool(result.get("partial")) or any(s.get("partial") for s in series)
            out.append((series, partial))
        return out

    def _unreachable(
        self, action: str, exc: BaseException, *, maybe_applied: bool = True
    ) -> StoreError:
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            detail = f"no answer within {self._timeout_s:g} s"
        return StoreError(
            scrub(f"{action} failed: {detail}", self._token),
            retryable=True,
            maybe_applied=maybe_applied,
        )


def _tag_set(tags: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """A tag set as InfluxDB keeps it: empty values are not written, so they do not exist."""
    return tuple(sorted((str(k), str(v)) for k, v in tags.items() if k and v))


def _present_statement(group: list[Reading]) -> str:
    """Points of one tag set between the group's first and last time (sorted group)."""
    tags = dict(_tag_set(group[0].tags()))
    # A missing tag compares equal to '': this keeps drill readings and real ones apart.
    tags.setdefault("drill_id", "")
    conds = [f"{quote_ident(k)} = {quote_literal(v)}" for k, v in sorted(tags.items())]
    conds += [f"time >= {int(group[0].ts_ns)}", f"time <= {int(group[-1].ts_ns)}"]
    return f'SELECT "value" FROM {quote_ident(READINGS)} WHERE {" AND ".join(conds)} GROUP BY *'  # noqa: S608


def _chunks(groups: list[list[Reading]]) -> Iterator[list[list[Reading]]]:
    """Groups in runs that keep one request's statements bounded in number and length."""
    chunk: list[list[Reading]] = []
    size = 0
    for group in groups:
        length = len(_present_statement(group))
        if chunk and (
            len(chunk) >= MAX_PRESENT_STATEMENTS or size + length > MAX_PRESENT_QUERY_CHARS
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(group)
        size += length
    if chunk:
        yield chunk


def _matches(group: list[Reading], series: list[Row]) -> set[Key]:
    """Keys of ``group`` found in ``series`` with exactly their tag set and value."""
    wanted = {r.ts_ns: r for r in group}
    tag_set = _tag_set(group[0].tags())
    found: set[Key] = set()
    for s in series:
        if _tag_set({str(k): str(v or "") for k, v in (s.get("tags") or {}).items()}) != tag_set:
            continue  # a series with other or extra tags is another series
        for row in _rows(s):
            reading = wanted.get(int(row["time"]))
            value = row.get("value")
            if reading is not None and value is not None and float(value) == float(reading.value):
                found.add(reading.key)
    return found


__all__ = ["InfluxStore"]
