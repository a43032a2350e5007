"""Room status: what a keeper needs to know about each room now.

A room's ``status`` is the most urgent of its ``flags`` (precedence
alarm > offline > excursion > calibration_overdue > in_band):

- **alarm**: an open (firing or acknowledged), non-drill alert of severity ``critical``
  labelled with the room (smoke, water, confirmed fire, a forced door...).
- **offline**: a sensor of the room whose newest stored reading is older than its staleness
  limit, or that has none. The limit is ``max(offline_after, 3)`` report intervals of the
  sensor's device (``poll_interval`` for Modbus, ``expected_interval`` for MQTT): the gateway
  itself calls a device offline after ``offline_after`` (default 3) missed intervals, and
  never sooner than three here, so one slow forwarder batch does not flip a room.
- **excursion**: the newest temperature or humidity reading of a sensor of the room lies
  outside the band of the room's storage class (standards profile), or an open non-drill,
  non-critical ``band``, ``threshold`` or ``fluctuation`` alert is labelled with the room
  (such an alert stays open through its hysteresis and ``keep_firing_for``).
- **calibration_overdue**: a sensor of the room whose calibration due date
  (:attr:`gateway.site.Calibration.due`) is before today in the site file's time zone; due
  today is not yet overdue (as the ``calibration_overdue`` alert rule counts it).
- **in_band**: none of the above.

Drill readings and drill alerts never count: the store's queries leave readings with a
``drill_id`` out, and alerts are asked for with ``drill=False``.

The console imports :func:`room_statuses` and :func:`room_status`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import HTTPException, status

from alerting.lifecycle import Alert
from alerting.model import AlertState, Severity
from alerting.state_models import query_alerts
from api.deps import AppContext, Principal
from api.models import Role
from api.schemas_rooms import (
    PRECEDENCE,
    BandPublic,
    RoomDetail,
    RoomState,
    RoomStatus,
    SensorReading,
    StorageClassPublic,
)
from gateway.reading import UNITS, Reading, SensorKind, datetime_from_ns
from gateway.site import Building, ModbusDevice, MqttDevice, Room, SensorRef, Site
from gateway.standards import StandardsProfile
from gateway.store.base import ReadingFilter, StoreError

READER_ROLES = (Role.KEEPER, Role.SECURITY, Role.INSPECTOR, Role.DRILL_COORDINATOR)
"""Who may read the site, statuses, readings, series, summaries, alerts and silences (admin
always may)."""

STALE_INTERVALS_MIN = 3
"""A sensor is stale after at least this many report intervals of its device."""

EXCURSION_RULE_KINDS = frozenset({"band", "threshold", "fluctuation"})
"""Non-critical alert kinds that mark a room as in excursion while open."""

MAX_OPEN_ALERTS = 100_000
"""Open alerts read per status request (far above any real site's count)."""

_CLIMATE = (SensorKind.TEMPERATURE, SensorKind.HUMIDITY)


def device_interval(device: ModbusDevice | MqttDevice) -> float:
    """Seconds between a device's reports: its poll interval or its expected interval."""
    if isinstance(device, MqttDevice):
        return device.expected_interval
    return device.poll_interval


def stale_after_s(device: ModbusDevice | MqttDevice) -> float:
    """How old a device's newest reading may be before its sensors count as offline."""
    return max(device.offline_after, STALE_INTERVALS_MIN) * device_interval(device)


def band_public(profile: StandardsProfile, kind: SensorKind) -> BandPublic:
    band = profile.temperature if kind is SensorKind.TEMPERATURE else profile.humidity
    return BandPublic(min=band.min, max=band.max, unit=UNITS[kind])


def band_text(profile: StandardsProfile) -> str:
    """The climate band for people, e.g. ``14–24 °C, 45–60 %RH``."""
    t, h = profile.temperature, profile.humidity
    return f"{t.min:g}–{t.max:g} °C, {h.min:g}–{h.max:g} %RH"


def storage_class_public(profile: StandardsProfile) -> StorageClassPublic:
    return StorageClassPublic(
        id=profile.id,
        name=profile.name,
        name_en=profile.name_en,
        source=profile.source,
        temperature=band_public(profile, SensorKind.TEMPERATURE),
        humidity=band_public(profile, SensorKind.HUMIDITY),
        band=band_text(profile),
    )


def site_zone(site: Site) -> ZoneInfo:
    """The site file's time zone: the one the alert rules count calibration dates in."""
    return ZoneInfo(site.model.site.timezone)


def api_zone(ctx: AppContext) -> ZoneInfo:
    """The API's one time zone: the site file's when a site is loaded (the zone the alert
    rules, calibration dates and the Grafana daily board use), else the ``timezone``
    setting. Times are shown, naive query times read, series aligned and daily summaries
    cut in it."""
    if ctx.site is not None:
        return site_zone(ctx.site)
    return ZoneInfo(ctx.settings.timezone)


def local_time(ts_ns: int, zone: ZoneInfo) -> datetime:
    """Nanoseconds since the epoch as an aware datetime in ``zone``."""
    return datetime_from_ns(ts_ns).astimezone(zone)


def not_found(what: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no {what}")


log = logging.getLogger(__name__)

STORE_UNAVAILABLE = "the reading store did not answer; try again shortly"
# user:password@ in a URL the store's message may quote (its token is scrubbed already).
_USERINFO = re.compile(r"(?<=//)[^/@\s]+@")


def store_unavailable(exc: StoreError) -> HTTPException:
    """503 for a store that did not answer, with a fixed message: the store's own words
    (InfluxDB's internal address, raw server errors) are for the operator's log, not for
    every reader. Call it once per failure: each call logs it."""
    log.warning("reading store failed: %s", _USERINFO.sub("***@", str(exc)))
    return HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=STORE_UNAVAILABLE)


def find_room(site: Site, principal: Principal, building: str, room: str) -> tuple[Building, Room]:
    """The room, or 404 when it does not exist or is in a building the caller may not see
    (the same answer, so a keeper cannot probe other buildings)."""
    what = f"room {building}/{room}"
    principal.require_building(building, what)
    for b, r in site.rooms():
        if b.id == building and r.id == room:
            return b, r
    raise not_found(what)


def find_sensor(site: Site, principal: Principal, sensor: str) -> SensorRef:
    """The sensor, or 404 when unknown or in a building the caller may not see."""
    try:
        ref = site.sensor(sensor)
    except KeyError:
        raise not_found(f"sensor {sensor}") from None
    principal.require_building(ref.building, f"sensor {sensor}")
    return ref


@dataclass(frozen=True, slots=True)
class SensorPlace:
    """A sensor with the device that reports it (whose interval sets its staleness)."""

    ref: SensorRef
    device: ModbusDevice | MqttDevice


def sensor_places(site: Site) -> list[SensorPlace]:
    """Every sensor of the site (outdoor ones included) in site-file order."""
    return [
        SensorPlace(site.sensor(spec.id), placement.device)
        for placement in site.placements()
        for spec in placement.device.sensors
    ]


def room_sensors(site: Site, building: str, room: str) -> list[SensorPlace]:
    """The room's sensors in site-file order, each with its device."""
    return [p for p in sensor_places(site) if p.ref.building == building and p.ref.room == room]


def sensor_reading(
    place: SensorPlace, reading: Reading | None, now_ns: int, zone: ZoneInfo
) -> SensorReading:
    limit = stale_after_s(place.device)
    ref = place.ref
    return SensorReading(
        sensor=ref.sensor,
        sensor_name=ref.spec.name or ref.sensor,
        building=ref.building,
        room=ref.room,
        device=ref.device,
        kind=ref.kind.value,
        unit=UNITS[ref.kind],
        value=None if reading is None else reading.value,
        at=None if reading is None else local_time(reading.ts_ns, zone),
        stale=reading is None or now_ns - reading.ts_ns > limit * 1e9,
        stale_after_s=limit,
    )


async def open_alerts(ctx: AppContext) -> list[Alert]:
    """Open (firing or acknowledged) real alerts; pending ones have told nobody yet."""
    return await asyncio.to_thread(
        query_alerts,
        ctx.db,
        states=[AlertState.FIRING, AlertState.ACKNOWLEDGED],
        drill=False,
        limit=MAX_OPEN_ALERTS,
    )


def _alert_in_room(alert: Alert, building: str, room: str) -> bool:
    # Every evaluator labels site, building and room; a room id is only unique per building.
    labels = alert.labels
    return labels.get("room") == room and labels.get("building", building) == building


def _status(
    zone: ZoneInfo,
    site: Site,
    building: Building,
    room: Room,
    places: list[SensorPlace],
    latest: dict[str, Reading],
    alerts: list[Alert],
    now_ns: int,
) -> tuple[RoomStatus, list[SensorReading]]:
    # The site's zone is the API's zone (api_zone): the alert rules count due dates in it.
    today = local_time(now_ns, zone).date()
    profile = site.standards.get(room.storage_class)
    readings = [sensor_reading(p, latest.get(p.ref.sensor), now_ns, zone) for p in places]

    mine = [a for a in alerts if _alert_in_room(a, building.id, room.id)]
    alarm_alerts = [a.id for a in mine if a.severity is Severity.CRITICAL]
    excursion_alerts = [
        a.id
        for a in mine
        if a.severity is not Severity.CRITICAL and a.rule_kind in EXCURSION_RULE_KINDS
    ]
    offline = [r.sensor for r in readings if r.stale]
    excursion_sensors = []
    newest: dict[SensorKind, Reading] = {}
    for p in places:
        reading = latest.get(p.ref.sensor)
        if reading is None or p.ref.kind not in _CLIMATE:
            continue
        band = profile.temperature if p.ref.kind is SensorKind.TEMPERATURE else profile.humidity
        if not band.contains(reading.value):
            excursion_sensors.append(p.ref.sensor)
        if p.ref.kind not in newest or reading.ts_ns > newest[p.ref.kind].ts_ns:
            newest[p.ref.kind] = reading
    overdue = [
        p.ref.sensor
        for p in places
        if (cal := p.ref.spec.calibration) is not None and cal.due < today
    ]

    holds = {
        RoomState.ALARM: bool(alarm_alerts),
        RoomState.OFFLINE: bool(offline),
        RoomState.EXCURSION: bool(excursion_sensors or excursion_alerts),
        RoomState.CALIBRATION_OVERDUE: bool(overdue),
    }
    flags = [state for state in PRECEDENCE if holds.get(state, False)]
    seen = [latest[p.ref.sensor].ts_ns for p in places if p.ref.sensor in latest]
    temperature = newest.get(SensorKind.TEMPERATURE)
    humidity = newest.get(SensorKind.HUMIDITY)
    room_status = RoomStatus(
        building=building.id,
        building_name=building.name or building.id,
        room=room.id,
        room_name=room.name or room.id,
        storage_class=room.storage_class,
        storage_class_name=profile.name,
        status=flags[0] if flags else RoomState.IN_BAND,
        flags=flags or [RoomState.IN_BAND],
        temperature=None if temperature is None else temperature.value,
        humidity=None if humidity is None else humidity.value,
        band=band_text(profile),
        temperature_band=band_public(profile, SensorKind.TEMPERATURE),
        humidity_band=band_public(profile, SensorKind.HUMIDITY),
        last_seen=local_time(max(seen), zone) if seen else None,
        alarm_alerts=alarm_alerts,
        excursion_alerts=excursion_alerts,
        offline_sensors=offline,
        excursion_sensors=excursion_sensors,
        calibration_overdue_sensors=overdue,
    )
    return room_status, readings


async def _latest(ctx: AppContext, flt: ReadingFilter) -> dict[str, Reading]:
    try:
        return {r.sensor: r for r in await ctx.store.latest(flt)}
    except StoreError as exc:
        raise store_unavailable(exc) from None


async def room_statuses(ctx: AppContext, site: Site, principal: Principal) -> list[RoomStatus]:
    """The status of every room the principal may see, in site-file order."""
    rooms = [(b, r) for b, r in site.rooms() if principal.sees_building(b.id)]
    if not rooms:
        return []
    latest = await _latest(ctx, ReadingFilter(site=site.id))
    alerts = await open_alerts(ctx)
    now_ns, zone = ctx.clock.now_ns(), api_zone(ctx)
    return [
        _status(zone, site, b, r, room_sensors(site, b.id, r.id), latest, alerts, now_ns)[0]
        for b, r in rooms
    ]


async def room_status(
    ctx: AppContext, site: Site, principal: Principal, building: str, room: str
) -> RoomDetail:
    """One room's status and the newest reading of each of its sensors; 404 for a room that
    does not exist or that the principal may not see."""
    b, r = find_room(site, principal, building, room)
    latest = await _latest(ctx, ReadingFilter(site=site.id, building=b.id, room=r.id))
    alerts = await open_alerts(ctx)
    places = room_sensors(site, b.id, r.id)
    now_ns, zone = ctx.clock.now_ns(), api_zone(ctx)
    room_st, readings = _status(zone, site, b, r, places, latest, alerts, now_ns)
    return RoomDetail(**room_st.model_dump(), sensors=readings)
