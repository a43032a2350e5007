"""Daily summaries of a room (the daily ledger): per local day, for temperature and humidity,
the minimum, mean, maximum and time in band.

**Days** are local days of the API's time zone (:func:`api.status.api_zone`: the site
file's, as on the Grafana daily board): from local midnight to the next. The store
computes the aggregates with one-day buckets shifted onto local midnight
(``Store.series(..., offset_s=...)``: InfluxQL ``GROUP BY time(86400s, 57600s)`` on
InfluxDB, the same arithmetic in SQL on the embedded store). Consecutive days of equal
length form one query; a day of another length (a daylight-saving change, in zones that
have one) is a query of its own with that length as its step, so its bucket is exactly
that day.

**Which days**: those whose local midnight lies in [start, end). ``start=2026-01-01&
end=2026-01-08`` is the seven days from 1 to 7 January; the default (the last 7 days up to
now) is the six days before today and today so far (``complete`` false).

**Minimum, mean, maximum**: ``min``, ``mean`` and ``max`` over every stored reading of the
day of every sensor of that kind in the room. With several sensors the mean is weighted by
each sensor's reading count (so it is the mean of all the readings).

**Time in band** counts *time*, not readings: the store's ``mean`` per five-minute bucket
(step 300 s, on the same local-midnight grid), per sensor; a bucket with data is *in band*
when its mean lies inside the room's band (inclusive). ``time_in_band = buckets in band /
buckets with data``, summed over the room's sensors of that kind; ``minutes_with_data``
and ``minutes_in_band`` are those bucket counts times five (1440 minutes with data is a
full day for one sensor). It is a fraction of the time covered by data: a gap counts
neither in nor out of band, and ``minutes_with_data`` shows the coverage. A five-minute
mean smooths out only excursions shorter than that (a room's climate moves over hours);
one-minute buckets would cost five times the points for a 92-day request (264,960 per
sensor instead of 26,496). The Grafana daily board's "按读数计的达标比例" is another figure: the
share of raw *readings* in band (a sensor reporting more often weighs more there); the two
differ and are not compared.

Drill readings never count: ``Store.series`` leaves readings with a ``drill_id`` out.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from api.deps import AppContext, Principal
from api.paging import TimeRange
from api.schemas_rooms import BandPublic, DaySummary, KindDay, RoomDaily
from api.status import (
    api_zone,
    band_public,
    band_text,
    find_room,
    local_time,
    store_unavailable,
)
from gateway.reading import SensorKind, ns_from_datetime
from gateway.site import Site
from gateway.standards import Band
from gateway.store.base import Aggregate, SeriesPoint, StoreError

S = 1_000_000_000
TIME_IN_BAND_STEP_S = 300
"""Bucket of the time-in-band count: five-minute means."""
_BUCKET_MINUTES = TIME_IN_BAND_STEP_S // 60

KINDS = ("temperature", "humidity")


@dataclass(frozen=True, slots=True)
class LocalDay:
    """One local day: [start_ns, end_ns)."""

    day: date
    start_ns: int
    end_ns: int

    @property
    def length_s(self) -> int:
        return (self.end_ns - self.start_ns) // S


def _midnight(day: date, zone: ZoneInfo) -> int:
    return ns_from_datetime(datetime.combine(day, time(0), tzinfo=zone))


def local_days(start: datetime, end: datetime, zone: ZoneInfo) -> list[LocalDay]:
    """The local days whose midnight lies in [start, end)."""
    start_ns, end_ns = ns_from_datetime(start), ns_from_datetime(end)
    day = start.astimezone(zone).date()
    if _midnight(day, zone) < start_ns:
        day += timedelta(days=1)
    out = []
    while (begin := _midnight(day, zone)) < end_ns:
        out.append(LocalDay(day, begin, _midnight(day + timedelta(days=1), zone)))
        day += timedelta(days=1)
    return out


def runs(days: Sequence[LocalDay]) -> list[list[LocalDay]]:
    """Consecutive days that one series query covers: equal length, on one bucket grid."""
    out: list[list[LocalDay]] = []
    for d in days:
        last = out[-1][-1] if out else None
        if (
            last is not None
            and last.end_ns == d.start_ns
            and last.length_s == d.length_s
            and (last.start_ns // S) % last.length_s == (d.start_ns // S) % d.length_s
        ):
            out[-1].append(d)
        else:
            out.append([d])
    return out


@dataclass(slots=True)
class _Acc:
    """What one day of one kind adds up to over the room's sensors."""

    mins: list[float]
    maxes: list[float]
    means: list[tuple[float, int]]  # (mean, count) per sensor with data
    readings: int = 0
    minutes: int = 0
    in_band: int = 0

    def result(self, band: BandPublic) -> KindDay:
        if len(self.means) == 1:
            mean: float | None = self.means[0][0]
        elif self.means:
            total = sum(n for _, n in self.means)
            mean = math.fsum(m * n for m, n in self.means) / total
        else:
            mean = None
        return KindDay(
            min=min(self.mins) if self.mins else None,
            mean=mean,
            max=max(self.maxes) if self.maxes else None,
            readings=self.readings,
            minutes_with_data=self.minutes,
            minutes_in_band=self.in_band,
            time_in_band=self.in_band / self.minutes if self.minutes else None,
            band=band,
        )


