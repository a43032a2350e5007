"""The Modbus TCP collector: polls each device on its own cadence and submits Readings.

Devices behind one (host, port) share one client connection and one asyncio lock: a Modbus
TCP gateway multiplexes one RS-485 line, which carries one frame at a time. Every device has
its own poll task, so a dead unit only ever delays the units on *its* line, and there only
for its own ``timeout × (retries + 1)``: the first unanswered request ends that unit's poll
(telegraf#11782 is the failure this avoids: one dead slave stalling a whole site).

Timeouts and retries are ours, per unit, around each request; the shared pymodbus client is
built with ``retries=0`` and a longer timeout of its own, so it never gives up on (or closes)
a connection that healthy units are still using. Every pymodbus failure is translated into
a ``PollError`` in one function (``_Endpoint.read``); state changes are logged once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException

from collectors.base import CollectorContext, DeviceStatus, register
from collectors.modbus_decode import DecodedValue, decode_point
from collectors.modbus_plan import ReadRequest, plan_reads
from collectors.modbus_profile import (
    ByteOrder,
    DataType,
    DeviceProfile,
    ProfileLibrary,
    RegisterType,
)
from gateway.reading import Event, Reading
from gateway.site import DevicePlacement, ModbusTcpDevice, SensorRef
from gateway.validation import RejectReason

log = logging.getLogger(__name__)

PROTOCOL = "modbus_tcp"
ClientFactory = Callable[..., Any]

# Modbus Application Protocol v1.1b3, section 7: what an exception response means.
EXCEPTION_CODES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge (busy with a long command)",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}
# Consecutive unanswered requests on an endpoint (no unit answering at all) after which the
# TCP connection itself is presumed dead (a half-open socket) and reopened.
SILENT_REQUESTS_BEFORE_RECONNECT = 3
RECONNECT_BACKOFF_MAX = 30.0
# pymodbus's connect() sleeps 0.1 s after the socket opens before returning.
_CONNECT_SETTLE = 0.1


class PollError(Exception):
    """One poll (or probe request) failed; the message is what ``last_error`` shows."""

    def __init__(self, message: str, *, reconnect: bool = False) -> None:
        super().__init__(message)
        self.reconnect = reconnect  # the connection is unusable: close it and reopen


class ProbeError(Exception):
    """``probe`` could not reach the device at all."""


def _reraise_if_cancelled(exc: BaseException) -> None:
    # pymodbus turns a CancelledError inside a request into ModbusIOException ("Request
    # cancelled outside pymodbus"); if *our* task is being cancelled, cancellation wins.
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


def next_poll_at(previous: float, interval: float, now: float) -> float:
    """The next slot on the grid ``previous + k·interval`` that is not in the past.

    Polls stay on a fixed cadence (no drift from poll duration); slots that passed while a
    poll overran (timeouts) are skipped, not made up in a burst.
    """
    slot = previous + interval
    if slot < now:
        slot += math.ceil((now - slot) / interval) * interval
    return slot


class _Endpoint:
    """One (host, port): one client connection and one lock shared by every unit behind it."""

    def __init__(
        self,
        host: str,
        port: int,
        factory: ClientFactory,
        *,
        timeout: float,
        backoff_min: float,
    ) -> None:
        self.host = host
        self.port = port
        self.lock = asyncio.Lock()
        self._factory = factory
        self.timeout = timeout
        self._backoff_min = backoff_min
        self._backoff = 0.0
        self._retry_at = 0.0
        self._down_reason = ""
        self._silent = 0
        self._client: Any = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def widen(self, timeout: float, backoff_min: float) -> None:
        """Make room for another unit on this endpoint."""
        self.timeout = max(self.timeout, timeout)
        self._backoff_min = min(self._backoff_min, backoff_min)

    async def connect(self) -> Any:
        """The connected client, opening it if needed (hold ``lock``). Raises PollError."""
        client = self._client
        if client is not None and client.connected:
            return client
        now = asyncio.get_running_loop().time()
        if now < self._retry_at:
            raise PollError(
                f"{self._down_reason}; next attempt in {self._retry_at - now:.1f} s",
                reconnect=True,
            )
        self.drop()
        # The client's own timeout is deliberately longer than ours: see the module docstring.
        client = self._factory(self.host, port=self.port, timeout=self.timeout * 2 + 1, retries=0)
        self._client = client
        timer = asyncio.timeout(self.timeout + _CONNECT_SETTLE)
        reason = "refused or unreachable"
        try:
            async with timer:
                ok = bool(await client.connect())
        except Exception as exc:
            _reraise_if_cancelled(exc)
            ok = False
            reason = f"no answer within {self.timeout:g} s" if timer.expired() else str(exc)
        if not ok:
            self.drop()
            self._backoff = min(
                max(self._backoff * 2, self._backoff_min),
                max(RECONNECT_BACKOFF_MAX, self._backoff_min),
            )
            self._retry_at = now + self._backoff
            self._down_reason = f"cannot connect to {self.name}: {reason}"
            raise PollError(self._down_reason, reconnect=True)
        self._backoff = 0.0
        self._silent = 0
        return client

    def drop(self) -> None:
        """Close the client (also cancels pymodbus's own reconnect task); next poll reopens."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    async def read(
        self, client: Any, unit: int, request: ReadRequest, attempt_s: float, retries: int
    ) -> list[int] | list[bool]:
        """Execute one read request for ``unit``: the one place pymodbus failures are caught.

        Every failure (exception, error response, timeout, short answer) becomes a PollError.
        """
        what = f"reading {request.describe()} of unit {unit} at {self.name}"
        for _attempt in range(retries + 1):
            if not client.connected:
                raise PollError(f"connection to {self.name} lost", reconnect=True)
            method = {
                RegisterType.HOLDING: client.read_holding_registers,
                RegisterType.INPUT: client.read_input_registers,
                RegisterType.COIL: client.read_coils,
                RegisterType.DISCRETE: client.read_discrete_inputs,
            }[request.register_type]
            timer = asyncio.timeout(attempt_s)
            try:
                async with timer:
                    response = await method(request.address, count=request.count, device_id=unit)
            except Exception as exc:
                _reraise_if_cancelled(exc)
                if timer.expired():
                    continue
                reconnect = isinstance(exc, ConnectionException | OSError) or not client.connected
                raise PollError(
                    f"{what}: {type(exc).__name__}: {exc}", reconnect=reconnect
                ) from exc
            self._silent = 0
            if response.isError():
                code = int(getattr(response, "exception_code", 0))
                meaning = EXCEPTION_CODES.get(code, "unknown exception code")
                raise PollError(f"{what}: exception response {code} ({meaning})")
            data: list[int] | list[bool] = (
                response.bits if request.register_type.is_bit else response.registers
            )
            if len(data) < request.count:
                raise PollError(
                    f"{what}: short response ({len(data)} of {request.count})", reconnect=True
                )
            return data[: request.count]
        self._silent += 1
        if not client.connected or self._silent >= SILENT_REQUESTS_BEFORE_RECONNECT:
            raise PollError(
                f"{what}: no response within {attempt_s:g} s × {retries + 1}; reconnecting",
                reconnect=True,
            )
        raise PollError(f"{what}: no response within {attempt_s:g} s × {retries + 1}")


