"""The gateway's heartbeat in the state database: its counters, for the API's /metrics.

The API runs in its own process and cannot read the gateway's in-memory metrics; the
gateway writes a snapshot of them (Prometheus text) every few seconds to one row per
gateway (migration 0008), and the API serves the newest snapshot with its age, so a
stopped gateway shows as stale rather than as a flat line of old numbers.

This module also parses snapshots back and merges families from several sources, so
/metrics names each family once (one HELP and one TYPE line) whatever the number of
gateways.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, String, Text, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, mapped_column

from gateway.clock import Clock
from gateway.metrics import Metrics, format_value
from gateway.models import Base
from gateway.statedb import StateDB

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 5.0
Labels = tuple[tuple[str, str], ...]


class GatewayHeartbeatRow(Base):
    """The newest metrics snapshot of one gateway process (by name: the site id)."""

    __tablename__ = "gateway_heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    updated_at_ns: Mapped[int] = mapped_column(BigInteger())
    metrics: Mapped[str] = mapped_column(Text())


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One gateway's newest snapshot: when it was written (its clock) and the text."""

    name: str
    updated_at_ns: int
    metrics: str

    def age_s(self, now_ns: int) -> float:
        """Seconds since the snapshot was written (never negative: clocks differ a little)."""
        return max(0.0, (now_ns - self.updated_at_ns) / 1e9)


@dataclass(slots=True)
class Family:
    """One metric family: name (with the ``archwatch_`` prefix), type, help, samples."""

    name: str
    kind: str = "untyped"
    help: str = ""
    samples: dict[Labels, float] = field(default_factory=dict)


# --- the Prometheus text format (the subset archwatch writes) ---------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{(.*)\}})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_KINDS = {"counter", "gauge", "untyped", "summary", "histogram"}


class FormatError(ValueError):
    """A snapshot that is not Prometheus text as archwatch writes it (names the line)."""


def _unescape(value: str) -> str:
    out, chars = [], iter(value)
    for c in chars:
        if c == "\\":
            nxt = next(chars, "")
            out.append("\n" if nxt == "n" else nxt)
        else:
            out.append(c)
    return "".join(out)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _parse_labels(text: str, line_no: int) -> Labels:
    labels: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        found = _LABEL.match(text, pos)
        if found is None:
            raise FormatError(f"line {line_no}: bad labels {text!r}")
        labels.append((found.group(1), _unescape(found.group(2))))
        pos = found.end()
    return tuple(sorted(labels))


def _parse_value(text: str, line_no: int) -> float:
    try:
        return float(text)  # accepts +Inf, -Inf, NaN and Python's inf/nan
    except ValueError:
        raise FormatError(f"line {line_no}: bad value {text!r}") from None


def parse(text: str) -> list[Family]:
    """Families of a Prometheus text exposition, in order of first appearance."""
    families: dict[str, Family] = {}

    def family(name: str) -> Family:
        return families.setdefault(name, Family(name))

    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                family(parts[2]).help = _unescape(parts[3]) if len(parts) == 4 else ""
            elif len(parts) == 4 and parts[1] == "TYPE":
                if parts[3] not in _KINDS:
                    raise FormatError(f"line {line_no}: unknown type {parts[3]!r}")
                family(parts[2]).kind = parts[3]
            continue  # other comments are allowed by the format
        found = _SAMPLE.match(line)
        if found is None:
            raise FormatError(f"line {line_no}: not a sample: {line!r}")
        name, labels, value = found.groups()
        family(name).samples[_parse_labels(labels or "", line_no)] = _parse_value(value, line_no)
    return list(families.values())


