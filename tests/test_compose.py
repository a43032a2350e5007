"""The production stack as files: docker-compose.yml, .env.example and deploy/ agree.

No Docker engine runs in CI, so these read the files the way `docker compose` would and
check what an installer relies on: no secret in the repository, every variable documented,
the configuration the tests run is the one mounted, data that outlives the containers.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
import yaml
from click.testing import CliRunner

from gateway.cli import main as cli
from gateway.configfile import ConfigError
from gateway.settings import Settings
from gateway.site import DEVICE_ACL_WRITE_PATTERNS, RESERVED_DEVICE_IDS, MqttDevice, load_site
from tests.servers import REPO

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
DEPLOY = REPO / "deploy"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
MOUNT = re.compile(r"^(?P<source>.+?):(?P<target>/[^:]*)(?::(?P<mode>[a-z]+))?$")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|CREDENTIALS|_KEY$", re.IGNORECASE)


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f".env.example: not KEY=VALUE: {line!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _strings(node: object) -> list[str]:
    """Every key and value in a parsed YAML document (comments are not part of it)."""
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _services() -> dict[str, dict[str, Any]]:
    services = _compose()["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (a host path or a named volume) of each volume entry."""
    mounts: dict[str, str] = {}
    for entry in service.get("volumes") or []:
        # source:target[:mode]; the source may be ${VAR:-default}, so split at ":/".
        m = MOUNT.match(str(entry))
        assert m, f"unreadable volume entry {entry!r}"
        mounts[m.group("target")] = m.group("source")
    return mounts


def _mosquitto_conf() -> dict[str, list[str]]:
    conf: dict[str, list[str]] = {}
    text = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            conf.setdefault(key, []).append(value.strip())
    return conf


def test_no_secret_is_written_in_the_compose_file() -> None:
    placeholders = {v for k, v in _env_example().items() if SECRET_NAME.search(k) and v}
    raw = COMPOSE.read_text(encoding="utf-8")
    checked = 0
    for name, service in _services().items():
        for key, value in _environment(service).items():
            literal = VAR.sub("", value)  # what is written in the file itself
            where = f"{name}.environment.{key}"
            if SECRET_NAME.search(key):
                assert VAR.search(value), f"{where}: a secret must come from .env"
                assert literal == "", f"{where}: literal text beside the variable: {literal!r}"
                checked += 1
            if "://" in value:
                assert not urlsplit(literal).password, f"{where}: a password in the URL"
                if urlsplit(value).password is not None:
                    checked += 1
            for var in VAR.finditer(value):
                if SECRET_NAME.search(var.group(1)):
                    assert var.group(2) != ":-" or var.group(3) == "", (
                        f"{where}: a default value for the secret {var.group(1)}"
                    )
    assert checked >= 6  # tokens, passwords and the broker URL were all looked at
    # Nor pasted anywhere else: the example's secret values never appear outside ${...}.
    outside_vars = VAR.sub("", raw)
    for placeholder in placeholders:
        assert placeholder not in outside_vars


def test_every_variable_the_compose_file_uses_is_in_env_example() -> None:
    used = {m.group(1) for text in _strings(_compose()) for m in VAR.finditer(text)}
    documented = _env_example()
    assert used, "the compose file takes nothing from .env?"
    assert used - documented.keys() == set()


def test_env_example_secrets_are_placeholders_that_archwatch_refuses() -> None:
    env = _env_example()
    secrets = {k: v for k, v in env.items() if SECRET_NAME.search(k)}
    assert {"INFLUX_TOKEN", "INFLUX_ADMIN_PASSWORD", "MQTT_GATEWAY_PASSWORD"} <= secrets.keys()
    settings = Settings(
        influx_url="http://influxdb:8086",
        influx_token=env["INFLUX_TOKEN"],  # type: ignore[arg-type]
        broker_url=f"mqtt://archwatch-gateway:{env['MQTT_GATEWAY_PASSWORD']}@mosquitto:1883",
    )
    with pytest.raises(ConfigError):
        settings.check_secrets()


