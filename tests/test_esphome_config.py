"""The shipped ESPHome climate node publishes exactly where its documented site entry listens.

A typo in either (a sensor renamed in the firmware, a topic prefix changed in one place)
would make the node publish into the void while archwatch reports it offline.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import yaml

from collectors.payloads.esphome import availability_topic, state_topic
from gateway.resources import firmware_configs_dir
from gateway.site import MqttDevice, load_site

CONFIG = firmware_configs_dir() / "esphome" / "esp32-climate-node.yaml"


class _EsphomeLoader(yaml.SafeLoader):
    """Reads ESPHome's own tags (``!secret name``) as plain markers."""


def _secret(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return f"<secret {loader.construct_scalar(node)}>"


_EsphomeLoader.add_constructor("!secret", _secret)


def _firmware() -> dict[str, Any]:
    text = CONFIG.read_text(encoding="utf-8")
    subs = yaml.load(text, Loader=_EsphomeLoader)["substitutions"]  # noqa: S506
    expanded = re.sub(r"\$\{(\w+)\}", lambda m: str(subs[m.group(1)]), text)
    doc: dict[str, Any] = yaml.load(expanded, Loader=_EsphomeLoader)  # noqa: S506
    return doc


def _documented_site_entry() -> str:
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   - id: "))
    entry = []
    for line in lines[start:]:
        if not line.startswith("#   "):
            break
        entry.append(line[1:])
    return textwrap.dedent("\n".join(entry))


def _site_with(tmp_path: Path, entry: str) -> Path:
    devices = textwrap.indent(entry, " " * 10)
    path = tmp_path / "site.yaml"
    path.write_text(
        "site: {id: test-site}\n"
        "buildings:\n"
        "  - id: main\n"
        "    rooms:\n"
        "      - id: r101\n"
        "        storage_class: paper\n"
        "        devices:\n" + devices + "\n",
        encoding="utf-8",
    )
    return path


def test_the_documented_site_entry_loads_and_matches_the_firmware_topics(tmp_path: Path) -> None:
    firmware = _firmware()
    mqtt = firmware["mqtt"]
    prefix = mqtt["topic_prefix"]
    site = load_site(_site_with(tmp_path, _documented_site_entry()))
    (placement,) = list(site.placements())
    device = placement.device
    assert isinstance(device, MqttDevice)
    assert device.topic == prefix == "archwatch/main/r101/esp32-climate-r101"
    assert (placement.building.id, placement.room_id) == ("main", "r101")
    published = {
        f"{prefix}/sensor/{s[key]['name']}/state"
        for s in firmware["sensor"]
        if s["platform"] == "sht3xd"
        for key in ("temperature", "humidity")
    }
    expected = {state_topic(prefix, site.sensor(s.id).kind) for s in device.sensors}
    assert expected == published
    assert mqtt["will_message"]["topic"] == availability_topic(prefix)
    assert (mqtt["birth_message"]["payload"], mqtt["will_message"]["payload"]) == (
        "online",
        "offline",
    )


def test_the_node_never_retains_readings_and_keeps_secrets_out_of_the_file() -> None:
    firmware = _firmware()
    sht = next(s for s in firmware["sensor"] if s["platform"] == "sht3xd")
    for key in ("temperature", "humidity"):
        assert sht[key]["retain"] is False, key  # a retained state would be stored as new
        assert sht[key]["qos"] == 1, key
    mqtt, wifi = firmware["mqtt"], firmware["wifi"]
    for value in (mqtt["username"], mqtt["password"], wifi["password"], mqtt["broker"]):
        assert value.startswith("<secret "), value
    assert firmware["i2c"]["sda"] == "GPIO21" and sht["address"] == 0x44
