"""Grafana provisioning files: the two data sources and the dashboards provider.

``write_provisioning(out_dir, site)`` writes, under ``out_dir/provisioning/``:

- ``datasources/archwatch.yaml``: the InfluxDB data source (uid ``archwatch-influxdb``) and
  the archwatch API as a JSON data source (uid ``archwatch-api``);
- ``dashboards/archwatch.yaml``: a file provider loading the exported dashboards into the
  folder ``archwatch``.

Every address and secret is a Grafana environment lookup (``$ARCHWATCH_INFLUX_URL``, ...),
resolved by Grafana when it reads the file, so the committed files hold no secret and one
file serves every installation. Output is deterministic: the same site gives the same bytes
(the committed ``grafana/provisioning/`` is regenerated in CI and must not drift).

**InfluxDB, InfluxQL only.** The data source speaks InfluxQL to ``/query``, which InfluxDB
1.8 serves natively, 2.x through its v1 compatibility API (with the DBRP mapping that
``deploy/influxdb/initdb.d`` creates) and 3.x through its v1 query API. Authentication is
one custom header, ``Authorization: Token $ARCHWATCH_INFLUX_TOKEN``, exactly as the gateway
sends it (``gateway/store/influx.py``): 2.x and 3.x take an API token there, 1.8 takes
``user:password`` (its 2.x-compatible ``Token`` scheme), so no separate user/password pair
is needed and the variable means what it means for the gateway.

**The JSON data source is the Infinity plugin** (``yesoreyeram-infinity-datasource``,
maintained by Grafana Labs). The older ``marcusolsson-json-datasource`` is deprecated and
archived by its author, who points users to Infinity. Infinity sends the API key in the
``X-API-Key`` header from the server side (``auth_method: apiKey``; the key lives in
``secureJsonData``, encrypted by Grafana and never sent to browsers), prefixes every panel's
URL with the data source URL, and refuses to send the key to any host outside
``allowedHosts``. The key should have only the read-only ``inspector`` role
(``archwatch apikey create grafana --role inspector``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from gateway.site import ModbusDevice, Site
from grafana.dashboards import API_DS_TYPE, API_DS_UID, INFLUX_DS_TYPE, INFLUX_DS_UID

# The dashboards refer to the data sources by these uids: one definition, in dashboards.py.
INFLUX_UID = INFLUX_DS_UID
API_UID = API_DS_UID
INFINITY_PLUGIN = API_DS_TYPE
FOLDER_UID = "archwatch"
FOLDER_TITLE = "archwatch"
# Where docker-compose.yml mounts ./grafana/dashboards in the Grafana container (also the
# data directory of Grafana's Debian/RPM packages).
DASHBOARDS_PATH = "/var/lib/grafana/dashboards"
API_KEY_HEADER = "X-API-Key"

# Environment variables Grafana must have (Grafana expands them when it reads the files).
ENV_INFLUX_URL = "ARCHWATCH_INFLUX_URL"
ENV_INFLUX_DATABASE = "ARCHWATCH_INFLUX_DATABASE"
ENV_INFLUX_TOKEN = "ARCHWATCH_INFLUX_TOKEN"  # noqa: S105 - a variable name, not a secret
ENV_API_URL = "ARCHWATCH_API_URL"
ENV_API_KEY = "ARCHWATCH_API_KEY"
PROVISIONING_ENV = (
    ENV_INFLUX_URL,
    ENV_INFLUX_DATABASE,
    ENV_INFLUX_TOKEN,
    ENV_API_URL,
    ENV_API_KEY,
)

DATASOURCES_FILE = Path("provisioning") / "datasources" / "archwatch.yaml"
DASHBOARDS_FILE = Path("provisioning") / "dashboards" / "archwatch.yaml"


def _env(name: str) -> str:
    return f"${{{name}}}"


def min_interval(site: Site) -> str:
    """Grafana's minimum query interval for the site: the fastest sampling interval,
    rounded up to whole seconds, so ``GROUP BY time($__interval)`` never asks for buckets
    shorter than the readings' spacing (which would draw a line full of gaps)."""
    intervals = [
        p.device.poll_interval if isinstance(p.device, ModbusDevice) else p.device.expected_interval
        for p in site.placements()
    ]
    seconds = max(1, math.ceil(min(intervals))) if intervals else 10
    return f"{seconds}s"


