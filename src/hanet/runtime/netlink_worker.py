"""vrrpd's netlink requests, on a thread of their own.

A netlink request that changes the kernel's configuration (an address, a route, a rule) is
carried out inside the sender's ``sendmsg`` call, which first waits for the kernel's RTNL
lock. Every process of the machine that makes namespaces, moves veths or adds links holds
that lock in turn, as the agents of a node do while they build routers. Sent from the event
loop, such a request held up every advert of the daemon for as long as the lock was busy:
at ~300 routers a node the lab cloud's vrrpds spent 40 % of a flapping storm there
(docs/BENCHMARKS.md). Here the service's netlink sockets (one a link) live on one thread
with an event loop of its own, the protocol's loop awaits the results, and only a
take-over's addresses wait for the lock, never the adverts. Joining a multicast group takes
the same lock, so the adverts' sockets are opened here too. (The link watchers of
hanet.vrrpd.tracking stay on the loop: they read events, and dump links once at start.)

A link's netlink socket (hanet.linux.rtnl_socket) blocks the thread while it waits for
the kernel's answer, so it is used and closed on this thread only.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class NetlinkWorker:
    """One thread and its event loop, started on first use and stopped by ``stop``."""

    def __init__(self, name: str = "hanet-netlink") -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``work()`` run on the worker's loop; its result or exception comes back here.
        Cancelling the caller cancels the work."""
        loop = self._started()
        future = asyncio.run_coroutine_threadsafe(_call(work), loop)
        return await asyncio.wrap_future(future)

    def call_soon(self, function: Callable[[], object]) -> None:
        """``function()`` on the worker's thread, without waiting (a socket's close)."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(function)

    def stop(self, timeout: float = 5.0) -> None:
        """Let what is queued run (closes among it), then end the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(_wind_down(loop), loop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


async def _call(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return await work()


async def _wind_down(loop: asyncio.AbstractEventLoop) -> None:
    # A closed transport closes its socket one loop round later (connection_lost).
    for _ in range(3):
        await asyncio.sleep(0)
    loop.stop()
