"""The site file: what a keeper writes, and what a mistake in it gets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from gateway.configfile import ConfigError
from gateway.reading import SensorKind
from gateway.resources import demo_site_path
from gateway.site import OUTDOOR_ROOM, RESERVED_DEVICE_IDS, acl_writers, load_site
from gateway.validation import RejectReason, validate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOW_NS = 1_780_000_000 * 10**9


def test_demo_site_resolves_every_sensor_with_its_tags() -> None:
    site = load_site(demo_site_path())
    refs = {r.sensor: r for r in site.sensors()}
    assert refs["r101-t"].kind is SensorKind.TEMPERATURE  # kind taken from the profile point
    assert refs["r101-t"].storage_class == "paper"
    assert refs["r201-h"].storage_class == "film_master"
    assert refs["main-out-t"].room == OUTDOOR_ROOM
    rooms = {r.room for r in refs.values()}
    assert {"r101", "r201", OUTDOOR_ROOM} <= rooms
    protocols = {p.device.protocol for p in site.placements()}
    assert protocols == {"modbus_tcp", "mqtt"}


def test_shipped_example_is_the_packaged_demo_site() -> None:
    assert (EXAMPLES / "site.yaml").read_bytes() == demo_site_path().read_bytes()


def _site_with(tmp_path: Path, mutate: str) -> Path:
    """The demo site with one YAML edit applied (a dotted path = new value)."""
    data = yaml.safe_load(demo_site_path().read_text(encoding="utf-8"))
    path, _, value = mutate.partition("=")
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    parsed = yaml.safe_load(value)
    if isinstance(node, list):
        node[int(last)] = parsed
    else:
        node[last] = parsed
    out = tmp_path / "site.yaml"
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        ("buildings.0.rooms.0.storage_class=archive", "unknown storage class 'archive'"),
        ("buildings.0.rooms.0.devices.0.profile=nope", "unknown device profile 'nope'"),
        ("buildings.0.rooms.0.devices.0.port=70000", "buildings[0].rooms[0].devices[0].port"),
        ("buildings.0.rooms.0.devices.0.sensors.0.point=pressure", "has no point 'pressure'"),
        ("buildings.0.rooms.0.devices.0.sensors.0.kind=humidity", "contradicts the profile"),
        ("buildings.0.rooms.0.devices.0.sensors.0.field=value", "field are for MQTT devices"),
        ("buildings.0.rooms.0.devices.0.protocol=bacnet", "protocol"),
        ("buildings.0.rooms.0.devices.0.colour=red", "unknown key"),
        ("buildings.0.rooms.1.id=r101", "duplicate room id 'r101'"),
        ("buildings.0.rooms.1.devices.0.id=th-101", "duplicate device id 'th-101'"),
        ("buildings.0.rooms.1.devices.0.sensors.0.id=r101-t", "duplicate sensor id 'r101-t'"),
        ("buildings.0.rooms.1.id=库房", "buildings[0].rooms[1].id"),
        ("buildings.0.rooms.1.id=outdoor", "reserved"),
        ("buildings.0.rooms.1.devices.0.topic=a/+/b", "wildcards"),
        ("buildings.0.rooms.0.devices.2.sensors.1.json_path=contact", "same topic and JSON path"),
        ("rules=missing-rules.yaml", "not found"),
        ("site.timezone=Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
    ],
)
def test_invalid_site_names_file_line_and_field(
    tmp_path: Path, mutation: str, expected: str
) -> None:
    path = _site_with(tmp_path, mutation)
    with pytest.raises(ConfigError) as info:
        load_site(path)
    text = "\n".join(info.value.problems)
    assert expected in text
    # Every problem says which file and which line.
    for problem in info.value.problems:
        where = problem.split(": ", 1)[0]
        file_part, _, line = where.rpartition(":")
        assert file_part == str(path)
        assert line.isdigit() and int(line) >= 1


def test_error_line_points_at_the_offending_key(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            site: {id: s1}
            buildings:
              - id: b1
                rooms:
                  - id: r1
                    storage_class: paper
                    devices:
                      - id: d1
                        protocol: modbus_tcp
                        host: 127.0.0.1
                        port: 99999
                        profile: rs485_th_int16
                        sensors: [{id: t1, point: temperature}]
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert info.value.problems == [
        f"{path}:11: buildings[0].rooms[0].devices[0].port: "
        "Input should be less than or equal to 65535"
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "file is empty"),
        ("site: [unclosed", "invalid YAML"),
        ("- just\n- a list\n", "Input should be a valid dictionary"),
    ],
)
def test_unparseable_files_get_a_clear_error(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert expected in "\n".join(info.value.problems)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_site(tmp_path / "nope.yaml")


def test_calibration_due_date() -> None:
    site = load_site(demo_site_path())
    cal = site.sensor("r101-t").spec.calibration
    assert cal is not None
    assert str(cal.due) == "2027-03-01"


# -- device ids the broker's per-device ACL would let publish as someone else -----------------

# A Tasmota plug 'dev-b' (tele/dev-b/SENSOR) and one more device, whose YAML is the case's.
# The candidate's 'id:' is on line 13, so every refusal must point there.
_TWO_DEVICES = """\
site: {{id: s1}}
buildings:
  - id: b1
    rooms:
      - id: r1
        storage_class: paper
        devices:
          - id: dev-b
            protocol: mqtt
            format: tasmota
            topic: tele/dev-b/SENSOR
            sensors: [{{id: b-t, kind: temperature}}]
          - id: {id}
{rest}"""
_ESPHOME_NODE = """\
            protocol: mqtt
            format: esphome
            topic: {topic}
            sensors: [{{id: {id}-t, kind: temperature}}]
