"""The site model: site -> buildings -> rooms -> devices -> sensors, loaded from one YAML file.

Unknown keys are refused, ids are ASCII (they become InfluxDB tags and URL parts), display
names may be Chinese. Cross-references (storage class, device profile, profile point) are
checked after parsing, so one run of ``archwatch check-config`` lists every problem with
its file and line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from collectors.modbus_profile import ProfileLibrary
from collectors.payloads import check_sensor, format_for, sensor_selector
from gateway.configfile import (
    ConfigError,
    check_timezone,
    format_loc,
    read_yaml,
    validation_problems,
)
from gateway.reading import Reading, SensorKind
from gateway.standards import ID_PATTERN, StandardsLibrary

Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
OUTDOOR_ROOM = "outdoor"
OUTDOOR_CLASS = "outdoor"

# The broker's per-device ACL (deploy/mosquitto/acl): a device logs in with its id as user
# name and may publish on these topics, ``%u`` standing for that name (tests/test_compose.py
# checks that this is the ACL's list). ``%u/#`` is ESPHome's layout, so a device named like
# a topic root other devices publish under could publish as them.
DEVICE_ACL_WRITE_PATTERNS: tuple[str, ...] = (
    "archwatch/+/+/+/%u/#",
    "tele/%u/#",
    "stat/%u/#",
    "shellies/%u/#",
    "%u/#",
)
# Topic roots other clients publish under whatever the site file says (the payload families'
# fixed prefixes and the discovery trees beside them): no device may be named like one. The
# roots of the site's own topics are added at load (``_forgery_problems``).
RESERVED_TOPIC_ROOTS: MappingProxyType[str, str] = MappingProxyType(
    {
        "archwatch": "archwatch's own layout archwatch/<site>/<building>/<room>/<device>",
        "tele": "Tasmota telemetry, tele/<device>/...",
        "stat": "Tasmota status, stat/<device>/...",
        "cmnd": "Tasmota commands, cmnd/<device>/...",
        "tasmota": "Tasmota discovery, tasmota/discovery/...",
        "shellies": "Shelly gen1, shellies/<device>/...",
        "zigbee2mqtt": "the Zigbee2MQTT bridge, zigbee2mqtt/<device>",
        "esphome": "ESPHome discovery, esphome/discover/...",
        "homeassistant": "Home Assistant discovery, homeassistant/...",
    }
)
# Broker logins of other clients (the ACL's ``user`` sections): deploy/mosquitto/prepare.sh
# keeps one password per name, so a device of that name would replace theirs.
RESERVED_LOGINS: MappingProxyType[str, str] = MappingProxyType(
    {"archwatch-gateway": "the gateway", "zigbee2mqtt": "the Zigbee2MQTT bridge"}
)
# What prepare.sh refuses as a device login too (tests/test_compose.py keeps them equal).
RESERVED_DEVICE_IDS = frozenset(RESERVED_TOPIC_ROOTS) | frozenset(RESERVED_LOGINS)
_FORGE = "with the broker's per-device ACL it could forge their readings"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Calibration(_Strict):
    """When a sensor was last calibrated and how often it must be (1987 regulation, Art. 11)."""

    calibrated_on: date
    interval_days: int = Field(default=365, ge=1, le=3650)

    @property
    def due(self) -> date:
        return self.calibrated_on + timedelta(days=self.interval_days)


class SensorSpec(_Strict):
    """One sensor of a device. For Modbus ``point`` names the profile's point; for MQTT
    ``topic``/``json_path`` say where the value is in the payload."""

    id: Id
    name: str = ""
    kind: SensorKind | None = None
    point: str | None = None
    topic: str | None = None
    json_path: str | None = Field(default=None, description="dotted path into a JSON payload")
    field: str | None = Field(default=None, description="influx_line: field key (default: kind)")
    match: dict[str, str] = Field(
        default_factory=dict, description="influx_line: tags a line must carry (_measurement)"
    )
    calibration: Calibration | None = None


class _DeviceBase(_Strict):
    id: Id
    name: str = ""
    sensors: list[SensorSpec] = Field(min_length=1)
    offline_after: int = Field(default=3, ge=1, le=1000, description="missed polls/intervals")


class ModbusDevice(_DeviceBase):
    """What every polled Modbus device has, whatever carries its frames (TCP, RTU, RTU/TCP).

    Devices on one line (one host:port, or one serial port) share one client and one lock;
    ``frame_gap`` is extra silence kept between transactions on the line, on top of RTU's
    3.5 character times that a serial line always keeps; ``busy_retries`` re-asks a unit
    that answered exception 5/6 ("busy") after a short pause, inside its own timeout budget.
    """

    protocol: str
    unit_id: int = Field(default=1, ge=0, le=247)
    profile: Id
    poll_interval: float = Field(default=10.0, ge=0.05, le=86400)
    timeout: float = Field(default=2.0, gt=0, le=60)
    retries: int = Field(default=1, ge=0, le=10)
    busy_retries: int = Field(default=2, ge=0, le=10)
    frame_gap: float = Field(default=0.0, ge=0, le=5, description="seconds between frames")

    @model_validator(mode="after")
    def _points_named(self) -> ModbusDevice:
        for s in self.sensors:
            if s.point is None:
                raise ValueError(f"sensor '{s.id}': Modbus sensors need 'point' (a profile point)")
            mqtt_only = [
                name
                for name, given in (
                    ("topic", s.topic is not None),
                    ("json_path", s.json_path is not None),
                    ("field", s.field is not None),
                    ("match", bool(s.match)),
                )
                if given
            ]
            if mqtt_only:
                raise ValueError(f"sensor '{s.id}': {', '.join(mqtt_only)} are for MQTT devices")
        return self

    @property
    def line(self) -> str:
        """Where the device's frames go, for people: ``host:port`` or ``/dev/ttyUSB0 9600 8N1``."""
        raise NotImplementedError


