"""Entering namespaces from several threads at once, as vrrpd's netlink thread does beside
its event loop."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from hanet.lab.lab import Lab
from hanet.lab.topology import Host, Topology
from hanet.linux.netns import inside, namespace_cookie


def cookie_here() -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        return namespace_cookie(probe)


def test_threads_enter_namespaces_at_once_and_each_comes_back(
    make_lab: Callable[[Topology], Lab],
) -> None:
    lab = make_lab(Topology((), {"a": Host(), "b": Host()}))
    expected: dict[str, int | None] = {}
    for host in ("a", "b"):
        with inside(lab.ns(host)):
            expected[host] = cookie_here()
    home = cookie_here()
    assert None not in (home, *expected.values()) and len({home, *expected.values()}) == 3
    wrong: list[str] = []
    start = threading.Barrier(2)

    def enter_often(host: str) -> None:
        start.wait()
        for round_ in range(300):
            with inside(lab.ns(host)):
                if cookie_here() != expected[host]:
                    wrong.append(f"{host} round {round_}: a socket made in the wrong namespace")
            if cookie_here() != home:
                wrong.append(f"{host} round {round_}: the thread did not come back")
                return

    # One of them the main thread: what other threads see as /proc/self.
    other = threading.Thread(target=enter_often, args=("b",))
    other.start()
    enter_often("a")
    other.join(60)
    assert wrong == []
    assert cookie_here() == home