def render(families: Iterable[Family]) -> str:
    """Prometheus text: each family once, HELP and TYPE before its samples."""
    lines: list[str] = []
    for fam in families:
        lines.append(f"# HELP {fam.name} {_escape_help(fam.help or fam.name)}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in sorted(fam.samples.items()):
            if labels:
                inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
                lines.append(f"{fam.name}{{{inner}}} {format_value(value)}")
            else:
                lines.append(f"{fam.name} {format_value(value)}")
    return "\n".join(lines) + "\n"


def families_of(metrics: Metrics) -> list[Family]:
    """The families of ``metrics``."""
    return parse(metrics.render_prometheus())


def snapshot(metrics: Metrics) -> str:
    """The text a gateway writes as its heartbeat."""
    return render(families_of(metrics))


def merge(
    sources: Iterable[tuple[Iterable[Family], Labels]],
) -> list[Family]:
    """One family per name from several sources; each source's samples get its extra labels
    (e.g. ``gateway="hn-archives"``). The first source to describe a name fixes its type; a
    later family of another type under that name is dropped (logged): two types under one
    name would make the whole exposition unreadable for Prometheus."""
    merged: dict[str, Family] = {}
    for families, extra in sources:
        for fam in families:
            into = merged.setdefault(fam.name, Family(fam.name, fam.kind, fam.help))
            if into.kind != fam.kind:
                log.warning(
                    "metric %s is a %s here and a %s elsewhere; the %s is left out",
                    fam.name,
                    into.kind,
                    fam.kind,
                    fam.kind,
                )
                continue
            into.help = into.help or fam.help
            for labels, value in fam.samples.items():
                into.samples[tuple(sorted(dict(labels + extra).items()))] = value
    return list(merged.values())


# --- the state database (blocking; async callers use asyncio.to_thread) ----------------------


def write(db: StateDB, name: str, metrics_text: str, now_ns: int) -> None:
    """Insert or replace the heartbeat row of gateway ``name``."""
    values = {"name": name, "updated_at_ns": now_ns, "metrics": metrics_text}
    insert = pg_insert if db.dialect == "postgresql" else sqlite_insert
    statement = insert(GatewayHeartbeatRow).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[GatewayHeartbeatRow.name],
        set_={"updated_at_ns": now_ns, "metrics": metrics_text},
    )
    with db.session(write=True) as session:
        session.execute(statement)


def read_all(db: StateDB) -> list[Heartbeat]:
    """Every gateway's newest heartbeat, by name."""
    with db.session() as session:
        rows = session.execute(select(GatewayHeartbeatRow).order_by(GatewayHeartbeatRow.name))
        return [Heartbeat(r.name, r.updated_at_ns, r.metrics) for r in rows.scalars()]


class HeartbeatWriter:
    """Writes a gateway's metrics to the state database every ``interval_s`` seconds.

    ``collect`` (optional) refreshes gauges first (spool depth, devices online). Times come
    from the gateway's clock. A failing write is logged once (and its recovery once), never
    raised: the heartbeat must not stop the gateway, and its growing age shows the outage.
    """

    def __init__(
        self,
        db: StateDB,
        name: str,
        metrics: Metrics,
        clock: Clock,
        *,
        collect: Callable[[], Awaitable[object]] | None = None,
        interval_s: float = HEARTBEAT_INTERVAL_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.name = name
        self.metrics = metrics
        self.clock = clock
        self.interval_s = interval_s
        self._collect = collect
        self._sleep = sleep
        self._failing = False
        self.written = 0

    async def beat(self) -> bool:
        """Write one snapshot now; False (logged once) when it could not be written."""
        try:
            if self._collect is not None:
                await self._collect()
            text = snapshot(self.metrics)
            await asyncio.to_thread(write, self.db, self.name, text, self.clock.now_ns())
        except Exception:
            if not self._failing:
                log.exception(
                    "gateway heartbeat not written; /metrics will show it ageing "
                    "(retrying every %.1f s)",
                    self.interval_s,
                )
                self._failing = True
            return False
        if self._failing:
            log.info("gateway heartbeat written again")
            self._failing = False
        self.written += 1
        return True

    async def run(self) -> None:
        """Beat until cancelled."""
        while True:
            await self.beat()
            await self._sleep(self.interval_s)
