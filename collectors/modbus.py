"""The Modbus collectors (TCP, RTU on a serial line, RTU over TCP) and ``probe``.

Each device is polled on its own cadence by its own task and its readings submitted. Devices
on one line (collectors.modbus_line) share one client and one lock, so a dead unit only ever
delays the units on *its* line, and there only for its own ``timeout × (retries + 1)`` (plus
its ``busy_retries``): the first unanswered request ends that unit's poll (telegraf#11782 is
the failure this avoids: one dead slave stalling a whole site). The three transports differ
only in how a line is reached; the poll loop, status and events are shared. State changes
are logged once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

from collectors.base import CollectorContext, DeviceStatus, register
from collectors.modbus_decode import DecodedValue, decode_point
from collectors.modbus_line import (
    EXCEPTION_CODES,
    ClientFactory,
    ModbusLine,
    PollError,
    line_spec,
)
from collectors.modbus_plan import ReadRequest, plan_reads
from collectors.modbus_profile import (
    ByteOrder,
    DataType,
    DeviceProfile,
    ProfileLibrary,
    RegisterType,
)
from gateway.reading import Event, Reading
from gateway.site import DevicePlacement, ModbusDevice, SensorRef
from gateway.validation import RejectReason

log = logging.getLogger(__name__)

__all__ = [
    "EXCEPTION_CODES",
    "ModbusCollector",
    "ModbusRtuCollector",
    "ModbusRtuTcpCollector",
    "ModbusTcpCollector",
    "PollError",
    "ProbeError",
    "ProbeRow",
    "next_poll_at",
    "probe",
]


class ProbeError(Exception):
    """``probe`` could not reach the device at all."""


def next_poll_at(previous: float, interval: float, now: float) -> float:
    """The next slot on the grid ``previous + k·interval`` that is not in the past.

    Polls stay on a fixed cadence (no drift from poll duration); slots that passed while a
    poll overran (timeouts) are skipped, not made up in a burst.
    """
    slot = previous + interval
    if slot < now:
        slot += math.ceil((now - slot) / interval) * interval
    return slot


@dataclass
class _Unit:
    """One polled device and what its poll task needs."""

    placement: DevicePlacement
    device: ModbusDevice
    endpoint: ModbusLine
    profile: DeviceProfile
    plan: list[ReadRequest]
    sensors: list[SensorRef]
    status: DeviceStatus
    online: bool | None = None  # None: not known yet (no success, not yet offline_after misses)
    faulted: set[str] = field(default_factory=set)
    sink_failing: bool = False
    crashed: bool = False
    badge_counter: int | None = None  # the controller's swipe counter at the last poll


def _decode_all(unit: _Unit, data: Sequence[list[int] | list[bool]]) -> dict[str, DecodedValue]:
    by_point: dict[str, DecodedValue] = {}
    for request, words in zip(unit.plan, data, strict=True):
        for name in request.points:
            point = unit.profile.points[name]
            by_point[name] = decode_point(point, request.slice(point, words))
    return by_point


def with_badge_points(profile: DeviceProfile) -> DeviceProfile:
    """The profile with its badge registers as points ``badge.number``/``badge.counter``,
    so one read plan covers sensors and badge registers alike."""
    extra = profile.badge_points()
    if not extra:
        return profile
    return profile.model_copy(update={"points": {**profile.points, **extra}})


class ModbusCollector:
    """Polls Modbus devices of one transport (``protocol``) into Readings; subclassed per
    transport only to register it."""

    protocol: ClassVar[str] = ""
    # Unused registers a request may span to merge two points (0: only contiguous ones).
    max_gap: ClassVar[int] = 0

    def __init__(self, placements: list[DevicePlacement], ctx: CollectorContext) -> None:
        self._ctx = ctx
        self._endpoints: dict[tuple[str, ...], ModbusLine] = {}
        self._units: list[_Unit] = []
        for placement in placements:
            device = placement.device
            if not isinstance(device, ModbusDevice) or device.protocol != self.protocol:
                raise TypeError(f"device '{device.id}' is not a {self.protocol} device")
            spec = line_spec(device, ctx.client_factories)
            endpoint = self._endpoints.get(spec.key)
            if endpoint is None:
                endpoint = ModbusLine(
                    spec,
                    timeout=device.timeout,
                    backoff_min=device.poll_interval / 2,
                    frame_gap=device.frame_gap,
                )
                self._endpoints[spec.key] = endpoint
            else:
                if endpoint.spec.settings != spec.settings:
                    raise ValueError(
                        f"device '{device.id}': line {spec.name} settings {spec.settings} "
                        f"differ from {endpoint.spec.settings} of another device on it"
                    )
                endpoint.widen(device.timeout, device.poll_interval / 2, device.frame_gap)
            profile = ctx.site.profiles.get(device.profile)
            refs = ctx.site.device_sensors(device.id)
            names = [ref.spec.point or "" for ref in refs] + list(profile.badge_points())
            profile = with_badge_points(profile)
            plan = plan_reads(profile, names, max_gap=self.max_gap)
            self._units.append(
                _Unit(
                    placement=placement,
                    device=device,
                    endpoint=endpoint,
                    profile=profile,
                    plan=plan,
                    sensors=refs,
                    status=DeviceStatus(device=device.id, protocol=self.protocol),
                )
            )

    def statuses(self) -> list[DeviceStatus]:
        return [replace(u.status) for u in self._units]

    async def run(self) -> None:
        """Poll every device until cancelled; device and network faults never end it."""
        try:
            async with asyncio.TaskGroup() as group:
                for unit in self._units:
                    group.create_task(self._poll_loop(unit), name=f"modbus-{unit.device.id}")
                if not self._units:
                    await asyncio.Event().wait()
        finally:
            for endpoint in self._endpoints.values():
                endpoint.drop()

    # -- one device ---------------------------------------------------------------------------

    async def _poll_loop(self, unit: _Unit) -> None:
        loop = asyncio.get_running_loop()
        slot = loop.time()
        while True:
            try:
                await self._poll_once(unit)
                unit.crashed = False
            except Exception:
                # A bug must not silently end collection for this device: log it once.
                if not unit.crashed:
                    log.exception("device %s: poll failed unexpectedly", unit.device.id)
                unit.crashed = True
            slot = next_poll_at(slot, unit.device.poll_interval, loop.time())
            await asyncio.sleep(max(0.0, slot - loop.time()))

    async def _poll_once(self, unit: _Unit) -> None:
        endpoint = unit.endpoint
        try:
            async with endpoint.lock:
                client = await endpoint.connect()
                dev = unit.device
                data = [
                    await endpoint.read(
                        client, dev.unit_id, req, dev.timeout, dev.retries, dev.busy_retries
                    )
                    for req in unit.plan
                ]
        except PollError as exc:
            if exc.reconnect:
                endpoint.drop()
            await self._missed(unit, str(exc))
            return
        # What the device answered is counted and submitted whole even if the collector is
        # stopped meanwhile: a stop must not drop a reading already read (nor count a poll
        # whose readings never reached the spool).
        finish = asyncio.ensure_future(self._finish(unit, data))
        try:
            await asyncio.shield(finish)
        except asyncio.CancelledError:
            await finish
            raise

    async def _finish(self, unit: _Unit, data: Sequence[list[int] | list[bool]]) -> None:
        ts_ns = self._ctx.clock.now_ns()
        good: list[Reading] = []
        faulty: list[Reading] = []
        by_point = _decode_all(unit, data)
        for ref in unit.sensors:
            decoded = by_point[ref.spec.point or ""]
            reading = ref.reading(decoded.value, ts_ns=ts_ns, raw=decoded.raw_hex)
            (faulty if decoded.fault else good).append(reading)
        await self._succeeded(unit, ts_ns)
        await self._badge(unit, by_point)
        await self._deliver(unit, good, faulty)

    async def _deliver(self, unit: _Unit, good: list[Reading], faulty: list[Reading]) -> None:
        reject = getattr(self._ctx.sink, "reject", None)
        now_faulted = {r.sensor for r in faulty}
        for reading in faulty:
            if reading.sensor not in unit.faulted:
                # The pipeline logs rejects it is told about; without it, we are the only voice.
                level = logging.DEBUG if reject is not None else logging.WARNING
                log.log(
                    level,
                    "sensor %s (device %s) reports a fault code: raw %s",
                    reading.sensor,
                    unit.device.id,
                    reading.raw,
                )
            if reject is not None:
                try:
                    result = reject(reading, RejectReason.FAULT_CODE)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("sensor %s: could not record a rejected reading", reading.sensor)
        for sensor in sorted(unit.faulted - now_faulted):
            log.info("sensor %s (device %s): fault code cleared", sensor, unit.device.id)
        unit.faulted = now_faulted
        if not good:
            return
        try:
            await self._ctx.sink.submit(good)
        except Exception:
            if not unit.sink_failing:
                log.exception("device %s: readings could not be submitted", unit.device.id)
            else:
                log.debug("device %s: readings still cannot be submitted", unit.device.id)
            unit.sink_failing = True
            return
        if unit.sink_failing:
            log.info("device %s: readings are submitted again", unit.device.id)
        unit.sink_failing = False

    async def _succeeded(self, unit: _Unit, ts_ns: int) -> None:
        st = unit.status
        st.polls += 1
        st.misses = 0
        st.last_seen_ns = ts_ns
        st.online = True
        was, unit.online = unit.online, True
        if was is None:
            log.info("device %s (%s unit %d): first poll OK", *self._where(unit))
        elif was is False:
            log.info("device %s (%s unit %d): back online", *self._where(unit))
            await self._emit(unit, "device_online", "info", "back online", "")

    async def _badge(self, unit: _Unit, by_point: dict[str, DecodedValue]) -> None:
        """A changed swipe counter is a ``badge`` event naming the last badge number.

        The first poll only learns the counter: swipes before archwatch started are unknown.
        """
        counter_value, number_value = by_point.get("badge.counter"), by_point.get("badge.number")
        if counter_value is None or number_value is None:
            return
        counter, number = int(counter_value.raw), int(number_value.raw)
        last, unit.badge_counter = unit.badge_counter, counter
        if last is None or counter == last:
            return
        width = unit.profile.points["badge.counter"].register_count * 16
        swipes = (counter - last) % (1 << width)  # the counter wraps around
        text = f"badge {number} (counter {counter})"
        if swipes > 1:
            text += f"; {swipes} swipes since the last poll, only the last badge is known"
        await self._emit(unit, "badge", "info", f"badge {number}", text)

    async def _missed(self, unit: _Unit, reason: str) -> None:
        st = unit.status
        st.misses += 1
        st.errors += 1
        st.last_error = reason
        if st.misses >= unit.device.offline_after and unit.online is not False:
            unit.online = False
            st.online = False
            log.warning(
                "device %s (%s unit %d): offline after %d missed polls: %s",
                *self._where(unit),
                st.misses,
                reason,
            )
            await self._emit(unit, "device_offline", "warning", "offline", reason)
        else:
            log.debug("device %s: missed poll %d: %s", unit.device.id, st.misses, reason)

    @staticmethod
    def _where(unit: _Unit) -> tuple[str, str, int]:
        return unit.device.id, unit.endpoint.name, unit.device.unit_id

    async def _emit(self, unit: _Unit, kind: str, severity: str, what: str, text: str) -> None:
        event = Event(
            ts_ns=self._ctx.clock.now_ns(),
            kind=kind,
            title=f"Device {unit.device.id} {what}",
            text=text,
            severity=severity,
            tags={
                "site": self._ctx.site.id,
                "building": unit.placement.building.id,
                "room": unit.placement.room_id,
                "device": unit.device.id,
            },
        )
        try:
            await self._ctx.events.emit(event)
        except Exception:
            log.exception("device %s: could not record event %s", unit.device.id, kind)


# -- probe ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """One profile point as read once from a device (``archwatch probe``)."""

    point: str
    sensor: str | None  # the site's sensor reading this point, if any
    register_type: RegisterType
    address: int
    data_type: DataType
    byte_order: ByteOrder | None
    raw: str | None  # words as sent, hex
    value: float | None
    fault: bool = False
    error: str | None = None


async def probe(
    placement: DevicePlacement,
    profiles: ProfileLibrary,
    client_factory: ClientFactory | None = None,
) -> list[ProbeRow]:
    """Read every point of the device's profile once; one row per point, in profile order.

    Works for every Modbus transport; ``client_factory`` replaces the transport's default
    client (as ``CollectorContext.client_factories`` does). A request that fails gives its
    points an ``error``; a device that cannot be reached at all raises ProbeError.
    """
    device = placement.device
    if not isinstance(device, ModbusDevice):
        raise TypeError(f"device '{device.id}' is not a Modbus device")
    profile = with_badge_points(profiles.get(device.profile))
    sensor_of = {s.point: s.id for s in device.sensors}
    factories = {device.protocol: client_factory} if client_factory else {}
    endpoint = ModbusLine(
        line_spec(device, factories),
        timeout=device.timeout,
        backoff_min=device.poll_interval / 2,
        frame_gap=device.frame_gap,
    )
    rows: dict[str, ProbeRow] = {}

    def row(name: str, decoded: DecodedValue | None, error: str | None) -> ProbeRow:
        p = profile.points[name]
        return ProbeRow(
            point=name,
            sensor=sensor_of.get(name),
            register_type=p.register_type,
            address=p.address,
            data_type=p.data_type,
            byte_order=p.byte_order,
            raw=decoded.raw_hex if decoded else None,
            value=decoded.value if decoded else None,
            fault=decoded.fault if decoded else False,
            error=error,
        )

    try:
        try:
            client = await endpoint.connect()
        except PollError as exc:
            raise ProbeError(str(exc)) from exc
        answered = False
        for request in plan_reads(profile):
            try:
                if not client.connected:
                    client = await endpoint.connect()
                words = await endpoint.read(
                    client,
                    device.unit_id,
                    request,
                    device.timeout,
                    device.retries,
                    device.busy_retries,
                )
            except PollError as exc:
                if exc.reconnect:
                    endpoint.drop()
                for name in request.points:
                    rows[name] = row(name, None, str(exc))
                continue
            answered = True
            for name in request.points:
                point = profile.points[name]
                rows[name] = row(name, decode_point(point, request.slice(point, words)), None)
    finally:
        endpoint.drop()
    if not answered and rows and all("no response" in (r.error or "") for r in rows.values()):
        # On a serial line "connected" only means the port opened: silence is unreachable.
        first = next(iter(rows.values()))
        raise ProbeError(f"unit {device.unit_id} does not answer: {first.error}")
    return [rows[name] for name in profile.points]


@register("modbus_tcp")
class ModbusTcpCollector(ModbusCollector):
    """Polls Modbus TCP devices (and units behind Modbus TCP gateways)."""

    protocol: ClassVar[str] = "modbus_tcp"


@register("modbus_rtu")
class ModbusRtuCollector(ModbusCollector):
    """Polls Modbus RTU units on local serial lines (RS-485 adapters)."""

    protocol: ClassVar[str] = "modbus_rtu"


@register("modbus_rtu_tcp")
class ModbusRtuTcpCollector(ModbusCollector):
    """Polls Modbus RTU units behind transparent serial servers (RTU frames over TCP)."""

    protocol: ClassVar[str] = "modbus_rtu_tcp"


def format_probe(rows: Sequence[ProbeRow]) -> list[str]:
    """``probe`` rows as an aligned table: the raw words beside the value decoded from them."""
    header = ("point", "sensor", "register", "type", "raw", "value", "flags")
    table = [header]
    for r in rows:
        order = f" {r.byte_order}" if r.byte_order else ""
        value = "-" if r.value is None else f"{r.value:.6g}"
        flags = "FAULT" if r.fault else ""
        if r.error:
            flags = f"ERROR: {r.error}"
        table.append(
            (
                r.point,
                r.sensor or "-",
                f"{r.register_type} {r.address}",
                f"{r.data_type}{order}",
                r.raw or "-",
                value,
                flags,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in table
    ]
