"""The MQTT collector: broker messages -> Readings, acknowledged only once they are spooled.

Delivery guarantee (at least once, end to end). The client keeps a persistent session
(fixed client id, ``clean_session=False``), subscribes at QoS 1 and acknowledges by hand
(paho's ``manual_ack``): a message's PUBACK is sent only after ``ctx.sink.submit`` returned,
i.e. after its readings are durable in the spool. A gateway that dies in between leaves the
message unacknowledged, and the broker sends it again when the session reconnects.
Redelivered messages map to the same Reading keys when the payload carries a source
timestamp, so the store keeps them once; without one the receive time is used, and a
redelivery may be stored twice (a duplicate is better than a loss).

Subscriptions are made in ``on_connect`` on every connection, even when the broker says the
session is present: a persistent session silently keeps *old* subscriptions, so a changed
site file would otherwise never be heard (telegraf#16038, #16293).

Threads: paho's network loop runs in its own thread (``loop_start``); its callbacks only hand
messages to the asyncio loop (``call_soon_threadsafe``). Decoding, submitting, acknowledging
and device status all happen on the asyncio loop, in arrival order.

Payloads are read by the device's payload family (``format:``, see ``collectors.payloads``);
a family may say where a device announces itself online/offline (ESPHome's ``status``,
Zigbee2MQTT's ``availability``), which then moves the device's state at once. A device with
a ``sequence_path`` has its message counter followed (``collectors.sequence``): a jump is
recorded as a ``sequence_gap`` event, so messages the broker dropped while the gateway was
away are noticed, not silently missing.

Retained messages replayed by the broker on (re)subscription (RETAIN flag set) are old news:
they do not make a device count as online, and their readings are kept only when the payload
has a source timestamp (otherwise they would be stamped with today's receive time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from collectors.base import CollectorContext, DeviceStatus, register
from collectors.payloads import PayloadError, PayloadFormat, Target, format_for
from collectors.payloads.base import parse_path
from collectors.sequence import Gap, SequenceTracker
from gateway.reading import Event, Reading
from gateway.settings import redact_url
from gateway.site import DevicePlacement, MqttDevice, SensorRef

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
KEEPALIVE_S = 30
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 60
MAX_BATCH = 500  # messages per spool write; the broker's in-flight window bounds it anyway
SUBMIT_RETRY_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is, from ``mqtt://[user:pass@]host[:port]`` (``mqtts://``: TLS)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def _safe(url: str) -> str:
    try:
        return redact_url(url)
    except ValueError:  # e.g. an out-of-range port: show nothing rather than the password
        return "***"


def parse_broker_url(url: str) -> BrokerAddress:
    """Split a broker URL; ValueError (with the password redacted) if it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"broker URL '{_safe(url)}' is malformed (bad port?)") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(
            f"broker URL '{_safe(url)}' must be mqtt://[user:pass@]host[:port] or mqtts://"
        )
    return BrokerAddress(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


@dataclass(frozen=True, slots=True)
class _Subscriber:
    """One sensor listening on a topic."""

    ref: SensorRef
    fmt: PayloadFormat
    target: Target


@dataclass
class _Device:
    device: MqttDevice
    placement: DevicePlacement
    status: DeviceStatus
    window_ns: int  # silent longer than this: offline
    state: bool | None = None  # None: not heard from yet and not yet overdue


@dataclass(frozen=True, slots=True)
class _Inbound:
    """A message as received, tagged with the connection it came on."""

    generation: int
    topic: str | None
    payload: bytes
    mid: int
    qos: int
    retain: bool


@register("mqtt")
class MqttCollector:
    """Subscribes to the site's MQTT device topics and turns messages into Readings.

    ``client_factories["mqtt"]``, when given, is called like ``paho.mqtt.client.Client``
    (``factory(CallbackAPIVersion.VERSION2, client_id=..., clean_session=False,
    protocol=MQTTv311, manual_ack=True)``) and must return a paho-compatible client.

    ``ack_on_receipt`` is for TESTS ONLY: it acknowledges each message before the spool write
    (paho's default behaviour), so a crash in between loses the message. The delivery tests
    use it as a negative control, to prove they can see a loss. Never set it in production.
    """

    protocol: ClassVar[str] = "mqtt"

    def __init__(
        self,
        placements: list[DevicePlacement],
        ctx: CollectorContext,
        *,
        ack_on_receipt: bool = False,
        check_interval: float | None = None,
    ) -> None:
        if not ctx.settings.broker_url:
            raise ValueError("MQTT devices need a broker: set ARCHWATCH_BROKER_URL")
        self._ctx = ctx
        self._url = ctx.settings.broker_url
        self._safe_url = _safe(self._url)
        self._broker = parse_broker_url(self._url)
        self._client_id = ctx.settings.mqtt_client_id
        self.ack_on_receipt = ack_on_receipt
        self._devices: dict[str, _Device] = {}
        self._by_topic: dict[str, list[_Subscriber]] = {}
        # Availability topic (ESPHome status, Zigbee2MQTT availability) -> device and format.
        self._availability: dict[str, tuple[str, PayloadFormat]] = {}
        # Message counters per device; kept across run() calls (reconnections, restarts of
        # the collector task) so a broker that dropped queued messages shows as a gap.
        self.sequences = SequenceTracker()
        self._zone = ZoneInfo(ctx.site.model.site.timezone)
        for placement in placements:
            self._add_device(placement)
        windows = [d.window_ns / 1e9 for d in self._devices.values()]
        # Often enough to notice an overdue device within a quarter of its window.
        self._check_every = check_interval or max(0.05, min([1.0, *(w / 4 for w in windows)]))
        # Counters read by the API and tests; written only on the asyncio loop.
        self.rejected_payloads = 0
        self.rejects_by_reason: Counter[str] = Counter()
        self._topic_problems: dict[str, tuple[str, ...]] = {}
        # Connection state, written by paho's network thread.
        self._generation = 0
        self._connections = 0
        self._subscribed = False
        self._sub_mid: int | None = None
        self._link = "starting"  # starting | up | down: log each change once
        self._refusal: str | None = None
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Inbound] | None = None
        self._client: mqtt.Client | None = None
        self._started_ns = 0

    def _add_device(self, placement: DevicePlacement) -> None:
        dev = placement.device
        if not isinstance(dev, MqttDevice):
            raise ValueError(f"device '{dev.id}' is not an MQTT device")
        for path in (dev.timestamp_path, dev.sequence_path):
            if path:
                _check_path(dev.id, path)
        for ref in self._ctx.site.device_sensors(dev.id):
            if ref.spec.json_path:
                _check_path(ref.sensor, ref.spec.json_path)
            fmt = format_for(ref.spec.json_path, dev.format)
            target = Target(
                ref.kind,
                ref.spec.json_path,
                dev.timestamp_path,
                field=ref.spec.field,
                match=tuple(sorted(ref.spec.match.items())),
                zone=self._zone,
            )
            sub = _Subscriber(ref=ref, fmt=fmt, target=target)
            own = ref.spec.topic is not None
            for topic in fmt.topics(dev.sensor_topic(ref.spec), own, ref.kind):
                self._by_topic.setdefault(topic, []).append(sub)
        family = format_for(None, dev.format) if dev.format else None
        status_topic = family.availability_topic(dev.topic) if family and dev.topic else None
        if family is not None and status_topic is not None:
            self._availability[status_topic] = (dev.id, family)
        self._devices[dev.id] = _Device(
            device=dev,
            placement=placement,
            status=DeviceStatus(device=dev.id, protocol=self.protocol),
            window_ns=int(dev.expected_interval * dev.offline_after * 1e9),
        )

    # -- public state ------------------------------------------------------------------

    @property
    def topics(self) -> list[str]:
        return sorted({*self._by_topic, *self._availability})

    @property
    def connected(self) -> bool:
        """Connected, and the broker has answered this connection's subscriptions."""
        return self._subscribed

    @property
    def connections(self) -> int:
        """Successful connections since start (more than one: it reconnected)."""
        return self._connections

    def statuses(self) -> list[DeviceStatus]:
        return [d.status for d in self._devices.values()]

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Collect until cancelled, then disconnect cleanly (the session stays on the broker)."""
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._started_ns = self._ctx.clock.now_ns()
        self._stopping = False
        client = self._make_client()
        self._client = client
        # connect_async + loop_start: the network thread connects and reconnects by itself,
        # including when the broker is down at start.
        client.connect_async(self._broker.host, self._broker.port, keepalive=KEEPALIVE_S)
        client.loop_start()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._consume(), name="mqtt-consume")
                tasks.create_task(self._watch_devices(), name="mqtt-watch")
        finally:
            self._stopping = True
            await asyncio.to_thread(self._shutdown, client)

    def _make_client(self) -> mqtt.Client:
        factory: Callable[..., Any] = self._ctx.client_factories.get("mqtt", mqtt.Client)
        client = cast(
            mqtt.Client,
            factory(
                CallbackAPIVersion.VERSION2,
                client_id=self._client_id,
                clean_session=False,
                protocol=MQTTProtocolVersion.MQTTv311,
                manual_ack=True,
            ),
        )
        if self._broker.username is not None:
            client.username_pw_set(self._broker.username, self._broker.password)
        if self._broker.tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _shutdown(self, client: mqtt.Client) -> None:
        client.disconnect()
        client.loop_stop()
        self._subscribed = False
        log.info("MQTT collector disconnected from %s", self._safe_url)

    # -- paho's network thread ---------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            if self._refusal != str(reason_code):
                self._refusal = str(reason_code)
                log.error("MQTT broker %s refused the connection: %s", self._safe_url, reason_code)
            self._link = "down"
            return
        self._refusal = None
        # A new generation before any message of this connection reaches on_message.
        self._generation += 1
        self._connections += 1
        was = self._link
        self._link = "up"
        if was == "down":
            log.info(
                "MQTT connection to %s restored (session present: %s)",
                self._safe_url,
                flags.session_present,
            )
        else:
            log.info(
                "MQTT connected to %s as '%s' (session present: %s)",
                self._safe_url,
                self._client_id,
                flags.session_present,
            )
        if not self._by_topic:
            self._subscribed = True
            return
        # Every time, session present or not (telegraf#16038).
        result, mid = client.subscribe([(topic, 1) for topic in self.topics])
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._sub_mid = mid
        else:
            log.error("MQTT subscribe to %d topics failed to send: %s", len(self.topics), result)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        if mid != self._sub_mid:
            return
        refused = [t for t, rc in zip(self.topics, reason_codes, strict=False) if rc.is_failure]
        if refused:
            log.error("MQTT broker %s refused subscriptions to %s", self._safe_url, refused)
        self._subscribed = True

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._subscribed = False
        # Messages of the lost connection must not be acknowledged on the next one.
        self._generation += 1
        if self._stopping:
            return
        if self._link == "up":
            log.warning(
                "MQTT connection to %s lost (%s); reconnecting every %d-%d s",
                self._safe_url,
                reason_code,
                RECONNECT_MIN_S,
                RECONNECT_MAX_S,
            )
        self._link = "down"

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if self._link == "starting":
            log.warning(
                "MQTT broker %s unreachable; retrying every %d-%d s",
                self._safe_url,
                RECONNECT_MIN_S,
                RECONNECT_MAX_S,
            )
        else:
            log.debug("MQTT broker %s still unreachable", self._safe_url)
        self._link = "down"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic: str | None = msg.topic
        except UnicodeDecodeError:
            topic = None
        item = _Inbound(self._generation, topic, msg.payload, msg.mid, msg.qos, bool(msg.retain))
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            return
        # The loop may be closing while the network thread still delivers: the message then
        # stays unacknowledged and the broker sends it again.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(queue.put_nowait, item)

    # -- the asyncio loop --------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._process(batch)

    async def _process(self, batch: list[_Inbound]) -> None:
        if self.ack_on_receipt:  # test-only negative control, see the class docstring
            for item in batch:
                self._ack(item)
        now = self._ctx.clock.now_ns()
        readings: list[Reading] = []
        events: list[Event] = []
        for item in batch:
            readings.extend(self._decode(item, now, events))
        if readings:
            await self._submit(readings)
        if not self.ack_on_receipt:
            for item in batch:
                self._ack(item)
        for event in events:
            await self._emit(event)

    def _decode(self, item: _Inbound, now: int, events: list[Event]) -> list[Reading]:
        if item.topic is not None and item.topic in self._availability:
            self._on_availability(item, now, events)
            return []
        subs = self._by_topic.get(item.topic) if item.topic is not None else None
        if not subs:
            # An old subscription of the persistent session, or a wildcard elsewhere.
            log.debug("MQTT message on unknown topic %r ignored", item.topic)
            return []
        assert item.topic is not None
        parsed: dict[str, object | PayloadError] = {}
        readings: list[Reading] = []
        errors: dict[str, PayloadError] = {}  # by device
        for sub in subs:
            if sub.fmt.name not in parsed:
                try:
                    parsed[sub.fmt.name] = sub.fmt.parse(item.payload)
                except PayloadError as exc:
                    parsed[sub.fmt.name] = exc
            try:
                doc = parsed[sub.fmt.name]
                if isinstance(doc, PayloadError):
                    raise doc
                values = sub.fmt.extract_all(doc, sub.target)
            except PayloadError as exc:
                errors.setdefault(sub.ref.device, exc)
                continue
            for value in values:  # none: the message carries nothing for this sensor
                if item.retain and value.ts_ns is None:
                    continue  # a retained replay without a source time: stale, see module doc
                ts = value.ts_ns if value.ts_ns is not None else now
                readings.append(sub.ref.reading(value.value, ts, raw=value.raw))
        self._note_topic(item.topic, errors)
        for device_id in dict.fromkeys(sub.ref.device for sub in subs):
            dev = self._devices[device_id]
            err = errors.get(device_id)
            if err is not None:
                dev.status.errors += 1
                dev.status.misses += 1
                dev.status.last_error = str(err)
            else:
                dev.status.misses = 0
            if not item.retain:
                dev.status.polls += 1
                dev.status.last_seen_ns = now
                event = self._set_state(dev, True, now)
                if event is not None:
                    events.append(event)
                gap = self._sequence(dev, subs, parsed)
                if gap is not None:
                    events.append(self._gap_event(dev, gap, now))
        return readings

    def _sequence(
        self, dev: _Device, subs: list[_Subscriber], parsed: dict[str, object | PayloadError]
    ) -> Gap | None:
        """Feed the device's message counter, if this message has one, to the tracker."""
        path = dev.device.sequence_path
        if not path:
            return None
        for sub in subs:
            doc = parsed.get(sub.fmt.name)
            if sub.ref.device != dev.device.id or not sub.fmt.supports_sequence:
                continue
            if isinstance(doc, PayloadError):
                return None
            counter = sub.fmt.sequence(doc, path)
            if counter is None:
                log.debug("MQTT device %s: no counter at '%s'", dev.device.id, path)
                return None
            return self.sequences.observe(dev.device.id, counter)
        return None

    def _gap_event(self, dev: _Device, gap: Gap, now: int) -> Event:
        d = dev.device
        label = f"{d.id} ({d.name})" if d.name else d.id
        missed = f"{gap.missed} message{'s' if gap.missed != 1 else ''} missed"
        text = (
            f"{missed}: the counter at "
            f"'{d.sequence_path}' jumped from {gap.last} to {gap.now} (dropped by the broker "
            f"while the gateway was away, or lost on the way)"
        )
        log.warning("MQTT device %s: %s", d.id, text)
        return Event(
            ts_ns=now,
            kind="sequence_gap",
            title=f"Device {label}: {missed}",
            text=text,
            severity="warning",
            tags=self._tags(dev),
        )

    def _tags(self, dev: _Device) -> dict[str, str]:
        return {
            "site": self._ctx.site.id,
            "building": dev.placement.building.id,
            "room": dev.placement.room_id,
            "device": dev.device.id,
        }

    def _on_availability(self, item: _Inbound, now: int, events: list[Event]) -> None:
        """A device's own ``online``/``offline`` (an ESPHome node's birth and last will,
        Zigbee2MQTT's availability check)."""
        assert item.topic is not None
        device_id, family = self._availability[item.topic]
        dev = self._devices[device_id]
        state = family.availability(item.payload)
        if state is None:
            log.debug("MQTT %s: unknown availability %r ignored", item.topic, item.payload[:20])
            return
        if state and item.retain:
            return  # a replayed "online" is old news: only a live message shows the node is up
        if state:
            dev.status.last_seen_ns = now
        why = None if state else f"{family.name} reports the device offline ({item.topic})"
        event = self._set_state(dev, state, now, why)
        if event is not None:
            events.append(event)

    def _note_topic(self, topic: str, errors: dict[str, PayloadError]) -> None:
        """Count rejects; log once per change of a topic's set of reasons."""
        reasons = tuple(sorted({e.reason for e in errors.values()}))
        if reasons:
            self.rejected_payloads += 1
            self.rejects_by_reason.update(reasons)
        before = self._topic_problems.get(topic, ())
        if reasons == before:
            if reasons:
                log.debug("MQTT %s: payload rejected again (%s)", topic, ", ".join(reasons))
            return
        if reasons:
            self._topic_problems[topic] = reasons
            first = next(iter(errors.values()))
            log.warning(
                "MQTT %s: payload rejected (%s); acknowledged and counted, "
                "logged again when this changes",
                topic,
                first,
            )
        else:
            del self._topic_problems[topic]
            log.info("MQTT %s: payloads decode again", topic)

    def _ack(self, item: _Inbound) -> None:
        if item.qos == 0 or self._client is None:
            return
        if item.generation != self._generation:
            # Packet ids belong to a connection: this one may now name another message.
            # The persistent session redelivers it on the new connection instead.
            log.debug("MQTT message %d from a previous connection not acknowledged", item.mid)
            return
        rc = self._client.ack(item.mid, item.qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.debug("MQTT ack of message %d not sent: %s", item.mid, rc)

    async def _submit(self, readings: Sequence[Reading]) -> None:
        """Hand readings to the spool, retrying until it takes them: not acknowledging means
        the broker keeps the messages, so waiting loses nothing."""
        delay = 1.0
        failing = False
        while True:
            try:
                await self._ctx.sink.submit(readings)
            except Exception as exc:
                if not failing:
                    log.error(
                        "MQTT collector cannot spool %d readings (%s); retrying, "
                        "messages stay unacknowledged",
                        len(readings),
                        exc,
                    )
                    failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, SUBMIT_RETRY_MAX_S)
                continue
            if failing:
                log.info("MQTT collector spools readings again")
            return

    async def _watch_devices(self) -> None:
        while True:
            await asyncio.sleep(self._check_every)
            for event in self.check_devices():
                await self._emit(event)

    def check_devices(self) -> list[Event]:
        """Mark devices silent past ``expected_interval × offline_after`` offline."""
        now = self._ctx.clock.now_ns()
        events = []
        for dev in self._devices.values():
            last = dev.status.last_seen_ns or self._started_ns
            if now - last > dev.window_ns:
                event = self._set_state(dev, False, now)
                if event is not None:
                    events.append(event)
        return events

    def _set_state(
        self, dev: _Device, online: bool, now: int, why: str | None = None
    ) -> Event | None:
        """Record a state change; the Event to emit, if it is one worth an event."""
        before = dev.state
        if before is online:
            return None
        dev.state = online
        dev.status.online = online
        d = dev.device
        tags = {
            "site": self._ctx.site.id,
            "building": dev.placement.building.id,
            "room": dev.placement.room_id,
            "device": d.id,
        }
        label = f"{d.id} ({d.name})" if d.name else d.id
        if online:
            if before is None:
                log.info("MQTT device %s online", d.id)
                return None  # first message: nothing was wrong
            log.info("MQTT device %s back online", d.id)
            return Event(
                ts_ns=now,
                kind="device_online",
                title=f"Device {label} back online",
                severity="info",
                tags=tags,
            )
        silent_s = dev.window_ns / 1e9
        text = why or (
            f"no message for more than {silent_s:g} s "
            f"(expected every {d.expected_interval:g} s, offline after {d.offline_after})"
        )
        log.warning("MQTT device %s offline: %s", d.id, text)
        return Event(
            ts_ns=now,
            kind="device_offline",
            title=f"Device {label} offline",
            text=text,
            severity="warning",
            tags=tags,
        )

    async def _emit(self, event: Event) -> None:
        try:
            await self._ctx.events.emit(event)
        except Exception as exc:
            log.error("MQTT collector could not record event %s: %s", event.kind, exc)


def _check_path(owner: str, path: str) -> None:
    try:
        parse_path(path)
    except ValueError as exc:
        raise ValueError(f"'{owner}': {exc}") from None
