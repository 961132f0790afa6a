"""vrrpd's link watcher (one per tracked namespace) against a real kernel: what it reads
at start, the changes it reports, and what it does when the kernel drops its events."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Callable

import pytest
from pyroute2 import IPRoute

from hanet.lab.lab import Lab
from hanet.lab.topology import Host, Topology
from hanet.linux.rtnl_messages import LinkSeen, link_dump_request, parse_messages
from hanet.linux.rtnl_socket import open_link_socket
from hanet.vrrpd.tracking import InterfaceWatcher


def test_a_dump_reads_as_pyroute2_reads_it(make_lab: Callable[[Topology], Lab]) -> None:
    lab = make_lab(Topology((), {"a": Host()}))
    ns = lab.ns("a")
    lab.run("a", ["ip", "link", "add", "qg-dump", "type", "bridge"])
    sock = open_link_socket(ns)
    with sock:
        sock.setblocking(True)
        sock.settimeout(5)
        sock.send(link_dump_request(7))
        ours: dict[str, tuple[int, int]] = {}
        done = False
        while not done:
            for message in parse_messages(sock.recv(65536)):
                if isinstance(message, LinkSeen):
                    ours[message.name] = (message.index, message.flags)
                else:
                    done = True
    with IPRoute(netns=ns) as ipr:
        theirs = {
            link.get("IFLA_IFNAME"): (link["index"], link["flags"]) for link in ipr.link("dump")
        }
    assert ours == theirs and "qg-dump" in ours


def test_the_watcher_reports_carrier_changes_and_deletions(
    make_lab: Callable[[Topology], Lab],
) -> None:
    lab = make_lab(Topology((), {"a": Host()}))
    lab.run("a", ["ip", "link", "add", "qr-w", "type", "bridge"])
    lab.run("a", ["ip", "link", "set", "qr-w", "up"])

    async def scenario() -> list[tuple[str, bool]]:
        changes: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        watcher = InterfaceWatcher(lab.ns("a"), {"qr-w", "qg-later"},
                                   lambda name, up: changes.put_nowait((name, up)))  # fmt: skip
        await watcher.start()
        try:
            assert watcher.state == {"qr-w": True, "qg-later": False}
            assert changes.empty()  # the first dump reports nothing
            seen = []
            for argv in (["ip", "link", "set", "qr-w", "down"],
                         ["ip", "link", "add", "qg-later", "up", "type", "bridge"],
                         ["ip", "link", "del", "qg-later"]):  # fmt: skip
                await asyncio.to_thread(lab.run, "a", argv)
                seen.append(await asyncio.wait_for(changes.get(), 5))
            return seen
        finally:
            await watcher.stop()

    assert asyncio.run(scenario()) == [("qr-w", False), ("qg-later", True), ("qg-later", False)]


def test_events_the_kernel_dropped_are_made_up_by_reading_again(
    make_lab: Callable[[Topology], Lab], caplog: pytest.LogCaptureFixture
) -> None:
    """With the receive buffer overflowing (ENOBUFS), the watcher reads every link again
    and reports what changed meanwhile: a link gone without its event still goes down."""
    lab = make_lab(Topology((), {"a": Host()}))
    lab.run("a", ["ip", "link", "add", "qr-gone", "up", "type", "bridge"])

    async def scenario() -> dict[str, bool]:
        changes: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
        watcher = InterfaceWatcher(lab.ns("a"), None,
                                   lambda name, up: changes.put_nowait((name, up)))  # fmt: skip
        await watcher.start()
        try:
            assert watcher.state["qr-gone"] is True
            assert watcher.sock is not None
            watcher.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the least
            # The loop does not read while this runs: the events pile up and overflow.
            batch = "".join(f"link add qg-{i} type bridge\n" for i in range(60))
            lab_batch(lab, batch + "link del qr-gone\n")
            while watcher.state.get("qr-gone", True) or len(watcher.state) < 61:
                await asyncio.wait_for(changes.get(), 5)
            return dict(watcher.state)
        finally:
            await watcher.stop()

    state = asyncio.run(scenario())
    assert "overflowed: reading every link again" in caplog.text  # it did overflow
    assert state["qr-gone"] is False
    assert all(name in state for name in (f"qg-{i}" for i in range(60)))


def lab_batch(lab: Lab, commands: str) -> None:
    subprocess.run(["ip", "-netns", lab.ns("a"), "-batch", "-"], input=commands, text=True,
                   check=True, timeout=30)  # fmt: skip