async def _sensor_run(
    ctx: AppContext, sensor: str, run: list[LocalDay]
) -> tuple[list[SeriesPoint], ...]:
    """Daily min, max, mean, count and the five-minute means of one sensor over one run."""
    start_ns, end_ns = run[0].start_ns, run[-1].end_ns
    step = run[0].length_s
    offset = (start_ns // S) % step
    daily = [
        ctx.store.series(sensor, start_ns, end_ns, step, agg, offset_s=offset)
        for agg in (Aggregate.MIN, Aggregate.MAX, Aggregate.MEAN, Aggregate.COUNT)
    ]
    buckets = ctx.store.series(
        sensor,
        start_ns,
        end_ns,
        TIME_IN_BAND_STEP_S,
        Aggregate.MEAN,
        offset_s=(start_ns // S) % TIME_IN_BAND_STEP_S,
    )
    return tuple(await asyncio.gather(*daily, buckets))


def _add_run(
    accs: list[_Acc], run: list[LocalDay], band: Band, series: tuple[list[SeriesPoint], ...]
) -> None:
    mins, maxes, means, counts, buckets = series
    for acc, lo, hi, mean, count in zip(accs, mins, maxes, means, counts, strict=True):
        if count.value is None or lo.value is None or hi.value is None or mean.value is None:
            continue
        acc.mins.append(lo.value)
        acc.maxes.append(hi.value)
        acc.means.append((mean.value, int(count.value)))
        acc.readings += int(count.value)
    day_ns = run[0].length_s * S
    for point in buckets:
        if point.value is None:
            continue
        acc = accs[(point.ts_ns - run[0].start_ns) // day_ns]
        acc.minutes += _BUCKET_MINUTES
        acc.in_band += _BUCKET_MINUTES if band.contains(point.value) else 0


async def room_daily(
    ctx: AppContext,
    site: Site,
    principal: Principal,
    building: str,
    room: str,
    rng: TimeRange,
) -> RoomDaily:
    """The room's daily summaries for the local days beginning in ``rng``; 404 for a room
    that does not exist or that the principal may not see."""
    b, r = find_room(site, principal, building, room)
    zone = api_zone(ctx)
    profile = site.standards.get(r.storage_class)
    sensors = {
        kind: [
            ref.sensor
            for ref in site.sensors()
            if ref.building == b.id and ref.room == r.id and ref.kind.value == kind
        ]
        for kind in KINDS
    }
    bands = {"temperature": profile.temperature, "humidity": profile.humidity}
    days = local_days(rng.start, rng.end, zone)
    accs = {kind: [_Acc([], [], []) for _ in days] for kind in KINDS}
    jobs = []
    first = 0
    for run in runs(days):
        for kind in KINDS:
            for sensor in sensors[kind]:
                jobs.append((kind, first, run, _sensor_run(ctx, sensor, run)))
        first += len(run)
    try:
        results = await asyncio.gather(*(job for *_, job in jobs))
    except StoreError as exc:
        raise store_unavailable(exc) from None
    for (kind, index, run, _), series in zip(jobs, results, strict=True):
        _add_run(accs[kind][index : index + len(run)], run, bands[kind], series)

    now_ns = ctx.clock.now_ns()
    band_of = {kind: band_public(profile, SensorKind(kind)) for kind in KINDS}
    return RoomDaily(
        building=b.id,
        building_name=b.name or b.id,
        room=r.id,
        room_name=r.name or r.id,
        storage_class=r.storage_class,
        timezone=zone.key,
        band=band_text(profile),
        sensors=sensors,
        days=[
            DaySummary(
                date=d.day,
                start=local_time(d.start_ns, zone),
                end=local_time(d.end_ns, zone),
                complete=d.end_ns <= now_ns,
                temperature=accs["temperature"][i].result(band_of["temperature"]),
                humidity=accs["humidity"][i].result(band_of["humidity"]),
            )
            for i, d in enumerate(days)
        ],
    )