def datasources(site: Site) -> dict[str, Any]:
    """The data sources provisioning document."""
    influx = {
        "name": "archwatch InfluxDB",
        "uid": INFLUX_UID,
        "type": INFLUX_DS_TYPE,
        "access": "proxy",
        "url": _env(ENV_INFLUX_URL),
        # Grafana before 9 reads the top-level field, later versions jsonData.dbName.
        "database": _env(ENV_INFLUX_DATABASE),
        "isDefault": True,
        "editable": False,
        "jsonData": {
            "version": "InfluxQL",
            "dbName": _env(ENV_INFLUX_DATABASE),
            "httpMode": "GET",
            "timeInterval": min_interval(site),
            "httpHeaderName1": "Authorization",
        },
        "secureJsonData": {"httpHeaderValue1": f"Token {_env(ENV_INFLUX_TOKEN)}"},
    }
    api = {
        "name": "archwatch API",
        "uid": API_UID,
        "type": INFINITY_PLUGIN,
        "access": "proxy",
        # Infinity prefixes each panel's URL (/api/v1/rooms, ...) with this base URL.
        "url": _env(ENV_API_URL),
        "isDefault": False,
        "editable": False,
        "jsonData": {
            "auth_method": "apiKey",
            "apiKeyKey": API_KEY_HEADER,
            "apiKeyType": "header",
            # The key goes to the archwatch API and nowhere else, whatever a panel asks.
            "allowedHosts": [_env(ENV_API_URL)],
            "timeoutInSeconds": 30,
        },
        "secureJsonData": {"apiKeyValue": _env(ENV_API_KEY)},
    }
    return {"apiVersion": 1, "datasources": [influx, api]}


def dashboards_provider(site: Site) -> dict[str, Any]:
    """The dashboards provisioning document: a file provider for the exported JSON."""
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": "archwatch",
                "orgId": 1,
                "type": "file",
                "folder": FOLDER_TITLE,
                "folderUid": FOLDER_UID,
                # Dashboards are code: an edit in the UI would be lost at the next export,
                # so Grafana refuses it and the files stay the single source.
                "allowUiUpdates": False,
                "disableDeletion": False,
                "updateIntervalSeconds": 60,
                "options": {"path": DASHBOARDS_PATH, "foldersFromFilesStructure": False},
            }
        ],
    }


def _header(site: Site, what: str, env: tuple[str, ...]) -> str:
    lines = [
        f"# {what}",
        f"# Generated from the site '{site.id}' by `archwatch grafana export`",
        "# (grafana/provisioning.py): do not edit, regenerate.",
    ]
    if env:
        lines.append("# Grafana expands ${NAME} from its environment when it reads this file:")
        lines.append("#   " + ", ".join(env))
    return "\n".join(lines) + "\n"


def _dump(document: dict[str, Any]) -> str:
    text = yaml.safe_dump(
        document, allow_unicode=True, sort_keys=False, default_flow_style=False, width=100
    )
    assert isinstance(text, str)
    return text


def render(site: Site) -> dict[Path, str]:
    """Each provisioning file's path (relative to the export directory) and text."""
    return {
        DATASOURCES_FILE: _header(site, "Grafana data sources for archwatch.", PROVISIONING_ENV)
        + _dump(datasources(site)),
        DASHBOARDS_FILE: _header(site, "Grafana dashboards provider for archwatch.", ())
        + _dump(dashboards_provider(site)),
    }


def write_provisioning(out_dir: Path, site: Site) -> list[Path]:
    """Write the provisioning files under ``out_dir/provisioning/`` (``out_dir`` is the
    export directory, the repository's ``grafana/``); return the paths written, sorted."""
    written = []
    for relative, text in render(site).items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        # newline="\n": the same bytes on every platform, or the drift check would fail.
        with path.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        written.append(path)
    return sorted(written)
