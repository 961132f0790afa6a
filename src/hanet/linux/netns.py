"""Entering network namespaces from the calling thread.

Sockets remember the namespace they were created in, so a daemon in one namespace can open
sockets in many: enter, create, leave. Only the calling thread moves; do this before starting
any threads (pyroute2 forks to open netlink sockets in other namespaces).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

from pyroute2 import netns


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


SO_NETNS_COOKIE = 71  # Linux 5.14: a socket's network namespace, as a 64-bit cookie


class WrongNamespace(RuntimeError):
    pass


def namespace_cookie(sock: socket.socket) -> int | None:
    """The namespace a socket belongs to, or None where the kernel cannot say."""
    try:
        return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
    except OSError:
        return None


def check_in(sock: socket.socket, name: str | None) -> None:
    """Refuse a socket that is not in namespace ``name``: acting on the wrong namespace could
    change the host's own addresses."""
    with inside(name):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with probe:
        expected = namespace_cookie(probe)
    actual = namespace_cookie(sock)
    if expected is not None and actual is not None and expected != actual:
        raise WrongNamespace(f"a socket meant for namespace {name or 'of this process'} "
                             "belongs to another one")  # fmt: skip
