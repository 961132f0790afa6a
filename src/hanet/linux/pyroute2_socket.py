"""A pyroute2 netlink socket in a namespace, for the agent's builders (hanet.linux.l2,
hanet.linux.router_ns). vrrpd does not import pyroute2 (hanet.linux.rtnl_socket)."""

from __future__ import annotations

from pyroute2 import AsyncIPRoute

from hanet.linux.netns import WrongNamespace, check_in, inside


async def open_netlink(netns: str | None) -> AsyncIPRoute:
    """A netlink socket in ``netns``, created from this thread with setns.

    pyroute2's own ``netns=`` forks a helper; the fork shares asyncio's signal wake-up fd,
    so a signal to the helper would reach our loop as if it were ours (a SIGTERM that
    stopped the daemon, seen in the tests). pyroute2 makes the socket lazily, on the first
    access to ``.socket``: that access must happen inside the namespace, or the socket
    would belong to the daemon's own namespace. ``check_in`` makes sure it does.
    """
    with inside(netns):
        ipr = AsyncIPRoute()
        ipr.socket.fileno()  # creates the socket here, in the namespace
    try:
        check_in(ipr.socket, netns)
    except WrongNamespace:
        ipr.close()
        raise
    await ipr.setup_endpoint()
    return ipr
