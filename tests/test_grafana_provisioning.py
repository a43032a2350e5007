"""Grafana provisioning: what Grafana reads at start-up to find InfluxDB, the API and the
dashboards, written by ``grafana.provisioning.write_provisioning``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.resources import demo_site_path
from gateway.site import Site, load_site
from grafana.provisioning import PROVISIONING_ENV, write_provisioning
from tests.servers import REPO, InfluxServer

ENV_REF = re.compile(r"\$\{([A-Z0-9_]+)\}")


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(demo_site_path())


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _written(tmp_path: Path, site: Site) -> dict[str, dict[str, Any]]:
    paths = write_provisioning(tmp_path, site)
    return {str(p.relative_to(tmp_path)): _load(p) for p in paths}


def _datasources(tmp_path: Path, site: Site) -> dict[str, dict[str, Any]]:
    doc = _written(tmp_path, site)["provisioning/datasources/archwatch.yaml"]
    assert doc["apiVersion"] == 1
    return {ds["uid"]: ds for ds in doc["datasources"]}


def _expand(value: str, env: dict[str, str]) -> str:
    """What Grafana makes of a provisioned value, given its environment."""
    return ENV_REF.sub(lambda m: env[m.group(1)], value)


def test_writes_the_datasources_and_the_dashboards_provider(tmp_path: Path, site: Site) -> None:
    paths = write_provisioning(tmp_path, site)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "provisioning/dashboards/archwatch.yaml",
        "provisioning/datasources/archwatch.yaml",
    ]


def test_influxdb_is_queried_with_influxql_and_the_gateways_token(
    tmp_path: Path, site: Site
) -> None:
    influx = _datasources(tmp_path, site)["archwatch-influxdb"]
    assert influx["type"] == "influxdb"
    assert influx["jsonData"]["version"] == "InfluxQL"
    assert influx["url"] == "${ARCHWATCH_INFLUX_URL}"
    assert influx["jsonData"]["dbName"] == influx["database"] == "${ARCHWATCH_INFLUX_DATABASE}"
    # One header serves 1.8 (Token user:password), 2.x (v1 compatibility) and 3.x.
    assert influx["jsonData"]["httpHeaderName1"] == "Authorization"
    assert influx["secureJsonData"] == {"httpHeaderValue1": "Token ${ARCHWATCH_INFLUX_TOKEN}"}
    # The demo's fastest device is polled every 2 s: shorter buckets would be empty.
    assert influx["jsonData"]["timeInterval"] == "2s"
    assert influx["isDefault"] is True


def test_the_api_is_read_through_infinity_with_a_key_only_it_receives(
    tmp_path: Path, site: Site
) -> None:
    api = _datasources(tmp_path, site)["archwatch-api"]
    assert api["type"] == "yesoreyeram-infinity-datasource"
    assert api["url"] == "${ARCHWATCH_API_URL}"
    assert api["jsonData"]["auth_method"] == "apiKey"
    assert api["jsonData"]["apiKeyKey"] == "X-API-Key"
    assert api["jsonData"]["apiKeyType"] == "header"
    assert api["jsonData"]["allowedHosts"] == ["${ARCHWATCH_API_URL}"]
    assert api["secureJsonData"] == {"apiKeyValue": "${ARCHWATCH_API_KEY}"}


def test_dashboards_load_from_the_exported_folder_into_archwatch(
    tmp_path: Path, site: Site
) -> None:
    doc = _written(tmp_path, site)["provisioning/dashboards/archwatch.yaml"]
    [provider] = doc["providers"]
    assert provider["type"] == "file"
    assert provider["folder"] == provider["folderUid"] == "archwatch"
    assert provider["allowUiUpdates"] is False  # dashboards are code
    # docker-compose.yml mounts ./grafana/dashboards exactly there.
    compose = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in compose


def test_no_secret_is_written_only_environment_lookups(tmp_path: Path, site: Site) -> None:
    texts = [p.read_text(encoding="utf-8") for p in write_provisioning(tmp_path, site)]
    for ds in _datasources(tmp_path, site).values():
        for value in ds["secureJsonData"].values():
            assert ENV_REF.search(value), value
    # Grafana expands every $ outside comments: only the documented variables may appear.
    bodies = ["\n".join(ln for ln in t.splitlines() if not ln.startswith("#")) for t in texts]
    assert {name for body in bodies for name in ENV_REF.findall(body)} == set(PROVISIONING_ENV)
    for body in bodies:
        assert not re.search(r"\$(?!\{[A-Z0-9_]+\})", body)


def test_output_is_deterministic_and_the_committed_files_do_not_drift(
    tmp_path: Path, site: Site
) -> None:
    runs = [
        {p.relative_to(out): p.read_bytes() for p in write_provisioning(out, site)}
        for out in (tmp_path / "a", tmp_path / "b")
    ]
    assert runs[0] == runs[1]
    for relative, data in runs[0].items():
        committed = REPO / "grafana" / relative
        assert committed.read_bytes() == data, (
            f"{committed} differs from the generated file: run `archwatch grafana export grafana`"
        )


@pytest.mark.parametrize(
    ("poll", "expected"),
    [("2", "2s"), ("0.5", "1s"), ("30", "5s")],  # the demo's MQTT devices report every 5 s
)
def test_min_interval_follows_the_fastest_device(tmp_path: Path, poll: str, expected: str) -> None:
    src = demo_site_path()
    text = re.sub(r"poll_interval: 2\b", f"poll_interval: {poll}", src.read_text("utf-8"))
    for name in ("rules.yaml", "contacts.yaml"):
        (tmp_path / name).write_bytes((src.parent / name).read_bytes())
    (tmp_path / "site.yaml").write_text(text, encoding="utf-8")
    influx = _datasources(tmp_path / "out", load_site(tmp_path / "site.yaml"))["archwatch-influxdb"]
    assert influx["jsonData"]["timeInterval"] == expected


def test_the_provisioned_influxdb_source_reaches_a_real_influxdb(
    tmp_path: Path, site: Site, influx: InfluxServer
) -> None:
    """Expanded with the gateway's own variables, the data source's URL, database and
    header make an InfluxQL query InfluxDB answers (1.8 here, no auth in the test server)."""
    ds = _datasources(tmp_path, site)["archwatch-influxdb"]
    env = {
        "ARCHWATCH_INFLUX_URL": influx.url,
        "ARCHWATCH_INFLUX_DATABASE": influx.database,
        "ARCHWATCH_INFLUX_TOKEN": "",
    }
    httpx.post(
        f"{influx.url}/write",
        params={"db": influx.database},
        content="readings,room=r101,kind=humidity value=55.5 1767225600000000000",
        timeout=10,
    ).raise_for_status()
    response = httpx.get(
        f"{_expand(ds['url'], env)}/query",
        params={
            "db": _expand(ds["jsonData"]["dbName"], env),
            "q": 'SELECT last("value") FROM "readings" WHERE "room" = \'r101\'',
            "epoch": "ms",
        },
        headers={
            ds["jsonData"]["httpHeaderName1"]: _expand(
                ds["secureJsonData"]["httpHeaderValue1"], env
            ).strip()
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    [series] = response.json()["results"][0]["series"]
    assert series["values"][0][1] == 55.5


def _datasource_refs(node: object) -> list[dict[str, Any]]:
    """Every ``datasource`` reference inside a dashboard (panels, targets, variables...)."""
    if isinstance(node, dict):
        own = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
        return own + [r for v in node.values() for r in _datasource_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _datasource_refs(v)]
    return []


def test_every_datasource_the_dashboards_use_is_provisioned(tmp_path: Path, site: Site) -> None:
    from grafana.dashboards import build_dashboards

    provisioned = {uid: ds["type"] for uid, ds in _datasources(tmp_path, site).items()}
    used = {
        (ref["uid"], ref["type"])
        for dash in build_dashboards(site)
        for ref in _datasource_refs(dash)
        if ref.get("type") != "grafana"  # Grafana's own annotations
    }
    assert used == set(provisioned.items())