@pytest.mark.parametrize(
    ("gateway_password", "devices"),
    [
        pytest.param("changeme", "dev-a:0123456789abcdef", id="gateway-placeholder"),
        pytest.param("0123456789abcdef", "dev-a:changeme", id="device-placeholder"),
        pytest.param("0123456789abcdef", "dev-a", id="device-without-password"),
    ],
)
def test_the_broker_refuses_to_start_with_placeholder_or_malformed_credentials(
    tmp_path: Path, gateway_password: str, devices: str
) -> None:
    r = subprocess.run(
        ["sh", str(DEPLOY / "mosquitto" / "prepare.sh"), "true"],
        env={
            **os.environ,
            "MOSQUITTO_RUN_DIR": str(tmp_path / "run"),
            "MOSQUITTO_ACL_SOURCE": str(DEPLOY / "mosquitto" / "acl"),
            "MOSQUITTO_CERTS_SOURCE": str(tmp_path / "no-certs"),
            "MQTT_GATEWAY_PASSWORD": gateway_password,
            "MQTT_DEVICE_CREDENTIALS": devices,
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode != 0
    assert "prepare.sh:" in r.stderr
    assert gateway_password not in r.stderr or gateway_password == "changeme"


def test_mosquitto_runs_the_repository_configuration() -> None:
    mosquitto = _services()["mosquitto"]
    mounts = _mounts(mosquitto)
    assert mounts["/mosquitto/config"] == "./deploy/mosquitto"
    command = mosquitto["command"]
    conf_in_container = command[command.index("-c") + 1]
    assert conf_in_container == "/mosquitto/config/mosquitto.conf"
    assert (DEPLOY / "mosquitto" / "mosquitto.conf").is_file()
    entrypoint = mosquitto["entrypoint"]
    assert entrypoint[-1] == "/mosquitto/config/prepare.sh"
    assert (DEPLOY / "mosquitto" / "prepare.sh").is_file()
    conf = _mosquitto_conf()
    assert conf["allow_anonymous"] == ["false"]
    # The password file and ACL are the ones prepare.sh writes into its run folder.
    assert conf["password_file"] == ["/mosquitto/run/passwd"]
    assert conf["acl_file"] == ["/mosquitto/run/acl"]
    assert "/mosquitto/run" in (mosquitto.get("tmpfs") or [])
    # TLS listener: certificates from the mounted certs folder, port published.
    assert "8883" in conf["listener"]
    assert mounts["/mosquitto/certs"] == "./deploy/certs"
    assert any(str(p).endswith(":8883") for p in mosquitto["ports"])


def test_mosquitto_keeps_an_hour_of_queued_readings_across_restarts() -> None:
    conf = _mosquitto_conf()
    assert conf["persistence"] == ["true"]
    assert int(conf["autosave_interval"][0]) <= 60  # the default is 1800 s
    # 100 devices every 10 s for an hour; the default drops past 1,000.
    assert int(conf["max_queued_messages"][0]) >= 36_000
    data_dir = conf["persistence_location"][0].rstrip("/")
    mounts = _mounts(_services()["mosquitto"])
    assert mounts[data_dir] in _compose()["volumes"]


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("mosquitto", "/mosquitto/data"),
        ("influxdb", "/var/lib/influxdb2"),
        ("influxdb", "/etc/influxdb2"),
        ("grafana", "/var/lib/grafana"),
        ("gateway", "/data"),
    ],
)
def test_data_lives_in_named_volumes(service: str, path: str) -> None:
    source = _mounts(_services()[service])[path]
    assert source in _compose()["volumes"], f"{service}:{path} is not a named volume"


def test_influxdb_is_initialised_with_a_token_and_an_influxql_mapping() -> None:
    influx = _services()["influxdb"]
    env = _environment(influx)
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    gateway_env = _environment(_services()["gateway"])
    # The gateway writes with the very token InfluxDB is set up with, to the same bucket.
    assert VAR.findall(env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"])[0][0] == "INFLUX_TOKEN"
    assert VAR.findall(gateway_env["ARCHWATCH_INFLUX_TOKEN"])[0][0] == "INFLUX_TOKEN"
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] == gateway_env["ARCHWATCH_INFLUX_BUCKET"]
    init_dir = _mounts(influx)["/docker-entrypoint-initdb.d"]
    scripts = sorted((REPO / init_dir).glob("*.sh"))
    assert scripts, "no init script for the DBRP mapping"
    text = "\n".join(s.read_text(encoding="utf-8") for s in scripts)
    # InfluxQL's database name is the bucket's, which is what the gateway queries by default.
    assert "influx v1 dbrp create" in text
    assert '--db "${DOCKER_INFLUXDB_INIT_BUCKET}"' in text
    assert all(os.access(s, os.X_OK) for s in scripts)
    bash = subprocess.run(["bash", "-n", *map(str, scripts)], capture_output=True, check=False)
    assert bash.returncode == 0, bash.stderr


