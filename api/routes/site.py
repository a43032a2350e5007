"""The site tree, the latest reading per sensor, and aggregated series of one sensor.

Roles: keeper, security, inspector, drill_coordinator (admin always). A keeper sees only
their buildings: listings leave the others out, and asking for an object in one answers 404
as for an object that does not exist.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.deps import Context, Principal, SiteDep, require_roles
from api.paging import Page, PagingDep, TimeRange, time_range, unprocessable
from api.schemas_rooms import (
    BuildingPublic,
    CalibrationPublic,
    DevicePublic,
    RoomPublic,
    SensorPublic,
    SensorReading,
    SeriesPointPublic,
    SeriesPublic,
    SiteTree,
)
from api.status import (
    READER_ROLES,
    api_zone,
    device_interval,
    find_sensor,
    local_time,
    not_found,
    sensor_places,
    sensor_reading,
    storage_class_public,
    store_unavailable,
)
from gateway.reading import UNITS, SensorKind
from gateway.site import OUTDOOR_ROOM, ModbusDevice, MqttDevice, Site
from gateway.store.base import Aggregate, ReadingFilter, StoreError
from gateway.store.buckets import bucket_count

router = APIRouter(prefix="/api/v1", tags=["site"])

Reader = Annotated[Principal, Depends(require_roles(*READER_ROLES))]

MIN_STEP_S = 10
MAX_POINTS = 2000
LONGEST_SERIES = timedelta(days=31)
NICE_STEPS_S = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
"""Default steps: the smallest of these that keeps a range within MAX_POINTS."""


def _device(device: ModbusDevice | MqttDevice, site: Site) -> DevicePublic:
    sensors = []
    for spec in device.sensors:
        ref = site.sensor(spec.id)
        cal = spec.calibration
        sensors.append(
            SensorPublic(
                id=spec.id,
                name=spec.name or spec.id,
                kind=ref.kind.value,
                unit=UNITS[ref.kind],
                calibration=None
                if cal is None
                else CalibrationPublic(
                    calibrated_on=cal.calibrated_on, interval_days=cal.interval_days, due=cal.due
                ),
            )
        )
    return DevicePublic(
        id=device.id,
        name=device.name or device.id,
        protocol=device.protocol,
        interval_s=device_interval(device),
        offline_after=device.offline_after,
        sensors=sensors,
    )


@router.get("/site", response_model=SiteTree)
async def read_site(principal: Reader, site: SiteDep) -> SiteTree:
    """The site tree: buildings, rooms (storage class and its band), devices and sensors
    with their display names, limited to the buildings the caller sees."""
    buildings = [
        BuildingPublic(
            id=b.id,
            name=b.name or b.id,
            rooms=[
                RoomPublic(
                    id=r.id,
                    name=r.name or r.id,
                    storage_class=storage_class_public(site.standards.get(r.storage_class)),
                    tier=r.tier,
                    devices=[_device(d, site) for d in r.devices],
                )
                for r in b.rooms
            ],
            outdoor=[_device(d, site) for d in b.outdoor],
        )
        for b in site.model.buildings
        if principal.sees_building(b.id)
    ]
    info = site.model.site
    return SiteTree(
        id=info.id, name=info.name or info.id, timezone=info.timezone, buildings=buildings
    )


def _check_place(site: Site, principal: Principal, building: str | None, room: str | None) -> None:
    """404 for a building or room filter naming nothing the caller may see."""
    if building is not None:
        principal.require_building(building, f"building {building}")
        if not any(b.id == building for b in site.model.buildings):
            raise not_found(f"building {building}")
    if room is not None and room != OUTDOOR_ROOM:
        known = any(
            r.id == room
            and (building is None or b.id == building)
            and principal.sees_building(b.id)
            for b, r in site.rooms()
        )
        if not known:
            where = f"{building}/{room}" if building else room
            raise not_found(f"room {where}")


@router.get("/readings/latest", response_model=Page[SensorReading])
async def latest_readings(
    principal: Reader,
    site: SiteDep,
    ctx: Context,
    paging: PagingDep,
    building: Annotated[str | None, Query(max_length=64, description="building id")] = None,
    room: Annotated[
        str | None, Query(max_length=64, description="room id ('outdoor': outdoor sensors)")
    ] = None,
    kind: Annotated[SensorKind | None, Query(description="sensor kind")] = None,
) -> Page[SensorReading]:
    """The newest non-drill reading of each sensor (sensors without one: ``value`` null),
    in site-file order; ``stale`` marks a sensor past its staleness limit (api.status)."""
    _check_place(site, principal, building, room)
    places = [
        p
        for p in sensor_places(site)
        if principal.sees_building(p.ref.building)
        and (building is None or p.ref.building == building)
        and (room is None or p.ref.room == room)
        and (kind is None or p.ref.kind is kind)
    ]
    page = places[paging.offset : paging.offset + paging.limit]
    latest = {}
    if page:
        flt = ReadingFilter(
            site=site.id,
            building=building,
            room=room,
            kind=None if kind is None else kind.value,
        )
        try:
            latest = {r.sensor: r for r in await ctx.store.latest(flt)}
        except StoreError as exc:
            raise store_unavailable(exc) from None
    now_ns, zone = ctx.clock.now_ns(), api_zone(ctx)
    return Page(
        items=[sensor_reading(p, latest.get(p.ref.sensor), now_ns, zone) for p in page],
        total=len(places),
        limit=paging.limit,
        offset=paging.offset,
    )


def _local_offset_s(when: datetime, step_s: int) -> int:
    """The bucket offset that puts bucket edges on local midnight (and local hours) for the
    UTC offset in force at ``when``."""
    return -_utc_offset_s(when) % step_s


def _utc_offset_s(when: datetime) -> int:
    return int((when.utcoffset() or timedelta(0)).total_seconds())


def _offset_change(start: datetime, end: datetime, step_s: int) -> tuple[datetime, int] | None:
    """The first instant (to the hour) in [start, end) where the zone's UTC offset puts
    ``step_s`` buckets on another grid than at ``start``, with the size of the change in
    seconds; None when one grid fits the whole range.

    One query has one bucket grid: across a daylight-saving change, day buckets (and 2-hour,
    6-hour... ones) would start an hour off local midnight on one side. Steps that divide
    the change (an hour, mostly) are unaffected. Every offset lasts far longer than an
    hour, so hourly samples find every change in a range of at most 31 days.
    """
    zone = start.tzinfo
    first = _utc_offset_s(start)
    at, last = start.astimezone(UTC), end.astimezone(UTC) - timedelta(microseconds=1)
    while True:
        # Sampled in UTC: aware arithmetic in the local zone would step in wall time.
        local = min(at, last).astimezone(zone)
        change = _utc_offset_s(local) - first
        if change and change % step_s:
            return local, change
        if at >= last:
            return None
        at += timedelta(hours=1)


@router.get("/sensors/{sensor}/series", response_model=SeriesPublic)
async def sensor_series(
    sensor: str,
    principal: Reader,
    site: SiteDep,
    ctx: Context,
    rng: Annotated[
        TimeRange, Depends(time_range(default=timedelta(hours=24), longest=LONGEST_SERIES))
    ],
    step: Annotated[
        int | None,
        Query(
            description=f"seconds per point, at least {MIN_STEP_S}; default: the smallest "
            f"common step giving at most {MAX_POINTS} points"
        ),
    ] = None,
    agg: Annotated[Aggregate, Query(description="aggregate per step")] = Aggregate.MEAN,
) -> SeriesPublic:
    """``agg`` of one sensor's non-drill readings per ``step`` over [start, end), computed by
    the store (InfluxQL on InfluxDB, SQL on the embedded store). Buckets are aligned to local
    midnight of the API's time zone (the site file's). A range crossing a change of UTC
    offset (daylight saving) with a step the change does not divide (a day, 2 hours...) is
    refused with 422: one grid cannot stay on local midnight on both sides. At most 31
    days and 2000 points per request."""
    ref = find_sensor(site, principal, sensor)
    zone = api_zone(ctx)
    start, end = rng.start.astimezone(zone), rng.end.astimezone(zone)
    start_ns, end_ns = rng.start_ns, rng.end_ns
    if step is None:
        for candidate in NICE_STEPS_S:
            offset = _local_offset_s(start, candidate)
            fits = bucket_count(start_ns, end_ns, candidate, offset) <= MAX_POINTS
            if fits and _offset_change(start, end, candidate) is None:
                step = candidate
                break
        else:  # pragma: no cover - 31 days in 1-day steps is 32 points
            step = NICE_STEPS_S[-1]
    if step < MIN_STEP_S:
        raise unprocessable(f"step must be at least {MIN_STEP_S} s, got {step}")
    if step > int(LONGEST_SERIES.total_seconds()):
        raise unprocessable(f"step must be at most {LONGEST_SERIES.days} days ({step} s given)")
    offset = _local_offset_s(start, step)
    points = bucket_count(start_ns, end_ns, step, offset)
    if points > MAX_POINTS:
        # ceil(span / (max - 1)): even a range straddling bucket edges then fits.
        least = max(MIN_STEP_S, -(-int(rng.seconds) // (MAX_POINTS - 1)))
        raise unprocessable(
            f"{points} points of {step} s in the range; at most {MAX_POINTS} per request: "
            f"use a step of at least {least} s or a shorter range"
        )
    if (crossing := _offset_change(start, end, step)) is not None:
        at, change = crossing
        raise unprocessable(
            f"the range crosses a change of UTC offset in {zone.key} (by {change:+d} s, "
            f"by {at:%Y-%m-%d %H:%M %z}): {step} s buckets cannot start at local midnight on "
            f"both sides; use a step dividing {abs(change)} s, or ask for each side apart"
        )
    try:
        series = await ctx.store.series(ref.sensor, start_ns, end_ns, step, agg, offset_s=offset)
    except StoreError as exc:
        raise store_unavailable(exc) from None
    return SeriesPublic(
        sensor=ref.sensor,
        building=ref.building,
        room=ref.room,
        kind=ref.kind.value,
        unit=UNITS[ref.kind],
        agg=agg,
        step_s=step,
        start=start,
        end=end,
        points=[SeriesPointPublic(at=local_time(p.ts_ns, zone), value=p.value) for p in series],
    )