class ModbusTcpDevice(ModbusDevice):
    """A Modbus TCP device (or a unit behind a Modbus TCP gateway), polled."""

    protocol: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)

    @property
    def line(self) -> str:
        return f"{self.host}:{self.port}"


class ModbusRtuDevice(ModbusDevice):
    """A Modbus RTU unit on a local RS-485 serial line (``port: /dev/ttyUSB0``)."""

    protocol: Literal["modbus_rtu"]
    port: str = Field(min_length=1, description="serial device, e.g. /dev/ttyUSB0")
    baudrate: int = Field(default=9600, ge=300, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @property
    def line(self) -> str:
        return f"{self.port} {self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class ModbusRtuTcpDevice(ModbusDevice):
    """A Modbus RTU unit behind a transparent serial server: RTU frames over a TCP socket."""

    protocol: Literal["modbus_rtu_tcp"]
    host: str
    port: int = Field(ge=1, le=65535)

    @property
    def line(self) -> str:
        return f"{self.host}:{self.port} (RTU)"


class MqttDevice(_DeviceBase):
    """A device that publishes to the broker; each sensor maps a topic (and JSON path)."""

    protocol: Literal["mqtt"]
    topic: str | None = Field(default=None, description="default topic for its sensors")
    expected_interval: float = Field(default=60.0, gt=0, le=86400, description="seconds")
    timestamp_path: str | None = Field(
        default=None, description="JSON path of the source timestamp (epoch s/ms or ISO 8601)"
    )
    format: str | None = Field(
        default=None,
        description="payload family (collectors.payloads: zigbee2mqtt, esphome, tasmota, "
        "shelly_ht, influx_line, json, number); default: json with a json_path, else number",
    )
    sequence_path: str | None = Field(
        default=None, description="JSON path of a message counter: a jump records sequence_gap"
    )

    @model_validator(mode="after")
    def _topics(self) -> MqttDevice:
        for s in self.sensors:
            if s.kind is None:
                raise ValueError(f"sensor '{s.id}': MQTT sensors need 'kind'")
            if s.point is not None:
                raise ValueError(f"sensor '{s.id}': 'point' is for Modbus devices")
            topic = s.topic or self.topic
            if not topic:
                raise ValueError(f"sensor '{s.id}': no topic (set it on the sensor or device)")
            if any(c in topic for c in "+#"):
                raise ValueError(f"sensor '{s.id}': topic '{topic}' must not contain wildcards")
            try:
                check_sensor(
                    self.format,
                    s.kind,
                    topic,
                    s.topic is not None,
                    s.json_path,
                    s.field,
                    self.sequence_path,
                    bool(s.match),
                )
            except ValueError as exc:
                raise ValueError(f"sensor '{s.id}': {exc}") from None
        return self

    def sensor_key(self, sensor: SensorSpec) -> tuple[str, str | None]:
        """Topic and selector: two sensors with the same key would read the same value."""
        assert sensor.kind is not None  # checked by the validator
        selector = sensor_selector(self.format, sensor.kind, sensor.json_path, sensor.field)
        if sensor.match:
            selector = f"{selector}@{sorted(sensor.match.items())}"
        return (self.sensor_topic(sensor), selector)

    def sensor_topic(self, sensor: SensorSpec) -> str:
        topic = sensor.topic or self.topic
        assert topic is not None  # checked by the validator
        return topic


Device = Annotated[
    ModbusTcpDevice | ModbusRtuDevice | ModbusRtuTcpDevice | MqttDevice,
    Field(discriminator="protocol"),
]


class OpeningHours(_Strict):
    """A span of opening hours on some weekdays (mon..sun); outside them doors stay shut."""

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    start: time
    end: time


class Room(_Strict):
    """A storage room with its class (the standards profile that sets its climate band)."""

    id: Id
    name: str = ""
    storage_class: Id
    tier: Literal["important", "ordinary"] = "ordinary"
    schedule: list[OpeningHours] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_reserved(self) -> Room:
        if self.id == OUTDOOR_ROOM:
            raise ValueError(
                f"room id '{OUTDOOR_ROOM}' is reserved for a building's outdoor sensors"
            )
        return self


class Building(_Strict):
    id: Id
    name: str = ""
    outdoor: list[Device] = Field(default_factory=list, description="outdoor climate devices")
    rooms: list[Room] = Field(min_length=1)


class SiteInfo(_Strict):
    id: Id
    name: str = ""
    timezone: str = "Asia/Shanghai"

    _known_zone = field_validator("timezone")(check_timezone)


class SiteFile(_Strict):
    """The whole site file. Paths to other files are relative to the site file."""

    site: SiteInfo
    standards_dir: str | None = Field(default=None, description="folder of extra climate profiles")
    device_profiles_dir: str | None = Field(
        default=None, description="folder of extra device profiles"
    )
    rules: str | None = None
    contacts: str | None = None
    buildings: list[Building] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class SensorRef:
    """A sensor with everything needed to tag its readings, resolved from the site tree."""

    site: str
    building: str
    room: str
    storage_class: str
    device: str
    sensor: str
    kind: SensorKind
    spec: SensorSpec

    def reading(
        self, value: float, ts_ns: int, *, raw: str | None = None, drill_id: str | None = None
    ) -> Reading:
        return Reading(
            site=self.site,
            building=self.building,
            room=self.room,
            device=self.device,
            sensor=self.sensor,
            kind=self.kind,
            storage_class=self.storage_class,
            value=value,
            ts_ns=ts_ns,
            drill_id=drill_id,
            raw=raw,
        )


@dataclass(frozen=True, slots=True)
class DevicePlacement:
    """A device with the building and room it sits in."""

    building: Building
    room: Room | None  # None: a building's outdoor device
    device: ModbusDevice | MqttDevice

    @property
    def room_id(self) -> str:
        return self.room.id if self.room else OUTDOOR_ROOM

    @property
    def storage_class(self) -> str:
        return self.room.storage_class if self.room else OUTDOOR_CLASS


class Site:
    """A validated site: the parsed file plus the profile libraries it refers to."""

    def __init__(
        self,
        path: Path,
        model: SiteFile,
        standards: StandardsLibrary,
        profiles: ProfileLibrary,
    ) -> None:
        self.path = path
        self.model = model
        self.standards = standards
        self.profiles = profiles
        self._refs: dict[str, SensorRef] = {}
        for placement in self.placements():
            for spec in placement.device.sensors:
                self._refs[spec.id] = self._resolve(placement, spec)

    @property
    def id(self) -> str:
        return self.model.site.id

    def relative(self, name: str) -> Path:
        return (self.path.parent / name).resolve()

    def placements(self) -> Iterator[DevicePlacement]:
        for b in self.model.buildings:
            for d in b.outdoor:
                yield DevicePlacement(b, None, d)
            for r in b.rooms:
                for d in r.devices:
                    yield DevicePlacement(b, r, d)

    def rooms(self) -> Iterator[tuple[Building, Room]]:
        for b in self.model.buildings:
            for r in b.rooms:
                yield b, r

    def _resolve(self, placement: DevicePlacement, spec: SensorSpec) -> SensorRef:
        kind = spec.kind
        dev = placement.device
        if kind is None and isinstance(dev, ModbusDevice) and spec.point:
            kind = self.profiles.get(dev.profile).points[spec.point].kind
        assert kind is not None
        return SensorRef(
            site=self.id,
            building=placement.building.id,
            room=placement.room_id,
            storage_class=placement.storage_class,
            device=dev.id,
            sensor=spec.id,
            kind=kind,
            spec=spec,
        )

    def sensor(self, sensor_id: str) -> SensorRef:
        return self._refs[sensor_id]

    def sensors(self) -> list[SensorRef]:
        return list(self._refs.values())

    def device_sensors(self, device_id: str) -> list[SensorRef]:
        return [r for r in self._refs.values() if r.device == device_id]


def _cross_check(
    model: SiteFile, standards: StandardsLibrary, profiles: ProfileLibrary
) -> list[tuple[tuple[int | str, ...], str]]:
    """Problems no single field can see: references and duplicate ids."""
    problems: list[tuple[tuple[int | str, ...], str]] = []
    seen_devices: dict[str, tuple[int | str, ...]] = {}
    seen_sensors: dict[str, tuple[int | str, ...]] = {}
    seen_topics: dict[tuple[str, str | None], str] = {}
    serial_lines: dict[str, ModbusRtuDevice] = {}  # one port, one baud rate and framing
    placed: list[tuple[ModbusDevice | MqttDevice, tuple[int | str, ...]]] = []
    for bi, b in enumerate(model.buildings):
        if sum(1 for x in model.buildings if x.id == b.id) > 1:
            problems.append((("buildings", bi, "id"), f"duplicate building id '{b.id}'"))
        groups: list[tuple[tuple[int | str, ...], list[ModbusDevice | MqttDevice]]] = [
            (("buildings", bi, "outdoor"), list(b.outdoor))
        ]
        for ri, r in enumerate(b.rooms):
            loc_r: tuple[int | str, ...] = ("buildings", bi, "rooms", ri)
            if sum(1 for x in b.rooms if x.id == r.id) > 1:
                problems.append(((*loc_r, "id"), f"duplicate room id '{r.id}'"))
            if r.storage_class not in standards:
                known = ", ".join(sorted(standards.profiles))
                problems.append(
                    (
                        (*loc_r, "storage_class"),
                        f"unknown storage class '{r.storage_class}' (known: {known})",
                    )
                )
            groups.append(((*loc_r, "devices"), list(r.devices)))
        for loc_g, devices in groups:
            for di, d in enumerate(devices):
                loc_d = (*loc_g, di)
                if d.id in seen_devices:
                    problems.append(((*loc_d, "id"), f"duplicate device id '{d.id}'"))
                seen_devices[d.id] = loc_d
                placed.append((d, loc_d))
                if isinstance(d, ModbusRtuDevice):
                    first = serial_lines.setdefault(d.port, d)
                    if first.line != d.line:
                        problems.append(
                            (
                                (*loc_d, "port"),
                                f"serial line {d.line} contradicts {first.line} of device "
                                f"'{first.id}' on the same port",
                            )
                        )
                if isinstance(d, ModbusDevice) and d.profile not in profiles:
                    known = ", ".join(sorted(profiles.profiles))
                    problems.append(
                        (
                            (*loc_d, "profile"),
                            f"unknown device profile '{d.profile}' (known: {known})",
                        )
                    )
                for si, s in enumerate(d.sensors):
                    loc_s = (*loc_d, "sensors", si)
                    if s.id in seen_sensors:
                        problems.append(((*loc_s, "id"), f"duplicate sensor id '{s.id}'"))
                    seen_sensors[s.id] = loc_s
                    if isinstance(d, ModbusDevice) and d.profile in profiles:
                        prof = profiles.get(d.profile)
                        if s.point not in prof.points:
                            problems.append(
                                (
                                    (*loc_s, "point"),
                                    f"profile '{d.profile}' has no point '{s.point}' "
                                    f"(points: {', '.join(prof.points)})",
                                )
                            )
                        elif s.kind is not None and s.kind != prof.points[s.point].kind:
                            problems.append(
                                (
                                    (*loc_s, "kind"),
                                    f"kind '{s.kind}' contradicts the profile point's kind "
                                    f"'{prof.points[s.point].kind}'",
                                )
                            )
                    if isinstance(d, MqttDevice):
                        key = d.sensor_key(s)
                        if key in seen_topics:
                            problems.append(
                                (
                                    (*loc_s,),
                                    f"sensors '{seen_topics[key]}' and '{s.id}' read the same "
                                    f"topic and JSON path",
                                )
                            )
                        seen_topics[key] = s.id
    problems.extend(_forgery_problems(placed))
    return problems


def acl_writers(topic: str) -> dict[str, str]:
    """The device logins the per-device ACL lets publish on ``topic``, each with the pattern
    that lets it (``tele/x/SENSOR`` -> ``{'x': 'tele/%u/#', 'tele': '%u/#'}``)."""
    levels = topic.split("/")
    writers: dict[str, str] = {}
    for pattern in DEVICE_ACL_WRITE_PATTERNS:
        user: str | None = None
        for i, step in enumerate(pattern.split("/")):
            if step == "#":  # the rest, and also the level above it (MQTT's rule)
                break
            if i >= len(levels):
                user = None
                break
            if step == "%u":
                user = levels[i]
            elif step not in ("+", levels[i]):
                user = None
                break
        else:
            if len(pattern.split("/")) != len(levels):
                user = None
        if user:
            writers.setdefault(user, pattern)
    return writers


def device_topics(device: MqttDevice) -> set[str]:
    """Every topic the gateway reads for ``device``: its sensors' topics as its payload family
    lays them out, and the family's availability topic."""
    topics: set[str] = set()
    for s in device.sensors:
        assert s.kind is not None  # checked by the model's validator
        fmt = format_for(s.json_path, device.format)
        topics.update(fmt.topics(device.sensor_topic(s), s.topic is not None, s.kind))
    if device.format and device.topic:
        status = format_for(None, device.format).availability_topic(device.topic)
        if status:
            topics.add(status)
    return topics


def _forgery_problems(
    placed: Sequence[tuple[ModbusDevice | MqttDevice, tuple[int | str, ...]]],
) -> list[tuple[tuple[int | str, ...], str]]:
    """Device ids that, as broker logins, the ACL would let publish as someone else.

    A device logs in with its id and the ACL lets it write ``%u/#`` and the other patterns of
    ``DEVICE_ACL_WRITE_PATTERNS``; so an id that is a topic root of other clients, a login of
    another client, or that sits where ``%u`` stands in another device's topic could publish
    that device's readings, and the gateway cannot tell (MQTT does not say who published).
    Refused for every device, Modbus ones too: broker logins are made from device ids, and a
    device may move to MQTT without anyone re-reading the ACL.
    """
    others: dict[str, list[tuple[str, str, str]]] = {}  # login -> (device, topic, pattern)
    for d, _ in placed:
        if isinstance(d, MqttDevice):
            for topic in sorted(device_topics(d)):
                for user, pattern in acl_writers(topic).items():
                    if user != d.id:
                        others.setdefault(user, []).append((d.id, topic, pattern))
    problems: list[tuple[tuple[int | str, ...], str]] = []
    for d, loc in placed:
        name = f"device id '{d.id}'"
        if d.id in RESERVED_TOPIC_ROOTS:
            why = f"{name} is a topic root other devices publish under"
            msg = f"{why} ({RESERVED_TOPIC_ROOTS[d.id]}); {_FORGE}"
        elif d.id in RESERVED_LOGINS:
            msg = (
                f"{name} is the broker login of {RESERVED_LOGINS[d.id]}; a device password "
                "under that name would replace theirs (the broker keeps one per name)"
            )
        elif d.id in others:
            victim, topic, pattern = others[d.id][0]
            if pattern == "%u/#":
                why = f"{name} is a topic root other devices publish under"
                msg = f"{why} (device '{victim}' on '{topic}'); {_FORGE}"
            else:
                msg = (
                    f"{name} is the publisher's name in topic '{topic}' of device '{victim}' "
                    f"under the ACL's '{pattern}'; {_FORGE}"
                )
        else:
            continue
        problems.append(((*loc, "id"), msg))
    return problems


def load_site(path: Path) -> Site:
    """Load and fully validate a site file; raise ConfigError listing every problem."""
    path = Path(path)
    data, lines = read_yaml(path)
    if data is None:
        raise ConfigError(path, [f"{path}: file is empty"])
    try:
        model = SiteFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, validation_problems(path, exc, lines)) from exc
    base = path.parent
    try:
        standards = StandardsLibrary.load(
            [base / model.standards_dir] if model.standards_dir else None
        )
        profiles = ProfileLibrary.load(
            [base / model.device_profiles_dir] if model.device_profiles_dir else None
        )
    except ConfigError as exc:
        raise ConfigError(path, exc.problems) from exc
    problems = _cross_check(model, standards, profiles)
    for ref_field in ("rules", "contacts"):
        name = getattr(model, ref_field)
        if name and not (base / name).is_file():
            problems.append(((ref_field,), f"file '{name}' not found next to the site file"))
    if problems:
        out = []
        for loc, msg in problems:
            parts = tuple(str(p) for p in loc)
            line = next(
                (lines[parts[:n]] for n in range(len(parts), 0, -1) if parts[:n] in lines), None
            )
            out.append(f"{path}:{line}: {format_loc(loc)}: {msg}" if line else f"{path}: {msg}")
        raise ConfigError(path, out)
    return Site(path, model, standards, profiles)