def test_grafana_is_provisioned_from_the_repository() -> None:
    mounts = _mounts(_services()["grafana"])
    assert mounts["/etc/grafana/provisioning"] == "./grafana/provisioning"


def test_the_gateway_image_runs_an_existing_archwatch_command() -> None:
    gateway = _services()["gateway"]
    assert gateway["build"] == "."
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["archwatch"]' in dockerfile
    command = gateway["command"]
    result = CliRunner().invoke(cli, [command[0], "--help"])
    assert result.exit_code == 0, result.output
    site_dir = _mounts(gateway)
    assert command[1].startswith("/config/") and "/config" in site_dir


def _acl_write_patterns() -> list[str]:
    patterns = []
    for line in (DEPLOY / "mosquitto" / "acl").read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "pattern" and words[1] in ("write", "readwrite"):
            patterns.append(words[2])
    return patterns


def _acl_user_write_topics(user: str) -> list[str]:
    """Topics the ACL's ``user`` section lets that user write."""
    topics: list[str] = []
    current = None
    for line in (DEPLOY / "mosquitto" / "acl").read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "user":
            current = words[1]
        elif (
            current == user
            and len(words) == 3
            and words[:2] in (["topic", "write"], ["topic", "readwrite"])
        ):
            topics.append(words[2])
    return topics


def test_example_mqtt_devices_may_publish_on_their_topics_under_the_acl() -> None:
    """A device logs in with its id; the ACL must let it publish where the site expects it.
    Zigbee devices are published for by the Zigbee2MQTT bridge, under its own user."""
    patterns = _acl_write_patterns()
    bridge = _acl_user_write_topics("zigbee2mqtt")
    checked = 0
    for site_file in sorted((REPO / "examples").glob("*site*.yaml")):
        site = load_site(site_file)
        for placement in site.placements():
            device = placement.device
            if not isinstance(device, MqttDevice):
                continue
            for ref in site.device_sensors(device.id):
                topic = device.sensor_topic(ref.spec)
                if device.format == "zigbee2mqtt":
                    assert any(mqtt.topic_matches_sub(t, topic) for t in bridge), topic
                    checked += 1
                    continue
                allowed = [
                    p for p in patterns if mqtt.topic_matches_sub(p.replace("%u", device.id), topic)
                ]
                assert allowed, f"{site_file.name}: {device.id} may not publish on {topic}"
                # ... and not through a pattern that would let any device publish there.
                assert all("%u" in p for p in allowed)
                checked += 1
    assert checked > 0


def test_the_image_copies_every_package_pip_installs() -> None:
    """pip install in the image fails outright if a package folder of pyproject.toml is
    missing (the API and alerting would never start from it)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    tools = project["tool"]["setuptools"]
    folders = {p.split(".")[0] for p in tools["packages"] if not p.startswith("archwatch_")}
    folders |= {d.split("/")[0] for d in tools["package-dir"].values()}
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    copied = set(re.findall(r"^COPY (\S+) \1$", dockerfile, flags=re.MULTILINE))
    assert folders <= copied, f"Dockerfile does not COPY {sorted(folders - copied)}"


def test_the_api_service_serves_the_site_from_the_gateways_data_volume() -> None:
    services = _services()
    api, gateway = services["api"], services["gateway"]
    command = api["command"]
    result = CliRunner().invoke(cli, [command[0], "--help"])
    assert result.exit_code == 0 and "--site" in result.output
    assert command[command.index("--site") + 1].startswith("/config/")
    assert _mounts(api) == _mounts(gateway)


# -- device logins the per-device ACL would let publish as someone else ------------------------


def _prepare(
    tmp_path: Path, devices: str, *, certs: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run prepare.sh as the container would (``true`` in place of Mosquitto)."""
    certs_dir = tmp_path / "certs"
    if certs:  # prepare.sh only copies them: any content will do
        certs_dir.mkdir()
        for name in ("ca.crt", "server.crt", "server.key"):
            (certs_dir / name).write_text("test\n", encoding="utf-8")
    return subprocess.run(
        ["sh", str(DEPLOY / "mosquitto" / "prepare.sh"), "true"],
        env={
            **os.environ,
            "MOSQUITTO_RUN_DIR": str(tmp_path / "run"),
            "MOSQUITTO_ACL_SOURCE": str(DEPLOY / "mosquitto" / "acl"),
            "MOSQUITTO_CERTS_SOURCE": str(certs_dir),
            "MQTT_GATEWAY_PASSWORD": "0123456789abcdef",
            "MQTT_DEVICE_CREDENTIALS": devices,
        },
        capture_output=True,
        text=True,
        check=False,
    )


