"""The site file: what a keeper writes, and what a mistake in it gets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from gateway.configfile import ConfigError
from gateway.reading import SensorKind
from gateway.resources import demo_site_path
from gateway.site import OUTDOOR_ROOM, load_site

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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
