"""Panel builders: plain dicts in Grafana's dashboard JSON model (schemaVersion 36+).

Plain dicts keep ``archwatch grafana export`` free of a runtime dependency; the tests load
every generated dashboard into grafana-foundation-sdk's ``Dashboard`` model and back and
check that nothing is lost (see grafana/README.md). Units and texts are Chinese by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gateway.standards import Band

JSON = dict[str, Any]

# Units as Grafana unit ids. °C and %RH are what Chinese repository ledgers use; custom
# "suffix:" units carry the Chinese counting word.
UNIT_TEMPERATURE = "celsius"
UNIT_HUMIDITY = "suffix:%RH"
UNIT_COUNT = "suffix: 次"
UNIT_PERCENT = "percent"

GREEN, RED, BLUE, ORANGE, GREY = "green", "red", "blue", "orange", "text"


def ref(ds_type: str, uid: str) -> JSON:
    """A datasource reference by its provisioned uid."""
    return {"type": ds_type, "uid": uid}


def influx_target(
    ds: JSON, ref_id: str, query: str, *, alias: str = "", table: bool = False
) -> JSON:
    """A raw InfluxQL query (the datasource must use the InfluxQL query language)."""
    target: JSON = {
        "datasource": ds,
        "query": query,
        "rawQuery": True,
        "refId": ref_id,
        "resultFormat": "table" if table else "time_series",
    }
    if alias:
        target["alias"] = alias
    return target


def api_target(ds: JSON, ref_id: str, path: str, root: str = "items") -> JSON:
    """A JSON query through the Infinity datasource: GET ``path`` on the datasource's base URL
    (the API), rows taken from ``root``, columns inferred from the answer."""
    return {
        "columns": [],
        "datasource": ds,
        "filters": [],
        "format": "table",
        "parser": "backend",
        "refId": ref_id,
        "root_selector": root,
        "source": "url",
        "type": "json",
        "url": path,
        "url_options": {"data": "", "method": "GET"},
    }


def band_thresholds(band: Band) -> JSON:
    """Below the band blue, inside green, above red.

    Grafana colours a value with the last step whose value is <= it. The band is inclusive
    (gateway.standards.Band.contains), so the red step starts just above ``max``
    (math.nextafter) and a reading exactly at the limit stays green.
    """
    return {
        "mode": "absolute",
        "steps": [
            {"color": BLUE, "value": None},
            {"color": GREEN, "value": band.min},
            {"color": RED, "value": math.nextafter(band.max, math.inf)},
        ],
    }


def limit_thresholds(limit: float) -> JSON:
    """Up to ``limit`` green (inclusive), above it red."""
    return {
        "mode": "absolute",
        "steps": [
            {"color": GREEN, "value": None},
            {"color": RED, "value": math.nextafter(limit, math.inf)},
        ],
    }


def plain_thresholds() -> JSON:
    return {"mode": "absolute", "steps": [{"color": GREEN, "value": None}]}


def value_map(entries: dict[str, tuple[str, str]]) -> list[JSON]:
    """``{raw value: (text, colour)}`` as one Grafana value mapping."""
    return [
        {
            "options": {
                raw: {"color": color, "index": i, "text": text}
                for i, (raw, (text, color)) in enumerate(entries.items())
            },
            "type": "value",
        }
    ]


@dataclass
class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping to a new row."""

    x: int = 0
    y: int = 0
    row_h: int = 0
    next_id: int = 1
    panels: list[JSON] = field(default_factory=list)

    def add(self, panel: JSON, w: int, h: int) -> JSON:
        if self.x + w > 24:
            self.newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        panel["id"] = self.next_id
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)
        return panel

    def newline(self) -> None:
        if self.x:
            self.y += self.row_h
        self.x, self.row_h = 0, 0

    def row(self, title: str) -> None:
        """A (non-collapsed) row header across the full width."""
        self.newline()
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "id": self.next_id,
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self.next_id += 1
        self.y += 1


