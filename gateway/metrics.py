"""In-process counters and gauges, rendered in Prometheus text format by the API.

Deliberately tiny: a dict keyed by (name, sorted labels). Thread-safe because the MQTT
client's network thread counts too.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict


class Metrics:
    """Counters (``inc``) and gauges (``set``) with string labels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._help: dict[str, tuple[str, str]] = {}

    def describe(self, name: str, kind: str, help_text: str) -> None:
        self._help[name] = (kind, help_text)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] += value

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[(name, tuple(sorted(labels.items())))] = value

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str) -> float:
        with self._lock:
            return sum(v for (n, _), v in self._values.items() if n == name)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        with self._lock:
            for (n, labels), v in self._values.items():
                if n == name:
                    out[dict(labels).get(label, "")] += v
        return dict(out)

    def render_prometheus(self) -> str:
        lines: list[str] = []
        with self._lock:
            items = sorted(self._values.items())
        seen: set[str] = set()
        for (name, labels), value in items:
            full = f"archwatch_{name}"
            if name not in seen:
                seen.add(name)
                kind, help_text = self._help.get(name, ("untyped", name))
                lines.append(f"# HELP {full} {help_text}")
                lines.append(f"# TYPE {full} {kind}")
            if labels:
                rendered = ",".join(
                    f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                    for k, v in labels
                )
                lines.append(f"{full}{{{rendered}}} {format_value(value)}")
            else:
                lines.append(f"{full} {format_value(value)}")
        return "\n".join(lines) + "\n"


def format_value(value: float) -> str:
    """A sample value in full precision (integers without a fraction): ``:g`` would print a
    counter past a million as 1.23457e+06, turning its rate into steps."""
    value = float(value)  # Metrics.set is also handed ints
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(value)
