"""Simulated devices for the demo and the end-to-end tests: a room climate with a day-night
cycle, noise and an HVAC failure; Modbus servers serving a device profile's registers; MQTT
devices publishing JSON at QoS 1.

The climate is deterministic for a given seed, so tests can compare stored values with
what the simulator served.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer

from collectors.modbus_decode import encode_point
from collectors.modbus_profile import DeviceProfile, RegisterType
from gateway.clock import Clock
from gateway.reading import SensorKind
from gateway.site import MqttDevice, SensorRef, Site

DAY_S = 86_400.0


@dataclass
class RoomClimate:
    """Temperature and RH of one space: mean, day-night swing, noise, optional HVAC failure.

    After ``hvac_fails_at_s`` (seconds from ``t0_s``) the room drifts towards the outdoor
    conditions (``fail_temperature``/``fail_humidity``) with time constant ``fail_tau_s``:
    what a Hainan repository does when its dehumidifier stops.
    """

    temperature: float
    humidity: float
    temp_swing: float = 0.4
    rh_swing: float = 1.5
    noise: float = 0.05
    day_s: float = DAY_S
    hvac_fails_at_s: float | None = None
    fail_temperature: float = 29.0
    fail_humidity: float = 82.0
    fail_tau_s: float = 60.0
    seed: int = 1
    t0_s: float = 0.0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def _drift(self, t: float) -> float:
        if self.hvac_fails_at_s is None or t < self.hvac_fails_at_s:
            return 0.0
        return 1.0 - math.exp(-(t - self.hvac_fails_at_s) / self.fail_tau_s)

    def at(self, now_s: float) -> tuple[float, float]:
        """(°C, %RH) at wall time ``now_s`` (epoch seconds)."""
        t = now_s - self.t0_s
        phase = math.sin(2 * math.pi * ((now_s % self.day_s) / self.day_s - 0.375))
        temp = self.temperature + self.temp_swing * phase
        rh = self.humidity - self.rh_swing * phase  # RH falls as a room warms
        k = self._drift(t)
        temp += (self.fail_temperature - temp) * k
        rh += (self.fail_humidity - rh) * k
        temp += self._rng.gauss(0, self.noise)
        rh += self._rng.gauss(0, self.noise * 4)
        return round(temp, 1), round(min(max(rh, 0.0), 100.0), 1)


_FC = {
    RegisterType.COIL: 1,
    RegisterType.DISCRETE: 2,
    RegisterType.HOLDING: 3,
    RegisterType.INPUT: 4,
}


class ModbusDeviceSimulator:
    """A pymodbus TCP server on loopback serving one device profile for one unit id."""

    def __init__(self, profile: DeviceProfile, unit_id: int = 1, port: int = 0) -> None:
        self.profile = profile
        self.unit_id = unit_id
        size = max(p.address + p.register_count for p in profile.points.values()) + 2
        self.device = ModbusDeviceContext(
            di=ModbusSequentialDataBlock(0, [0] * size),
            co=ModbusSequentialDataBlock(0, [0] * size),
            hr=ModbusSequentialDataBlock(0, [0] * size),
            ir=ModbusSequentialDataBlock(0, [0] * size),
        )
        self.server = ModbusTcpServer(
            ModbusServerContext(devices={unit_id: self.device}, single=False),
            address=("127.0.0.1", port),
        )
        self._task: asyncio.Task[None] | None = None
        self.port = port

    async def start(self) -> int:
        self._task = asyncio.create_task(self.server.serve_forever())
        for _ in range(200):
            transport = getattr(self.server, "transport", None)
            if transport is not None and transport.sockets:
                self.port = int(transport.sockets[0].getsockname()[1])
                return self.port
            await asyncio.sleep(0.01)
        raise RuntimeError("Modbus simulator did not start listening")

    def set(self, point_name: str, value: float) -> None:
        point = self.profile.points[point_name]
        words = encode_point(point, value)
        fc = _FC[point.register_type]
        if point.bit is not None:
            current = self.device.getValues(fc, point.address, 1)
            assert isinstance(current, list)
            word = int(current[0])
            mask = 1 << point.bit
            word = (word | mask) if words[0] else (word & ~mask)
            self.device.setValues(fc, point.address, [word])
        else:
            self.device.setValues(fc, point.address, words)

    def set_raw(self, register_type: RegisterType, address: int, words: list[int]) -> None:
        self.device.setValues(_FC[register_type], address, words)

    async def stop(self) -> None:
        await self.server.shutdown()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _set_path(payload: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = payload
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def mqtt_payload(device: MqttDevice, values: dict[str, float], ts_ms: int | None) -> dict[str, Any]:
    """A JSON payload for ``device`` carrying ``values`` by sensor id at their json_paths."""
    payload: dict[str, Any] = {}
    for spec in device.sensors:
        if spec.id in values and spec.json_path:
            _set_path(payload, spec.json_path, values[spec.id])
    if device.timestamp_path and ts_ms is not None:
        _set_path(payload, device.timestamp_path, ts_ms)
    return payload


class MqttPublisher:
    """A paho client publishing simulated device messages at QoS 1, counting broker acks."""

    def __init__(self, host: str, port: int, client_id: str = "archwatch-sim") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._lock = threading.Lock()
        self._pending: dict[int, int] = {}
        self._early: set[int] = set()
        self.acked_messages = 0
        self.acked_readings = 0
        self.client.on_publish = self._on_publish
        self.host, self.port = host, port

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            self.acked_messages += 1
            if mid in self._pending:
                self.acked_readings += self._pending.pop(mid)
            else:  # acknowledged before publish() recorded it
                self._early.add(mid)

    def start(self) -> None:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def publish(self, topic: str, payload: dict[str, Any] | str, readings: int) -> None:
        body = payload if isinstance(payload, str) else json.dumps(payload)
        # Never hold our lock while paho holds its own: its network thread calls
        # _on_publish with paho's lock taken (a lock-order deadlock otherwise).
        info = self.client.publish(topic, body, qos=1)
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                self.acked_readings += readings
            else:
                self._pending[info.mid] = readings

    @property
    def unacked(self) -> int:
        with self._lock:
            return len(self._pending)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def demo_climates(site: Site, t0_s: float) -> dict[str, RoomClimate]:
    """A climate per room (and ``outdoor`` per building): stable rooms, humid tropical
    outdoors, and the first room's HVAC failing 10 s into the run."""
    climates: dict[str, RoomClimate] = {}
    first = True
    for building, room in site.rooms():
        prof = site.standards.get(room.storage_class)
        t_mid = (prof.temperature.min + prof.temperature.max) / 2
        h_mid = (prof.humidity.min + prof.humidity.max) / 2
        climates[f"{building.id}/{room.id}"] = RoomClimate(
            temperature=t_mid,
            humidity=h_mid,
            hvac_fails_at_s=10.0 if first else None,
            fail_tau_s=40.0,
            day_s=600.0,
            seed=len(climates) + 1,
            t0_s=t0_s,
        )
        first = False
    for building in site.model.buildings:
        climates[f"{building.id}/outdoor"] = RoomClimate(
            temperature=29.0,
            humidity=80.0,
            temp_swing=3.0,
            rh_swing=8.0,
            noise=0.1,
            day_s=600.0,
            seed=99,
            t0_s=t0_s,
        )
    return climates


def sensor_value(ref: SensorRef, climate: RoomClimate, now_s: float) -> float:
    """The value a simulated sensor reports now."""
    temp, rh = climate.at(now_s)
    if ref.kind is SensorKind.TEMPERATURE:
        return temp
    if ref.kind is SensorKind.HUMIDITY:
        return rh
    if ref.kind is SensorKind.BATTERY:
        return 87.0
    return 0.0  # smoke, leak, door closed: the demo's alarms come from the climate


def now_s(clock: Clock) -> float:
    return clock.now_ns() / 1e9