def _field_config(
    unit: str,
    thresholds: JSON,
    *,
    custom: JSON | None = None,
    mappings: list[JSON] | None = None,
    decimals: int | None = None,
    color_mode: str = "thresholds",
    overrides: list[JSON] | None = None,
) -> JSON:
    defaults: JSON = {
        "color": {"mode": color_mode},
        "mappings": mappings or [],
        "thresholds": thresholds,
        "unit": unit,
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    if custom is not None:
        defaults["custom"] = custom
    return {"defaults": defaults, "overrides": overrides or []}


def _panel(kind: str, title: str, ds: JSON, targets: list[JSON], description: str) -> JSON:
    panel: JSON = {"datasource": ds, "targets": targets, "title": title, "type": kind}
    if description:
        panel["description"] = description
    return panel


_LEGEND = {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True}
_TOOLTIP = {"mode": "multi", "sort": "none"}


def timeseries(
    title: str,
    ds: JSON,
    targets: list[JSON],
    *,
    unit: str,
    thresholds: JSON | None = None,
    threshold_style: str = "off",
    draw: str = "line",
    description: str = "",
    decimals: int | None = 1,
) -> JSON:
    """A time series; ``threshold_style`` ``area`` shades the thresholds' bands behind it."""
    panel = _panel("timeseries", title, ds, targets, description)
    custom = {
        "drawStyle": draw,
        "fillOpacity": 60 if draw == "bars" else 0,
        "lineWidth": 1,
        "pointSize": 4,
        "showPoints": "auto",
        "spanNulls": False,
        "thresholdsStyle": {"mode": threshold_style},
    }
    panel["fieldConfig"] = _field_config(
        unit,
        thresholds or plain_thresholds(),
        custom=custom,
        decimals=decimals,
        color_mode="palette-classic",
    )
    panel["options"] = {"legend": _LEGEND, "tooltip": _TOOLTIP}
    return panel


def stat(
    title: str,
    ds: JSON,
    targets: list[JSON],
    *,
    unit: str,
    thresholds: JSON,
    description: str = "",
    overrides: list[JSON] | None = None,
    no_value: str = "无数据",
    decimals: int | None = 1,
) -> JSON:
    """Big numbers on a background coloured by the thresholds (the last value of each series)."""
    panel = _panel("stat", title, ds, targets, description)
    fc = _field_config(unit, thresholds, decimals=decimals, overrides=overrides)
    fc["defaults"]["noValue"] = no_value
    panel["fieldConfig"] = fc
    panel["options"] = {
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "center",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "value_and_name",
    }
    return panel


def override_by_ref(ref_id: str, properties: dict[str, Any]) -> JSON:
    """Field overrides for the fields of one query (``unit``, ``thresholds``...)."""
    return {
        "matcher": {"id": "byFrameRefID", "options": ref_id},
        "properties": [{"id": k, "value": v} for k, v in properties.items()],
    }


def state_timeline(
    title: str,
    ds: JSON,
    targets: list[JSON],
    *,
    mappings: list[JSON],
    description: str = "",
    transformations: list[JSON] | None = None,
) -> JSON:
    panel = _panel("state-timeline", title, ds, targets, description)
    panel["fieldConfig"] = _field_config(
        "none",
        plain_thresholds(),
        custom={"fillOpacity": 80, "lineWidth": 0},
        mappings=mappings,
    )
    panel["options"] = {
        "alignValue": "left",
        "legend": {**_LEGEND, "showLegend": False},
        "mergeValues": True,
        "rowHeight": 0.9,
        "showValue": "auto",
        "tooltip": {"mode": "single", "sort": "none"},
    }
    if transformations:
        panel["transformations"] = transformations
    return panel


def table(
    title: str,
    ds: JSON,
    targets: list[JSON],
    *,
    unit: str = "none",
    description: str = "",
    transformations: list[JSON] | None = None,
    mappings: list[JSON] | None = None,
    decimals: int | None = None,
    overrides: list[JSON] | None = None,
) -> JSON:
    panel = _panel("table", title, ds, targets, description)
    panel["fieldConfig"] = _field_config(
        unit,
        plain_thresholds(),
        mappings=mappings,
        decimals=decimals,
        overrides=overrides,
        color_mode="thresholds",
    )
    panel["options"] = {"cellHeight": "sm", "showHeader": True}
    if transformations:
        panel["transformations"] = transformations
    return panel


def calc_binary(left: str, op: str, right: str, alias: str) -> JSON:
    """Grafana's "Add field from calculation", binary mode; an operand is a field's display
    name or a number."""
    return {
        "id": "calculateField",
        "options": {
            "alias": alias,
            "binary": {"left": left, "operator": op, "right": right},
            "mode": "binary",
            "reduce": {"reducer": "sum"},
        },
    }


def calc_unary(operator: str, field_name: str, alias: str) -> JSON:
    """Grafana's "Add field from calculation", unary mode (``ln``, ``abs``... Grafana >= 10.3)."""
    return {
        "id": "calculateField",
        "options": {
            "alias": alias,
            "mode": "unary",
            "reduce": {"reducer": "sum"},
            "unary": {"fieldName": field_name, "operator": operator},
        },
    }