"""
_MODBUS = """\
            protocol: modbus_tcp
            host: 127.0.0.1
            profile: rs485_th_int16
            sensors: [{{id: {id}-t, point: temperature}}]
"""
_CANDIDATE_LINE = 13
_FIELD = "buildings[0].rooms[0].devices[1].id"
_FORGE = "with the broker's per-device ACL it could forge their readings"


def _site_text(device_id: str, rest: str, topic: str | None = None) -> str:
    body = rest.format(id=device_id, topic=topic or device_id)
    return _TWO_DEVICES.format(id=device_id, rest=body)


def _extra_device(yaml_block: str) -> str:
    """A third device appended to the room (its lines come after the candidate's)."""
    return textwrap.indent(textwrap.dedent(yaml_block), " " * 10)


# (case, candidate id, candidate YAML, its ESPHome topic, extra device, the problem's why)
REFUSED: list[tuple[str, str, str, str | None, str, str]] = [
    (
        "the audit's case: Tasmota's root",
        "tele",
        _ESPHOME_NODE,
        None,
        "",
        "device id 'tele' is a topic root other devices publish under (Tasmota telemetry, "
        f"tele/<device>/...); {_FORGE}",
    ),
    (
        "a Modbus device named like a root (its id becomes its broker login if it moves)",
        "shellies",
        _MODBUS,
        None,
        "",
        "device id 'shellies' is a topic root other devices publish under (Shelly gen1, "
        f"shellies/<device>/...); {_FORGE}",
    ),
    (
        "the gateway's own login",
        "archwatch-gateway",
        _ESPHOME_NODE,
        None,
        "",
        "device id 'archwatch-gateway' is the broker login of the gateway; a device password "
        "under that name would replace theirs (the broker keeps one per name)",
    ),
    (
        "a root the site's own topics use: line protocol shared by a Telegraf agent",
        "telegraf",
        _ESPHOME_NODE,
        "esp-telegraf",
        """\
        - id: lp-1
          protocol: mqtt
          format: influx_line
          topic: telegraf/climate
          sensors: [{id: lp-t, kind: temperature, match: {room: r1}}]
        """,
        "device id 'telegraf' is a topic root other devices publish under (device 'lp-1' on "
        f"'telegraf/climate'); {_FORGE}",
    ),
    (
        "an ESPHome node prefix that is not its device's id",
        "esp-node",
        _MODBUS,
        None,
        """\
        - id: node-a
          protocol: mqtt
          format: esphome
          topic: esp-node
          sensors: [{id: node-a-h, kind: humidity}]
        """,
        "device id 'esp-node' is a topic root other devices publish under (device 'node-a' on "
        f"'esp-node/sensor/humidity/state'); {_FORGE}",
    ),
    (
        "another device's Tasmota topic names it",
        "plug-7",
        _ESPHOME_NODE,
        None,
        """\
        - id: tas-1
          protocol: mqtt
          format: tasmota
          topic: tele/plug-7/SENSOR
          sensors: [{id: tas-t, kind: temperature}]
        """,
        "device id 'plug-7' is the publisher's name in topic 'tele/plug-7/SENSOR' of device "
        f"'tas-1' under the ACL's 'tele/%u/#'; {_FORGE}",
    ),
]


@pytest.mark.parametrize(
    ("device_id", "rest", "topic", "extra", "why"),
    [pytest.param(*row[1:], id=row[0]) for row in REFUSED],
)
def test_a_device_id_that_could_forge_other_devices_readings_is_refused(
    tmp_path: Path, device_id: str, rest: str, topic: str | None, extra: str, why: str
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(_site_text(device_id, rest, topic) + _extra_device(extra), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert info.value.problems == [f"{path}:{_CANDIDATE_LINE}: {_FIELD}: {why}"]


@pytest.mark.parametrize("device_id", sorted(RESERVED_DEVICE_IDS))
def test_every_reserved_name_is_refused_as_a_device_id(tmp_path: Path, device_id: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(_site_text(device_id, _ESPHOME_NODE), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_site(path)
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}:{_CANDIDATE_LINE}: {_FIELD}: device id '{device_id}' is ")


def test_broker_system_topics_cannot_be_a_device_id(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(_site_text("$SYS", _ESPHOME_NODE, "esp-sys"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_site(path)
    assert any(f"{_FIELD}: String should match pattern" in p for p in info.value.problems)


# Ids that only look like a root, and the ESPHome layout (a node publishing under its own
# id): accepted, with dev-b's Tasmota topic beside them.
ACCEPTED: list[tuple[str, str, str | None]] = [
    ("esp32-e103", _ESPHOME_NODE, None),  # its own root is its own
    ("tele-1", _ESPHOME_NODE, None),
    ("telemetry", _MODBUS, None),
    ("stat2", _ESPHOME_NODE, None),
    ("dev-c", _ESPHOME_NODE, "esp-c"),
]


@pytest.mark.parametrize(("device_id", "rest", "topic"), ACCEPTED)
def test_device_ids_that_only_resemble_a_root_are_accepted(
    tmp_path: Path, device_id: str, rest: str, topic: str | None
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(_site_text(device_id, rest, topic), encoding="utf-8")
    site = load_site(path)
    assert {p.device.id for p in site.placements()} == {"dev-b", device_id}


@pytest.mark.parametrize(
    ("topic", "writers"),
    [
        ("tele/dev-b/SENSOR", {"dev-b": "tele/%u/#", "tele": "%u/#"}),
        ("tele/dev-b", {"dev-b": "tele/%u/#", "tele": "%u/#"}),  # '#' matches its parent
        ("archwatch/s1/b1/r1/th-1", {"th-1": "archwatch/+/+/+/%u/#", "archwatch": "%u/#"}),
        ("archwatch/s1/b1/r1", {"archwatch": "%u/#"}),  # too short for the device level
        ("esp-1/sensor/temperature/state", {"esp-1": "%u/#"}),
        ("zigbee2mqtt/e101-door", {"zigbee2mqtt": "%u/#"}),
    ],
)
def test_who_the_acl_lets_publish_on_a_topic(topic: str, writers: dict[str, str]) -> None:
    assert acl_writers(topic) == writers


# -- the uv kind: a light/UV transmitter's second point -----------------------------------------

_LIGHT_UV = """\
site: {id: s1}
buildings:
  - id: b1
    rooms:
      - id: r1
        storage_class: paper
        devices:
          - id: lux-1
            protocol: modbus_tcp
            host: 127.0.0.1
            profile: modbus_light_uv
            sensors: [{id: r1-lux, point: light}, {id: r1-uv, point: uv}]
          - id: uv-2
            protocol: mqtt
            topic: archwatch/s1/b1/r1/uv-2
            sensors: [{id: r1-uv-2, kind: uv, json_path: uv}]
"""


def test_a_light_uv_transmitter_reads_uv_in_microwatts_per_square_centimetre(
    tmp_path: Path,
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(_LIGHT_UV, encoding="utf-8")
    site = load_site(path)
    assert site.sensor("r1-uv").kind is SensorKind.UV  # from the profile's point
    assert site.sensor("r1-uv-2").kind is SensorKind.UV
    assert site.sensor("r1-lux").kind is SensorKind.LIGHT
    reading = site.sensor("r1-uv").reading(3500.0, NOW_NS)
    assert reading.unit == "µW/cm²"
    assert reading.tags()["kind"] == "uv"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, None),  # a dark store: a genuine zero
        (1.5, None),  # 75 µW/lm under 200 lx
        (20_000.0, None),  # the transmitters' full scale, inclusive
        (20_000.5, RejectReason.OUT_OF_RANGE),
        (-0.1, RejectReason.OUT_OF_RANGE),
        (6_553_500.0, RejectReason.OUT_OF_RANGE),  # 0xFFFF × 100: a register of all ones
        (float("nan"), RejectReason.NOT_A_NUMBER),
    ],
)
def test_uv_readings_outside_what_a_transmitter_can_report_are_refused(
    tmp_path: Path, value: float, expected: RejectReason | None
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(_LIGHT_UV, encoding="utf-8")
    reading = load_site(path).sensor("r1-uv").reading(value, NOW_NS)
    assert validate(reading, NOW_NS) == expected
