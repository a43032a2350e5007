"""One Modbus line: a client, the lock that serialises it, and the one place requests fail.

A line is whatever carries one frame at a time: a serial port (RTU on RS-485), a serial
server's TCP socket (RTU over TCP), or a Modbus TCP gateway's host:port in front of an RS-485
line. Every unit on a line shares one client and one ``asyncio.Lock``. On a serial line
every transaction starts at least 3.5 character times after the previous answer ended (the
RTU inter-frame silence, :func:`rtu_silence`: pymodbus's async serial client does not keep
it), plus ``frame_gap`` for units that need more; a serial server keeps the silence on its
own wire, so RTU over TCP waits only ``frame_gap``.

Timeouts and retries are ours, per unit, around each request; the shared pymodbus client is
built with ``retries=0`` and a longer timeout of its own, so it never gives up on (or closes)
a line that healthy units are still using. A garbled answer (bad CRC) is dropped by the
pymodbus framer, so to us it is a unit that did not answer in time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException

from collectors.modbus_plan import ReadRequest
from collectors.modbus_profile import RegisterType
from gateway.site import ModbusDevice, ModbusRtuDevice, ModbusRtuTcpDevice, ModbusTcpDevice

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
# Exception responses that mean "ask again shortly", retried ``busy_retries`` times.
BUSY_CODES = frozenset({5, 6})
BUSY_RETRY_DELAY = 0.05
# Consecutive unanswered requests on a line (no unit answering at all) after which the
# connection itself is presumed dead (a half-open socket, an unplugged adapter) and reopened.
SILENT_REQUESTS_BEFORE_RECONNECT = 3
RECONNECT_BACKOFF_MAX = 30.0
# pymodbus's connect() sleeps 0.1 s after the transport opens before returning.
_CONNECT_SETTLE = 0.1


class PollError(Exception):
    """One poll (or probe request) failed; the message is what ``last_error`` shows."""

    def __init__(self, message: str, *, reconnect: bool = False) -> None:
        super().__init__(message)
        self.reconnect = reconnect  # the connection is unusable: close it and reopen


def reraise_if_cancelled(exc: BaseException) -> None:
    """pymodbus turns a CancelledError inside a request into ModbusIOException ("Request
    cancelled outside pymodbus"); if *our* task is being cancelled, cancellation wins."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


@dataclass(frozen=True)
class LineSpec:
    """How to reach a device's line: its identity, display name, settings and client maker.

    ``settings`` must agree between devices on one line (one serial port has one baud rate).
    """

    key: tuple[str, ...]
    name: str
    settings: tuple[object, ...]
    make_client: Callable[[float], Any]  # client timeout -> an unconnected pymodbus client
    silence: float = 0.0  # seconds of silence the wire itself needs between frames


def rtu_silence(baudrate: int, bytesize: int, parity: str, stopbits: int) -> float:
    """RTU's inter-frame silence in seconds: 3.5 character times, 1.75 ms above 19200 baud.

    A character is a start bit, the data bits, a parity bit unless parity is none, and the
    stop bits (Modbus over Serial Line Specification V1.02, sections 2.5.1.1 and 2.5.1.1's
    implementation note: fixed 1.750 ms for baud rates greater than 19200).
    """
    if baudrate > 19200:
        return 0.00175
    bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
    return 3.5 * bits / baudrate


def _rtu_tcp_client(host: str, *, port: int, timeout: float, retries: int) -> Any:
    return AsyncModbusTcpClient(
        host, port=port, timeout=timeout, retries=retries, framer=FramerType.RTU
    )


def line_spec(device: ModbusDevice, factories: dict[str, ClientFactory]) -> LineSpec:
    """The line ``device`` is on; clients come from ``factories[protocol]`` if given."""
    if isinstance(device, ModbusTcpDevice):
        tcp: ClientFactory = factories.get(device.protocol, AsyncModbusTcpClient)
        host, port = device.host, device.port
        return LineSpec(
            ("tcp", host, str(port)),
            f"{host}:{port}",
            (),
            lambda timeout: tcp(host, port=port, timeout=timeout, retries=0),
        )
    if isinstance(device, ModbusRtuTcpDevice):
        rtu_tcp: ClientFactory = factories.get(device.protocol, _rtu_tcp_client)
        host, port = device.host, device.port
        return LineSpec(
            ("rtu_tcp", host, str(port)),
            f"{host}:{port}",
            (),
            lambda timeout: rtu_tcp(host, port=port, timeout=timeout, retries=0),
        )
    if isinstance(device, ModbusRtuDevice):
        serial: ClientFactory = factories.get(device.protocol, AsyncModbusSerialClient)
        settings = (device.baudrate, device.parity, device.stopbits, device.bytesize)
        dev = device

        def make(timeout: float) -> Any:
            return serial(
                dev.port,
                baudrate=dev.baudrate,
                parity=dev.parity,
                stopbits=dev.stopbits,
                bytesize=dev.bytesize,
                timeout=timeout,
                retries=0,
            )

        silence = rtu_silence(dev.baudrate, dev.bytesize, dev.parity, dev.stopbits)
        return LineSpec(("serial", device.port), device.port, settings, make, silence)
    raise TypeError(f"device '{device.id}': no Modbus transport for '{device.protocol}'")


class ModbusLine:
    """One line: one client connection and one lock shared by every unit on it."""

    def __init__(
        self,
        spec: LineSpec,
        *,
        timeout: float,
        backoff_min: float,
        frame_gap: float = 0.0,
    ) -> None:
        self.spec = spec
        self.lock = asyncio.Lock()
        self.timeout = timeout
        self.frame_gap = frame_gap
        self._backoff_min = backoff_min
        self._backoff = 0.0
        self._retry_at = 0.0
        self._down_reason = ""
        self._silent = 0
        self._last_frame_end = 0.0
        self._client: Any = None

    @property
    def name(self) -> str:
        return self.spec.name

    def widen(self, timeout: float, backoff_min: float, frame_gap: float) -> None:
        """Make room for another unit on this line."""
        self.timeout = max(self.timeout, timeout)
        self.frame_gap = max(self.frame_gap, frame_gap)
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
        client = self.spec.make_client(self.timeout * 2 + 1)
        self._client = client
        timer = asyncio.timeout(self.timeout + _CONNECT_SETTLE)
        reason = "refused or unreachable"
        try:
            async with timer:
                ok = bool(await client.connect())
        except Exception as exc:
            reraise_if_cancelled(exc)
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

    async def _gap(self) -> None:
        gap = self.spec.silence + self.frame_gap
        if gap > 0:
            wait = self._last_frame_end + gap - asyncio.get_running_loop().time()
            if wait > 0:
                await asyncio.sleep(wait)

    async def read(
        self,
        client: Any,
        unit: int,
        request: ReadRequest,
        attempt_s: float,
        retries: int,
        busy_retries: int = 0,
    ) -> list[int] | list[bool]:
        """Execute one read request for ``unit``: the one place pymodbus failures are caught.

        Every failure (exception, error response, timeout, short answer) becomes a PollError.
        Unanswered attempts count against ``retries``, busy answers against ``busy_retries``.
        """
        what = f"reading {request.describe()} of unit {unit} at {self.name}"
        method = {
            RegisterType.HOLDING: client.read_holding_registers,
            RegisterType.INPUT: client.read_input_registers,
            RegisterType.COIL: client.read_coils,
            RegisterType.DISCRETE: client.read_discrete_inputs,
        }[request.register_type]
        unanswered = busy = 0
        while unanswered <= retries:
            if not client.connected:
                raise PollError(f"connection to {self.name} lost", reconnect=True)
            await self._gap()
            timer = asyncio.timeout(attempt_s)
            try:
                async with timer:
                    response = await method(request.address, count=request.count, device_id=unit)
            except Exception as exc:
                reraise_if_cancelled(exc)
                if timer.expired():
                    unanswered += 1
                    continue
                reconnect = isinstance(exc, ConnectionException | OSError) or not client.connected
                raise PollError(
                    f"{what}: {type(exc).__name__}: {exc}", reconnect=reconnect
                ) from exc
            finally:
                self._last_frame_end = asyncio.get_running_loop().time()
            self._silent = 0
            if response.isError():
                code = int(getattr(response, "exception_code", 0))
                if code in BUSY_CODES and busy < busy_retries:
                    busy += 1
                    await asyncio.sleep(min(BUSY_RETRY_DELAY, attempt_s))
                    continue
                meaning = EXCEPTION_CODES.get(code, "unknown exception code")
                tried = f" ({busy + 1} tries)" if busy else ""
                raise PollError(f"{what}: exception response {code} ({meaning}){tried}")
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