def _prepare_reserved_ids() -> set[str]:
    text = (DEPLOY / "mosquitto" / "prepare.sh").read_text(encoding="utf-8")
    m = re.search(r'^reserved_ids="([^"]*)"$', text, flags=re.MULTILINE)
    assert m, "prepare.sh no longer lists reserved_ids"
    return set(m.group(1).split())


def test_the_site_model_knows_the_acls_device_patterns() -> None:
    assert list(DEVICE_ACL_WRITE_PATTERNS) == _acl_write_patterns()


def test_every_root_and_login_the_acl_names_is_reserved_for_device_ids() -> None:
    """The ACL's fixed topic roots (``tele`` in ``tele/%u/#``) and its ``user`` logins are
    names other clients publish under; the site model and prepare.sh refuse them alike."""
    named: set[str] = set()
    for line in (DEPLOY / "mosquitto" / "acl").read_text(encoding="utf-8").splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "user":
            named.add(words[1])
        elif len(words) == 3 and words[0] in ("pattern", "topic"):
            root = words[2].split("/")[0]
            if root not in ("%u", "+", "#"):
                named.add(root)
    assert named >= {"archwatch", "tele", "stat", "cmnd", "shellies", "zigbee2mqtt"}
    assert named <= RESERVED_DEVICE_IDS
    assert _prepare_reserved_ids() == set(RESERVED_DEVICE_IDS)


@pytest.mark.parametrize(
    ("devices", "refused", "why"),
    [
        *[
            pytest.param(
                f"dev-b:0123456789abcdef {name}:fedcba9876543210", name, "is reserved", id=name
            )
            for name in sorted(RESERVED_DEVICE_IDS)
        ],
        pytest.param("$SYS:fedcba9876543210", "$SYS", "is not a site device id", id="$SYS"),
        pytest.param("a/b:fedcba9876543210", "a/b", "is not a site device id", id="slash"),
        pytest.param("dev+:fedcba9876543210", "dev+", "is not a site device id", id="plus"),
        pytest.param("Dev-B:fedcba9876543210", "Dev-B", "is not a site device id", id="upper"),
        pytest.param("*:fedcba9876543210", "*", "is not a site device id", id="glob"),
        pytest.param(f"{'d' * 65}:fedcba9876543210", "d" * 65, "is longer than 64", id="long"),
        pytest.param(
            "dev-b:0123456789abcdef dev-b:fedcba9876543210", "dev-b", "is listed twice", id="twice"
        ),
    ],
)
def test_the_broker_refuses_device_logins_that_could_forge_readings(
    tmp_path: Path, devices: str, refused: str, why: str
) -> None:
    r = _prepare(tmp_path, devices, certs=True)
    assert r.returncode != 0
    assert f"prepare.sh: MQTT device id '{refused}' {why}" in r.stderr
    assert "fedcba9876543210" not in r.stderr  # the password is not echoed
    # Refused before any file was written: no password file for Mosquitto to start with.
    assert not (tmp_path / "run" / "passwd").exists()


def test_the_broker_accepts_every_site_device_id(tmp_path: Path) -> None:
    """The positive control: ids like the examples' (ESPHome nodes, Tasmota plugs, ids that
    merely start like a root) get their logins."""
    ids = ["esp32-e103", "tasmota-e102", "tele-1", "stat2", "a.b_c-9", "d" * 64]
    r = _prepare(tmp_path, " ".join(f"{d}:0123456789abcdef" for d in ids), certs=True)
    assert r.returncode == 0, r.stderr
    logins = [
        line.split(":", 1)[0]
        for line in (tmp_path / "run" / "passwd").read_text(encoding="utf-8").splitlines()
    ]
    assert logins == ["archwatch-gateway", *ids]
