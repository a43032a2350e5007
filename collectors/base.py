"""The collector contract and its registry: one collector class per protocol.

A collector turns device traffic into Readings and hands them to a ReadingSink (the
pipeline). ``submit`` returns only when the readings are durable in the spool (or were
rejected), so a collector that acknowledges to its source afterwards loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from gateway.clock import Clock
from gateway.reading import Event, Reading
from gateway.settings import Settings
from gateway.site import DevicePlacement, Site


@dataclass
class SubmitResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0


class ReadingSink(Protocol):
    async def submit(self, readings: Sequence[Reading]) -> SubmitResult: ...


class EventSink(Protocol):
    async def emit(self, event: Event) -> None: ...


@dataclass
class DeviceStatus:
    """A device's health as its collector sees it."""

    device: str
    protocol: str
    online: bool = False
    polls: int = 0  # successful polls (Modbus) or messages (MQTT)
    misses: int = 0  # consecutive failures
    errors: int = 0  # failures since start
    last_seen_ns: int | None = None
    last_error: str | None = None


@dataclass
class CollectorContext:
    """What every collector is handed: settings, clock, sinks and client factories.

    ``client_factories`` lets tests hand in their own protocol clients instead of patching
    import paths (Home Assistant's tests break when a module moves; we don't).
    """

    settings: Settings
    site: Site
    sink: ReadingSink
    events: EventSink
    clock: Clock
    client_factories: dict[str, Callable[..., Any]] = field(default_factory=dict)


class Collector(Protocol):
    protocol: ClassVar[str]

    async def run(self) -> None:
        """Collect until cancelled. Never raises for device or network faults."""
        ...

    def statuses(self) -> list[DeviceStatus]: ...


CollectorFactory = Callable[[list[DevicePlacement], CollectorContext], Collector]
COLLECTORS: dict[str, CollectorFactory] = {}


def register(protocol: str) -> Callable[[CollectorFactory], CollectorFactory]:
    """Class decorator: make a collector available to site files as ``protocol: <name>``."""

    def deco(cls: CollectorFactory) -> CollectorFactory:
        if protocol in COLLECTORS:
            raise RuntimeError(f"collector for '{protocol}' registered twice")
        COLLECTORS[protocol] = cls
        return cls

    return deco
