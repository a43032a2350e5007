"""Runs a gateway in a child process for the crash tests (``python -m tests.gateway_proc``).

The production entry point is ``archwatch run``; this runner adds the two knobs only a test
may turn: acknowledging MQTT messages on receipt (the negative control that must show loss)
and a slow spool commit (to widen the window a crash can fall into, equally for both runs);
for the alerting crash tests, a short group wait and a SIGKILL at a chosen point of handing a
notification to the outbox (``--kill-at``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path

from alerting.dispatch import DispatchConfig
from alerting.outbox import NewMessage
from gateway.app import Gateway
from gateway.logs import setup_logging
from gateway.reading import Reading
from gateway.settings import load_settings
from gateway.site import load_site


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("site", type=Path)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--ack-on-receipt", action="store_true")
    parser.add_argument("--spool-delay", type=float, default=0.0)
    parser.add_argument("--group-wait", type=float, default=None)
    # before-outbox: the batch is in the notification log, not yet in the outbox;
    # after-outbox: the outbox row is committed, the batch not yet marked handed over.
    parser.add_argument("--kill-at", choices=["before-outbox", "after-outbox"], default=None)
    args = parser.parse_args()
    setup_logging("WARNING")
    settings = load_settings(data_dir=args.data_dir)
    site = load_site(args.site)

    async def run() -> None:
        dispatch = None if args.group_wait is None else DispatchConfig(group_wait_s=args.group_wait)
        gateway = Gateway(settings, site, dispatch=dispatch)
        if args.kill_at is not None and gateway.alerting is not None:
            outbox = gateway.alerting.outbox
            insert = outbox.insert

            def insert_then_die(messages: Sequence[NewMessage]) -> int:
                if args.kill_at == "after-outbox":
                    insert(messages)
                os.kill(os.getpid(), signal.SIGKILL)
                raise AssertionError("unreachable")

            outbox.insert = insert_then_die  # type: ignore[method-assign]
        for collector in gateway.collectors:
            if hasattr(collector, "ack_on_receipt"):
                collector.ack_on_receipt = args.ack_on_receipt
        if args.spool_delay:
            # The pipeline commits through append_each: that is the call to slow down.
            append_each = gateway.spool.append_each

            async def slow_append_each(readings: Sequence[Reading]) -> list[bool]:
                await asyncio.sleep(args.spool_delay)
                return await append_each(readings)

            gateway.spool.append_each = slow_append_each  # type: ignore[method-assign]
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await gateway.run_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
