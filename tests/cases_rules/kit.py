"""A small site and helpers to drive rule evaluators on explicit timestamps."""

from __future__ import annotations

import tempfile
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from alerting.evaluators import EVALUATORS, Evaluator
from alerting.model import Condition
from alerting.rules import Rule, RuleBase
from gateway.reading import Reading, ns_from_datetime
from gateway.site import Site, load_site

# Monday 2026-01-05 10:00 in Asia/Shanghai (02:00 UTC): inside r1's opening hours.
T0_NS = ns_from_datetime(datetime(2026, 1, 5, 2, 0, tzinfo=UTC))
S = 1_000_000_000

SITE_YAML = """\
site: {id: s1, name: 测试馆, timezone: Asia/Shanghai}
standards_dir: profiles
buildings:
  - id: b1
    outdoor:
      - id: wx
        protocol: mqtt
        topic: t/wx
        expected_interval: 60
        sensors:
          - {id: out-t, kind: temperature, json_path: t}
    rooms:
      - id: r1
        name: 101 纸质档案库
        storage_class: paper
        schedule:
          - {days: [mon, tue, wed, thu, fri], start: "08:30", end: "17:30"}
          - {days: [sat], start: "22:00", end: "02:00"}
        devices:
          - id: d1
            protocol: mqtt
            topic: t/d1
            expected_interval: 10
            offline_after: 3
            sensors:
              - {id: r1-t, name: 101 温度, kind: temperature, json_path: t,
                 calibration: {calibrated_on: 2025-01-05, interval_days: 365}}
              - {id: r1-h, name: 101 湿度, kind: humidity, json_path: h}
              - {id: r1-t2, kind: temperature, json_path: t2}
              - {id: r1-smoke1, name: 烟感1, kind: smoke, json_path: s1}
              - {id: r1-smoke2, name: 烟感2, kind: smoke, json_path: s2}
              - {id: r1-door, name: 库门, kind: door, json_path: door}
              - {id: r1-leak, kind: water_leak, json_path: leak}
              - {id: r1-card, kind: access, json_path: card}
              - {id: r1-bat, kind: battery, json_path: bat}
          - id: d1m
            protocol: modbus_tcp
            host: 127.0.0.1
            port: 5020
            profile: rs485_th_int16
            poll_interval: 2
            offline_after: 5
            sensors:
              - {id: r1-mt, point: temperature}
      - id: r2
        name: 201 母片库
        storage_class: film_master
        devices:
          - id: d2
            protocol: mqtt
            topic: t/d2
            sensors:
              - {id: r2-t, kind: temperature, json_path: t,
                 calibration: {calibrated_on: 2025-01-06, interval_days: 365}}
              - {id: r2-h, kind: humidity, json_path: h}
              - {id: r2-smoke, kind: smoke, json_path: s}
              - {id: r2-door, kind: door, json_path: door}
              - {id: r2-card, kind: access, json_path: card}
      - id: r3
        name: 301 严格库
        storage_class: strict_paper
        devices:
          - id: d3
            protocol: mqtt
            topic: t/d3
            sensors:
              - {id: r3-h, kind: humidity, json_path: h}
"""

STRICT_PROFILE = """\
id: strict_paper
name: 纸质档案库（严格）
source: test profile, the strict reading of the 1987 regulation's ±5 %RH
temperature: {min: 14, max: 24}
humidity: {min: 45, max: 60}
fluctuation: {mode: strict, temperature: 2, humidity: 5, window_hours: 24}
"""


@cache
def site() -> Site:
    """The test site (written once per test process)."""
    folder = Path(tempfile.mkdtemp(prefix="archwatch-rules-"))
    (folder / "profiles").mkdir()
    (folder / "profiles" / "strict_paper.yaml").write_text(STRICT_PROFILE, encoding="utf-8")
    path = folder / "site.yaml"
    path.write_text(SITE_YAML, encoding="utf-8")
    return load_site(path)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


_RULE: TypeAdapter[RuleBase] = TypeAdapter(Rule)


def rule(kind: str, **params: Any) -> RuleBase:
    """A validated rule of ``kind`` (``for`` may be passed as ``for_``)."""
    if "for_" in params:
        params["for"] = params.pop("for_")
    result: RuleBase = _RULE.validate_python({"id": f"t-{kind}", "kind": kind, **params})
    return result


def evaluator(kind: str, **params: Any) -> Evaluator:
    return EVALUATORS[kind](rule(kind, **params), site())


def reading(sensor: str, value: float, t_s: float, drill: str | None = None) -> Reading:
    """A reading of a test-site sensor ``t_s`` seconds after T0."""
    return site().sensor(sensor).reading(value, T0_NS + round(t_s * S), drill_id=drill)


Step = tuple[float, str, float] | tuple[float, str, float, str]


def feed(ev: Evaluator, steps: Sequence[Step]) -> list[Condition]:
    """Feed readings ``(t_s, sensor, value[, drill])``; sensor ``tick`` calls on_tick."""
    out: list[Condition] = []
    for step in steps:
        t_s, sensor, value = step[0], step[1], step[2]
        drill = step[3] if len(step) > 3 else None  # type: ignore[misc]
        if sensor == "tick":
            out.extend(ev.on_tick(T0_NS + round(t_s * S)))
        else:
            out.extend(ev.on_reading(reading(sensor, value, t_s, drill)))
    return out


def last_state(conds: Sequence[Condition], **labels: str) -> bool | None:
    """Whether the newest condition matching ``labels`` is active (None: there is none)."""
    match = [c for c in conds if all(c.labels.get(k) == v for k, v in labels.items())]
    return match[-1].active if match else None
