"""Entering network namespaces from the calling thread.

Sockets remember the namespace they were created in, so a daemon in one namespace can open
sockets in many: enter, create, leave. Only the calling thread moves, and it comes back to
where it was, so several threads may do this at once (vrrpd's netlink thread does, beside
its event loop). pyroute2's ``pushns``/``popns`` keep one stack for the whole process and
save ``/proc/self`` (the main thread's namespace), so they are not used here.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from collections.abc import Iterator

NETNS_DIR = "/run/netns"


class NamespaceNotFound(LookupError):
    pass


def _open(name: str) -> int:
    """An fd of namespace ``name`` in /run/netns (what ``ip netns add`` makes).

    Only a name: a path could reach any namespace, the host's own included.
    """
    if not name or "/" in name or name in (".", ".."):
        raise NamespaceNotFound(f"network namespace {name!r} is not a name in {NETNS_DIR}")
    try:
        return os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceNotFound(f"network namespace {name!r} does not exist") from None


CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    """setns(2) into the network namespace behind ``fd`` (os.setns is Python 3.12's).
    Done here rather than through pyroute2 so that vrrpd does not import pyroute2 (about
    14 MB of a process's memory)."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@contextlib.contextmanager
def inside(name: str | None) -> Iterator[None]:
    """Run the block with the calling thread in namespace ``name`` (None: stay here).

    A missing namespace is an error, never created: pyroute2's ``pushns(name)`` would make
    one, and a typo would leave an empty namespace behind.
    """
    if name is None:
        yield
        return
    fd = _open(name)
    try:
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
        except OSError as exc:
            os.close(here)
            if exc.errno != errno.EINVAL:
                raise
            # The file is there but is no namespace: one deleted while its name stayed.
            raise NamespaceNotFound(f"network namespace {name!r} does not exist "
                                    f"({NETNS_DIR}/{name} is not one)") from None  # fmt: skip
    finally:
        os.close(fd)
    try:
        yield
    finally:
        try:
            _setns(here)
        finally:
            os.close(here)


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
