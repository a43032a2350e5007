"""A TCP fault proxy of the tests' own: sits between the gateway and a real server on loopback.

``FaultProxy(host, port).start()`` listens on ``127.0.0.1:<free port>`` and forwards every
connection to the upstream server. A test switches the link's behaviour at any time, from any
thread (``set_mode`` waits until the proxy applied the change):

- ``PASS``: forward as is.
- ``LATENCY``: every chunk waits ``latency_s`` before it is forwarded (order kept).
- ``STALL``: accept and hold: nothing is forwarded (existing connections and new ones, which
  are accepted but not connected upstream) until the mode changes; then held data flows.
- ``RESET``: every connection, open or new, is closed with a TCP RST (``SO_LINGER`` 0).
- ``HALF_OPEN``: one direction (``Direction``) is black-holed: data read from that side is
  thrown away while both sockets stay open, as after a NAT or firewall lost the flow; only a
  keepalive or a timeout notices. A connection that was half-open stays so until it closes
  (its stream is corrupt), while connections made after the fault work again.
- ``DROP_NEW``: new connections are refused (nothing listens on the port); open ones carry on.

Every accepted connection attempt is recorded (``attempts``), so a test can see reconnects and
their spacing. Bounded: it listens and connects on loopback only, and stops by itself after
``max_lifetime_s`` if a test forgets to stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = 65_536


class Mode(enum.Enum):
    PASS = "pass"
    LATENCY = "latency"
    STALL = "stall"
    RESET = "reset"
    HALF_OPEN = "half_open"
    DROP_NEW = "drop_new"


class Direction(enum.Enum):
    """Which way data stops flowing in ``HALF_OPEN``."""

    TO_SERVER = "to_server"  # client -> upstream
    TO_CLIENT = "to_client"  # upstream -> client


@dataclass(eq=False)  # identity-hashed: links live in a set
class _Link:
    """One proxied connection: the client's socket and (once connected) the upstream one."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    black_holed: set[Direction] = field(default_factory=set)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A controllable TCP proxy from ``127.0.0.1:port`` to ``upstream_host:upstream_port``."""

    def __init__(
        self, upstream_host: str, upstream_port: int, *, max_lifetime_s: float = 600.0
    ) -> None:
        if not _is_loopback(upstream_host):
            raise ValueError(f"the fault proxy only forwards to loopback, not {upstream_host!r}")
        self.upstream = (upstream_host, upstream_port)
        self.max_lifetime_s = max_lifetime_s
        self.port = 0
        self._mode = Mode.PASS
        self._latency_s = 0.0
        self._direction = Direction.TO_CLIENT
        self._lock = threading.Lock()
        self._attempts: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._changed: asyncio.Condition | None = None
        self._stopped = threading.Event()

    # -- control (any thread) ------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.call_later(self.max_lifetime_s, lambda: loop.create_task(self._close()))
            try:
                loop.run_forever()
            finally:
                self._stopped.set()
                leftover = asyncio.all_tasks(loop)
                for task in leftover:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=main, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close every connection and the listener; idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._call(self._close())
        thread.join(10)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(
        self,
        mode: Mode,
        *,
        latency_s: float = 0.05,
        direction: Direction = Direction.TO_CLIENT,
    ) -> None:
        """Switch the link to ``mode``; returns once the proxy applied it."""
        self._call(self._apply(mode, latency_s, direction))

    async def aset_mode(
        self,
        mode: Mode,
        *,
        latency_s: float = 0.05,
        direction: Direction = Direction.TO_CLIENT,
    ) -> None:
        """``set_mode`` for a caller on an event loop (it does not block that loop)."""
        await asyncio.to_thread(self.set_mode, mode, latency_s=latency_s, direction=direction)

    def kill_connections(self) -> int:
        """RST every open connection now (the mode stays); how many there were."""
        return self._call(self._kill_all())

    @property
    def mode(self) -> Mode:
        with self._lock:
            return self._mode

    @property
    def attempts(self) -> list[float]:
        """``time.monotonic()`` of every connection the proxy accepted, oldest first."""
        with self._lock:
            return list(self._attempts)

    def attempts_since(self, mark: float) -> list[float]:
        return [t for t in self.attempts if t >= mark]

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._links)

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None or self._stopped.is_set():
            coro.close()
            raise RuntimeError("the fault proxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=30)

    # -- the proxy's own loop ------------------------------------------------------------

    async def _open(self) -> None:
        self._changed = asyncio.Condition()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def _close(self) -> None:
        await self._unlisten()
        await self._kill_all()
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.stop)

    async def _kill_all(self) -> int:
        with self._lock:
            links = list(self._links)
        for link in links:
            self._reset(link)
        return len(links)

    def _reset(self, link: _Link) -> None:
        _abort_with_rst(link.client)
        if link.upstream is not None:
            _abort_with_rst(link.upstream)
        for task in link.tasks:
            task.cancel()
        with self._lock:
            self._links.discard(link)

    async def _apply(self, mode: Mode, latency_s: float, direction: Direction) -> None:
        assert self._changed is not None
        with self._lock:
            before = self._mode
            self._mode, self._latency_s, self._direction = mode, latency_s, direction
        if mode is Mode.DROP_NEW and self._server is not None:
            await self._unlisten()
        elif mode is not Mode.DROP_NEW and before is Mode.DROP_NEW:
            await self._listen()  # the same port again: clients reconnect where they were
        if mode is Mode.RESET:
            await self._kill_all()
        if mode is Mode.HALF_OPEN:
            with self._lock:
                for link in self._links:
                    link.black_holed.add(direction)
        async with self._changed:
            self._changed.notify_all()

    async def _wait_while_stalled(self) -> None:
        assert self._changed is not None
        async with self._changed:
            await self._changed.wait_for(lambda: self._mode is not Mode.STALL)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Python 3.11's start_server logs a traceback for a cancelled handler task; a cancel
        # here only means the proxy is closing, so it ends the handler quietly.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve(reader, writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(client=writer)
        with self._lock:
            self._attempts.append(time.monotonic())
            self._links.add(link)
            mode, direction = self._mode, self._direction
        if mode is Mode.RESET:
            self._reset(link)
            return
        if mode is Mode.HALF_OPEN:
            link.black_holed.add(direction)
        try:
            await self._wait_while_stalled()
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._reset(link)
            return
        link.upstream = up_writer
        if self._mode is Mode.RESET or link not in self._links:  # reset while connecting
            self._reset(link)
            return
        pumps = [
            asyncio.create_task(self._pump(link, reader, up_writer, Direction.TO_SERVER)),
            asyncio.create_task(self._pump(link, up_reader, writer, Direction.TO_CLIENT)),
        ]
        link.tasks.extend(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()
        with self._lock:
            self._links.discard(link)

    async def _pump(
        self,
        link: _Link,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        direction: Direction,
    ) -> None:
        try:
            while True:
                chunk = await src.read(CHUNK)
                if not chunk:
                    break
                await self._wait_while_stalled()
                with self._lock:
                    mode, latency = self._mode, self._latency_s
                if direction in link.black_holed:
                    continue  # read and thrown away: the sender sees no back-pressure
                if mode is Mode.LATENCY:
                    await asyncio.sleep(latency)
                dst.write(chunk)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side ended: end the other, as a TCP relay does (unless it is black-holed,
            # where the point is that nobody hears anything).
            if direction not in link.black_holed:
                with contextlib.suppress(Exception):
                    dst.close()