@dataclass
class _Unit:
    """One polled device and what its poll task needs."""

    placement: DevicePlacement
    device: ModbusTcpDevice
    endpoint: _Endpoint
    profile: DeviceProfile
    plan: list[ReadRequest]
    sensors: list[SensorRef]
    status: DeviceStatus
    online: bool | None = None  # None: not known yet (no success, not yet offline_after misses)
    faulted: set[str] = field(default_factory=set)
    sink_failing: bool = False
    crashed: bool = False


def _decode_all(
    unit: _Unit, data: Sequence[list[int] | list[bool]]
) -> list[tuple[SensorRef, DecodedValue]]:
    by_point: dict[str, DecodedValue] = {}
    for request, words in zip(unit.plan, data, strict=True):
        for name in request.points:
            point = unit.profile.points[name]
            by_point[name] = decode_point(point, request.slice(point, words))
    return [(ref, by_point[ref.spec.point or ""]) for ref in unit.sensors]


@register(PROTOCOL)
class ModbusTcpCollector:
    """Polls Modbus TCP devices (and units behind Modbus TCP gateways) into Readings."""

    protocol: ClassVar[str] = PROTOCOL
    # Unused registers a request may span to merge two points (0: only contiguous ones).
    max_gap: ClassVar[int] = 0

    def __init__(self, placements: list[DevicePlacement], ctx: CollectorContext) -> None:
        self._ctx = ctx
        factory: ClientFactory = ctx.client_factories.get(PROTOCOL, AsyncModbusTcpClient)
        self._endpoints: dict[tuple[str, int], _Endpoint] = {}
        self._units: list[_Unit] = []
        for placement in placements:
            device = placement.device
            if not isinstance(device, ModbusTcpDevice):
                raise TypeError(f"device '{device.id}' is not a Modbus TCP device")
            key = (device.host, device.port)
            endpoint = self._endpoints.get(key)
            if endpoint is None:
                endpoint = _Endpoint(
                    device.host,
                    device.port,
                    factory,
                    timeout=device.timeout,
                    backoff_min=device.poll_interval / 2,
                )
                self._endpoints[key] = endpoint
            else:
                endpoint.widen(device.timeout, device.poll_interval / 2)
            profile = ctx.site.profiles.get(device.profile)
            refs = ctx.site.device_sensors(device.id)
            plan = plan_reads(profile, [ref.spec.point or "" for ref in refs], max_gap=self.max_gap)
            self._units.append(
                _Unit(
                    placement=placement,
                    device=device,
                    endpoint=endpoint,
                    profile=profile,
                    plan=plan,
                    sensors=refs,
                    status=DeviceStatus(device=device.id, protocol=PROTOCOL),
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
                data = [
                    await endpoint.read(
                        client, unit.device.unit_id, req, unit.device.timeout, unit.device.retries
                    )
                    for req in unit.plan
                ]
        except PollError as exc:
            if exc.reconnect:
                endpoint.drop()
            await self._missed(unit, str(exc))
            return
        ts_ns = self._ctx.clock.now_ns()
        good: list[Reading] = []
        faulty: list[Reading] = []
        for ref, decoded in _decode_all(unit, data):
            reading = ref.reading(decoded.value, ts_ns=ts_ns, raw=decoded.raw_hex)
            (faulty if decoded.fault else good).append(reading)
        await self._succeeded(unit, ts_ns)
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

    A request that fails gives its points an ``error``; a device that cannot be reached at
    all raises ProbeError.
    """
    device = placement.device
    if not isinstance(device, ModbusTcpDevice):
        raise TypeError(f"device '{device.id}' is not a Modbus TCP device")
    profile = profiles.get(device.profile)
    sensor_of = {s.point: s.id for s in device.sensors}
    endpoint = _Endpoint(
        device.host,
        device.port,
        client_factory or AsyncModbusTcpClient,
        timeout=device.timeout,
        backoff_min=device.poll_interval / 2,
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
        for request in plan_reads(profile):
            try:
                if not client.connected:
                    client = await endpoint.connect()
                words = await endpoint.read(
                    client, device.unit_id, request, device.timeout, device.retries
                )
            except PollError as exc:
                if exc.reconnect:
                    endpoint.drop()
                for name in request.points:
                    rows[name] = row(name, None, str(exc))
                continue
            for name in request.points:
                point = profile.points[name]
                rows[name] = row(name, decode_point(point, request.slice(point, words)), None)
    finally:
        endpoint.drop()
    return [rows[name] for name in profile.points]
