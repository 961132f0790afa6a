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
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hanet.linux.rtnl_messages import (
    DumpDone,
    KernelError,
    LinkSeen,
    MalformedMessage,
    Message,
    link_dump_request,
    parse_messages,
)
from hanet.linux.rtnl_socket import open_link_socket

log = logging.getLogger(__name__)

IFF_UP = 0x1
IFF_RUNNING = 0x40
FILE_POLL = 1.0
DUMP_TIMEOUT = 10.0  # a namespace's links, read whole at start
RECEIVE_SIZE = 65536  # above the kernel's largest dump datagram (32 KB)


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
    in ``names``, or every one when ``names`` is None.

    A plain netlink socket read by the event loop (no task, no pyroute2 socket: one of
    these runs per router namespace). Events the kernel could not queue (ENOBUFS) are
    made up for by reading every link again; a malformed message is logged and skipped."""

    def __init__(self, netns: str | None, names: set[str] | None,
                 on_change: Callable[[str, bool], None]) -> None:  # fmt: skip
        self.netns, self.names, self.on_change = netns, names, on_change
        self.state: dict[str, bool] = {}
        self.sock: socket.socket | None = None
        self.loading = False  # the first dump is read whole: no change per interface
        self.loaded: asyncio.Future[None] | None = None
        self.dump_seq = 0
        self.dumped: set[str] | None = None  # names the dump under way has shown

    async def start(self) -> None:
        """Once started, ``state`` holds every watched interface; changes from then on
        are reported to ``on_change``."""
        self.loading = True
        self.sock = open_link_socket(self.netns)
        loop = asyncio.get_running_loop()
        self.loaded = loop.create_future()
        loop.add_reader(self.sock.fileno(), self._readable)
        try:
            self._dump()  # the socket is already bound: no change falls between
            await asyncio.wait_for(self.loaded, DUMP_TIMEOUT)
        except BaseException:
            self._close()
            raise
        finally:
            self.loaded = None

    async def stop(self) -> None:
        self._close()

    def _close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(ValueError, OSError):  # a loop already closed
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _dump(self) -> None:
        assert self.sock is not None
        self.dump_seq += 1
        self.dumped = set()
        self.sock.send(link_dump_request(self.dump_seq))

    def _readable(self) -> None:
        for _ in range(64):  # then let the loop run; it calls back while data is queued
            if self.sock is None:
                return
            try:
                data = self.sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped events: read all again
                    log.warning("link events of namespace %s overflowed: reading every "
                                "link again", self.netns or "(own)")  # fmt: skip
                    self._retry_dump()
                    continue
                self._failed(exc)
                return
            try:
                messages = parse_messages(data)
            except MalformedMessage as exc:
                log.warning("link events of namespace %s: %s; skipped", self.netns or "(own)", exc)
                continue
            for message in messages:
                self._handle(message)

    def _retry_dump(self) -> None:
        try:
            self._dump()
        except OSError as exc:
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        if self.loaded is not None and not self.loaded.done():
            self.loaded.set_exception(exc)
        else:
            log.warning("link events of namespace %s: %s", self.netns or "(own)", exc)

    def _handle(self, message: Message) -> None:
        if isinstance(message, LinkSeen):
            if self.dumped is not None and message.seq == self.dump_seq:
                self.dumped.add(message.name)
            self._update(message)
        elif isinstance(message, DumpDone) and message.seq == self.dump_seq:
            if message.interrupted:  # links changed during the dump: it may have missed one
                self._retry_dump()
            else:
                self._dump_done()
        elif isinstance(message, KernelError) and message.seq == self.dump_seq and message.errno:
            self._failed(OSError(message.errno, os.strerror(message.errno)))

    def _dump_done(self) -> None:
        seen, self.dumped = self.dumped or set(), None
        for name in (set(self.state) | (self.names or set())) - seen:
            self._set(name, False)  # not there (any more, or yet): down
        self.loading = False
        if self.loaded is not None and not self.loaded.done():
            self.loaded.set_result(None)

    def _update(self, link: LinkSeen) -> None:
        if self.names is not None and link.name not in self.names:
            return
        carrier = bool(link.flags & IFF_UP and link.flags & IFF_RUNNING)
        self._set(link.name, carrier and not link.deleted)

    def _set(self, name: str, up: bool) -> None:
        if self.state.get(name) != up:
            self.state[name] = up
            if not self.loading:
                self.on_change(name, up)


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
