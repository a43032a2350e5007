"""Response bodies of the site, room-status, reading, series and daily-summary routes.

Ids are the site file's ASCII ids; ``*_name`` fields carry its display names (Chinese in a
Chinese site file). Times are ISO 8601 with the site's UTC offset; values are in the fixed
unit of their kind (``unit``: °C, %RH, ...).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from gateway.store.base import Aggregate


class RoomState(StrEnum):
    """A room's status, in order of precedence: the first that applies is ``status``."""

    ALARM = "alarm"
    OFFLINE = "offline"
    EXCURSION = "excursion"
    CALIBRATION_OVERDUE = "calibration_overdue"
    IN_BAND = "in_band"


PRECEDENCE: tuple[RoomState, ...] = tuple(RoomState)
"""Most urgent first: alarm > offline > excursion > calibration_overdue > in_band."""


class BandPublic(BaseModel):
    """An inclusive range ``min <= value <= max`` in ``unit``."""

    min: float
    max: float
    unit: str


class StorageClassPublic(BaseModel):
    """A storage class's standards profile: its climate band and where it comes from."""

    id: str
    name: str
    name_en: str
    source: str
    temperature: BandPublic
    humidity: BandPublic
    band: str = Field(description="the band as text, e.g. '14–24 °C, 45–60 %RH'")


class CalibrationPublic(BaseModel):
    """A sensor's calibration record (1987 regulation, Art. 11)."""

    calibrated_on: date
    interval_days: int
    due: date


class SensorPublic(BaseModel):
    """A sensor in the site tree."""

    id: str
    name: str
    kind: str
    unit: str
    calibration: CalibrationPublic | None


class DevicePublic(BaseModel):
    """A device in the site tree, with the interval it reports at."""

    id: str
    name: str
    protocol: str
    interval_s: float = Field(description="poll interval (Modbus) or expected interval (MQTT)")
    offline_after: int = Field(description="missed intervals before the device is offline")
    sensors: list[SensorPublic]


class RoomPublic(BaseModel):
    """A storage room in the site tree."""

    id: str
    name: str
    storage_class: StorageClassPublic
    tier: str
    devices: list[DevicePublic]


class BuildingPublic(BaseModel):
    """A building in the site tree: its rooms and its outdoor devices."""

    id: str
    name: str
    rooms: list[RoomPublic]
    outdoor: list[DevicePublic]


class SiteTree(BaseModel):
    """The site as the caller may see it (a keeper: only their buildings)."""

    id: str
    name: str
    timezone: str
    buildings: list[BuildingPublic]


class SensorReading(BaseModel):
    """The newest stored (non-drill) reading of one sensor; ``value`` None: none yet."""

    sensor: str
    sensor_name: str
    building: str
    room: str
    device: str
    kind: str
    unit: str
    value: float | None
    at: datetime | None
    stale: bool = Field(description="no reading within the device's staleness limit")
    stale_after_s: float = Field(description="the staleness limit (see api.status)")


class RoomStatus(BaseModel):
    """One room's status now, with every condition that holds (``flags``, most urgent first).

    ``temperature``/``humidity`` are the newest reading among the room's sensors of that
    kind; ``last_seen`` the newest reading of any of its sensors.
    """

    building: str
    building_name: str
    room: str
    room_name: str
    storage_class: str
    storage_class_name: str
    status: RoomState
    flags: list[RoomState]
    temperature: float | None
    humidity: float | None
    band: str
    temperature_band: BandPublic
    humidity_band: BandPublic
    last_seen: datetime | None
    alarm_alerts: list[str] = Field(description="ids of open critical alerts of the room")
    excursion_alerts: list[str] = Field(description="ids of open non-critical climate alerts")
    offline_sensors: list[str]
    excursion_sensors: list[str] = Field(description="latest value outside the band")
    calibration_overdue_sensors: list[str]


class RoomDetail(RoomStatus):
    """A room's status plus the newest reading of each of its sensors."""

    sensors: list[SensorReading]


class SeriesPointPublic(BaseModel):
    """One step of a series: the bucket's start and the aggregate (None: no data)."""

    at: datetime
    value: float | None


class SeriesPublic(BaseModel):
    """An aggregated series of one sensor, computed by the store."""

    sensor: str
    building: str
    room: str
    kind: str
    unit: str
    agg: Aggregate
    step_s: int
    start: datetime
    end: datetime
    points: list[SeriesPointPublic]


class KindDay(BaseModel):
    """One day of one quantity (temperature or humidity) over the room's sensors of that kind.

    ``time_in_band`` = ``minutes_in_band / minutes_with_data``, counted in five-minute
    means (see api.summaries for the method); None when the day has no data.
    """

    min: float | None
    mean: float | None
    max: float | None
    readings: int
    minutes_with_data: int
    minutes_in_band: int
    time_in_band: float | None = Field(description="fraction 0..1 of the time with data")
    band: BandPublic


class DaySummary(BaseModel):
    """One local day of a room: [start, end) from local midnight to local midnight."""

    date: date
    start: datetime
    end: datetime
    complete: bool = Field(description="the day is over (false for today)")
    temperature: KindDay
    humidity: KindDay


class RoomDaily(BaseModel):
    """A room's daily summaries (the daily ledger)."""

    building: str
    building_name: str
    room: str
    room_name: str
    storage_class: str
    timezone: str
    band: str
    sensors: dict[str, list[str]] = Field(description="sensor ids per quantity")
    days: list[DaySummary]
