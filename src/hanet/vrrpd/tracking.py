"""Effective priority and FAULT from tracked scripts, interfaces and files.

``evaluate`` is pure and follows keepalived.conf(5):
- weight 0 (the default for scripts and interfaces): a failure puts the instance in FAULT;
- weight w > 0: w is added while the object is good; w < 0: w is added while it is bad;
  ``reverse`` swaps good and bad for the weight;
- track_file: the file's integer times its weight is added (weight 0: non-zero is FAULT);
  an offset of -254 or less is FAULT;
- in a sync group every weight counts as 0;
- the result is kept within 1..254; the address owner (255) never moves;
- an interface is looked up in the instance's own namespace (``Tracking.netns``); one that
  does not exist there is down.
The watchers that feed it are below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2.netlink.rtnl import RTMGRP_LINK

from hanet.linux.addresses import open_netlink

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_RUNNING = 0x40
FILE_POLL = 1.0


@dataclass(frozen=True)
class Weighted:
    name: str
    weight: int = 0
    reverse: bool = False


@dataclass(frozen=True)
class Tracking:
    """What one instance tracks."""

    scripts: tuple[Weighted, ...] = ()
    interfaces: tuple[Weighted, ...] = ()
    files: tuple[Weighted, ...] = ()
    in_sync_group: bool = False
    netns: str | None = None  # where the interfaces are; None: the daemon's namespace


@dataclass
class Observations:
    scripts_ok: dict[str, bool] = field(default_factory=dict)
    interfaces_up: dict[str, bool] = field(default_factory=dict)  # the daemon's namespace
    interfaces_in: dict[str, dict[str, bool]] = field(default_factory=dict)  # by namespace
    file_values: dict[str, int] = field(default_factory=dict)


def evaluate(base: int, tracking: Tracking, seen: Observations) -> tuple[int, str | None]:
    """(effective priority, the reason for FAULT or None)."""
    offset = 0
    links = (
        seen.interfaces_up if tracking.netns is None else seen.interfaces_in.get(tracking.netns, {})
    )
    for kind, items, states, unknown in (
        ("vrrp_script", tracking.scripts, seen.scripts_ok, True),
        ("interface", tracking.interfaces, links, False),
    ):
        for item in items:
            good = states.get(item.name, unknown)
            weight = 0 if tracking.in_sync_group else item.weight
            if weight == 0:
                if not good:
                    return base, f"{kind} {item.name} is down"
                continue
            counts = good if weight > 0 else not good
            if item.reverse:
                counts = not counts
            offset += weight if counts else 0
    for item in tracking.files:
        value = seen.file_values.get(item.name, 0)
        weight = 0 if tracking.in_sync_group else item.weight
        if weight == 0:
            if value:
                return base, f"track_file {item.name} reads {value}"
            continue
        change = value * weight * (-1 if item.reverse else 1)
        if change <= -254:
            return base, f"track_file {item.name} reads {value}"
        offset += change
    if base == 255:
        return base, None
    return max(1, min(254, base + offset)), None


class InterfaceWatcher:
    """Follows the carrier of the interfaces in one namespace, from netlink events: those
    in ``names``, or every one when ``names`` is None."""

    def __init__(self, netns: str | None, names: set[str] | None,
                 on_change: Callable[[str, bool], None]) -> None:  # fmt: skip
        self.netns, self.names, self.on_change = netns, names, on_change
        self.state: dict[str, bool] = {}
        self.task: asyncio.Task[None] | None = None
        self.loading = False  # the first dump is read whole: no change per interface

    async def start(self) -> None:
        """Once started, ``state`` holds every watched interface; changes from then on
        are reported to ``on_change``."""
        self.loading = True
        self.ipr = await open_netlink(self.netns)
        await self.ipr.bind(groups=RTMGRP_LINK)  # before the dump: no change falls between
        async for link in await self.ipr.link("dump"):
            self._update(link)
        for name in (self.names or set()) - set(self.state):
            self._set(name, False)  # not there (yet): down
        self.loading = False
        self.task = asyncio.get_running_loop().create_task(self._events())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.ipr.close()

    def _update(self, message: Any) -> None:
        name = message.get("IFLA_IFNAME")
        if name is None or (self.names is not None and name not in self.names):
            return
        flags = message.get("flags", 0) or 0
        deleted = message.get("event") == "RTM_DELLINK"
        self._set(name, not deleted and bool(flags & IFF_UP and flags & IFF_RUNNING))

    def _set(self, name: str, up: bool) -> None:
        if self.state.get(name) != up:
            self.state[name] = up
            if not self.loading:
                self.on_change(name, up)

    async def _events(self) -> None:
        while True:  # pyroute2's get() ends after each batch of broadcast messages
            seen = 0
            async for message in self.ipr.get():
                self._update(message)
                seen += 1
            if not seen:
                await asyncio.sleep(0.1)  # a closed or failing socket must not spin


class FileWatcher:
    """Reads each track_file's integer every second (keepalived uses inotify)."""

    def __init__(self, files: dict[str, Path], on_change: Callable[[str, int], None]) -> None:
        self.files, self.on_change = files, on_change
        self.values: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None

    def poll(self) -> None:
        for name, path in self.files.items():
            try:
                value = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                value = 0
            if self.values.get(name) != value:
                self.values[name] = value
                self.on_change(name, value)

    def start(self) -> None:
        self.poll()
        if self.files:  # no wake-ups at all for a daemon without track_file
            self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FILE_POLL)
            self.poll()
