"""Sends gratuitous ARPs (AF_PACKET) and unsolicited NAs (ICMPv6 raw) on one interface.

Built for a node with a thousand router namespaces, where every socket is paid for:
- Sockets open on the first announcement, one per family in use: a backup, and an IPv4
  router, never hold an ICMPv6 socket; a router that is never master holds no socket.
- The packet socket is opened with protocol 0 and sends to (interface, ETH_P_ARP). With a
  protocol, the kernel hooks the socket into receive: binding it waits for an RCU grace
  period (10-17 ms, so a thousand adds took seconds) and every ARP frame on the link is
  queued for it, where nobody reads them. With protocol 0 it is never hooked in.
- Closing a packet socket always waits for an RCU grace period (packet_release calls
  synchronize_net, ~14 ms). ``close_off_loop`` closes on worker threads: the event loop
  never waits, and closes that wait together share grace periods (1,000 in ~0.3 s on 64
  threads, against 14 s one after another, which is also what a process exit would take).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import struct

from hanet.linux.netns import inside
from hanet.vrrp.announce import ALL_NODES, ETH_P_ARP, gratuitous_arp, unsolicited_na

CLOSE_THREADS = 64
_closer: concurrent.futures.ThreadPoolExecutor | None = None
_closing: set[concurrent.futures.Future[None]] = set()


def close_off_loop(sock: socket.socket) -> None:
    """Close ``sock`` on a worker thread; ``closed()`` waits for every such close."""
    global _closer
    if _closer is None:
        _closer = concurrent.futures.ThreadPoolExecutor(CLOSE_THREADS, "hanet-close")
    future = _closer.submit(sock.close)
    _closing.add(future)
    future.add_done_callback(_closing.discard)


async def closed() -> None:
    """Until every socket handed to close_off_loop so far is closed."""
    pending = list(_closing)
    if pending:
        await asyncio.gather(*(asyncio.wrap_future(f) for f in pending))


class Announcer:
    def __init__(self, netns: str | None, ifname: str, ifindex: int, mac: bytes) -> None:
        self.netns, self.ifname, self.ifindex, self.mac = netns, ifname, ifindex, mac
        self._arp: socket.socket | None = None
        self._icmp6: socket.socket | None = None

    def _arp_socket(self) -> socket.socket:
        if self._arp is None:
            with inside(self.netns):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            s.setblocking(False)
            self._arp = s
        return self._arp

    def _icmp6_socket(self) -> socket.socket:
        if self._icmp6 is None:
            with inside(self.netns):
                s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
                s.setblocking(False)
            except OSError:
                s.close()
                raise
            self._icmp6 = s
        return self._icmp6

    def announce(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if address.version == 4:
            # Never bound, so never told ENETDOWN when the device goes down: a bound packet
            # socket keeps that error and fails the first send after the device is back.
            self._arp_socket().sendto(gratuitous_arp(self.mac, address), (self.ifname, ETH_P_ARP))
            return
        info = address.packed + struct.pack("@I", self.ifindex)
        self._icmp6_socket().sendmsg(
            [unsolicited_na(self.mac, address)],
            [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)],
            0,
            (str(ALL_NODES), 0, 0, self.ifindex),
        )

    def close(self) -> None:
        if self._arp is not None:
            close_off_loop(self._arp)
        if self._icmp6 is not None:
            self._icmp6.close()  # cheap: only packet sockets wait for a grace period
        self._arp = self._icmp6 = None
