"""Message counters: noticing messages a device sent that never arrived.

Some devices number their messages (a ``seq`` or ``count`` field, found by the device's
``sequence_path``). When the gateway is offline longer than the broker keeps queued messages
(Mosquitto drops past ``max_queued_messages``), or a QoS 0 message is lost, the next counter
jumps. ``SequenceTracker`` turns a jump into a ``Gap``; the MQTT collector records it as a
``sequence_gap`` event.

Rules, per device, in arrival order:

* the first counter seen is the baseline (nothing before it is known);
* ``last + 1`` is the normal case; ``last`` again is a redelivery (at-least-once): ignored;
* ``n > last + 1``: ``n - last - 1`` messages were missed -> a ``Gap``;
* ``n < last``: the counter went back: a device reboot (counters restart at 0 or 1), a
  wrap-around (a 16- or 32-bit counter past its maximum) or an older message redelivered.
  None of these is reported as a gap; ``n`` becomes the new baseline. A loss *across* a
  reboot or a wrap cannot be told from the reboot itself and is therefore not reported.

The state lives in memory, in the collector: it survives reconnections and broker restarts
but not a gateway restart (the first message after one sets a new baseline).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages a device sent that never arrived: counters ``last`` .. ``now`` exclusive."""

    last: int
    now: int

    @property
    def missed(self) -> int:
        return self.now - self.last - 1


class SequenceTracker:
    """The last counter seen per device; ``observe`` says when one jumped."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def observe(self, device: str, counter: int) -> Gap | None:
        last = self._last.get(device)
        if last is not None and counter == last:
            return None  # a redelivery of the last message
        self._last[device] = counter
        if last is None or counter < last:
            return None  # first sight, reboot, wrap-around or an old redelivery
        if counter > last + 1:
            return Gap(last, counter)
        return None

    def last(self, device: str) -> int | None:
        return self._last.get(device)
