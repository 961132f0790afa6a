"""Entering network namespaces from the calling thread.

Sockets remember the namespace they were created in, so a daemon in one namespace can open
sockets in many: enter, create, leave. Only the calling thread moves; do this before starting
any threads (pyroute2 forks to open netlink sockets in other namespaces).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pyroute2 import IPRoute, netns


@contextlib.contextmanager
def inside(name: str | None) -> Iterator[None]:
    """Run the block with the calling thread in namespace ``name`` (None: stay here)."""
    if name is None:
        yield
        return
    netns.pushns(name)
    try:
        yield
    finally:
        netns.popns()


def iproute(name: str | None) -> IPRoute:
    """A netlink socket bound to namespace ``name`` (None: the current one)."""
    return IPRoute(netns=name) if name else IPRoute()
