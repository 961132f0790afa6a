"""A netlink socket in one namespace that hears its links come, go and change carrier.

Non-blocking, for an event loop's reader; the messages are read with
hanet.linux.link_messages."""

from __future__ import annotations

import socket

from hanet.linux.link_messages import RTMGRP_LINK
from hanet.linux.netns import check_in, inside


def open_link_socket(netns: str | None) -> socket.socket:
    """Bound to the link group of ``netns`` (None: the calling thread's own)."""
    with inside(netns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                             | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)  # fmt: skip
    try:
        check_in(sock, netns)
        sock.bind((0, RTMGRP_LINK))
    except BaseException:
        sock.close()
        raise
    return sock
