"""Run a VrrpService in the foreground until SIGTERM or SIGINT.

State changes go to stdout as JSON lines (one per change), so that a supervisor, the demo or a
test can follow them; the status file, when asked for, is rewritten atomically every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from hanet.linux.accept_filter import FilterError
from hanet.runtime.config import InstanceConfig
from hanet.runtime.instance import Instance
from hanet.runtime.service import VrrpService
from hanet.vrrp import StateChanged

STATUS_PERIOD = 1.0
log = logging.getLogger(__name__)


def _event_printer(out: TextIO):  # type: ignore[no-untyped-def]
    def emit(instance: Instance, change: StateChanged) -> None:
        record = {
            "event": "state",
            "instance": instance.name,
            "vrid": instance.config.vrid,
            "old": change.old.name,
            "new": change.new.name,
            "reason": change.reason,
            "time": time.time(),
            "monotonic": time.monotonic(),
        }
        out.write(json.dumps(record) + "\n")
        out.flush()

    return emit


def write_status(service: VrrpService, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "instances": service.status()}, indent=1))
    tmp.replace(path)


async def _serve(service: VrrpService, status_file: Path | None) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    # Without a handler SIGHUP would kill the process with no priority-0 advert. Reloading
    # comes with hanet vrrpd; until then a HUP changes nothing.
    loop.add_signal_handler(signal.SIGHUP, log.warning, "SIGHUP ignored: no reload here yet")
    if status_file is not None:
        service.listeners.append(lambda _i, _c: write_status(service, status_file))
    try:
        await service.start()
        while not stopping.is_set():
            if status_file is not None:
                write_status(service, status_file)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), STATUS_PERIOD)
    finally:
        await service.stop()
        if status_file is not None:
            status_file.unlink(missing_ok=True)


def run(configs: list[InstanceConfig], status_file: Path | None = None) -> int:
    service = VrrpService(configs)
    service.listeners.append(_event_printer(sys.stdout))
    try:
        asyncio.run(_serve(service, status_file))
    except (LookupError, OSError, FilterError) as exc:
        print(f"hanet vrrp: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
