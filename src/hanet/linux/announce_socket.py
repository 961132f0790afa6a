"""Sends gratuitous ARPs (AF_PACKET) and unsolicited NAs (ICMPv6 raw) on one interface."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from hanet.vrrp.announce import ALL_NODES, ETH_P_ARP, gratuitous_arp, unsolicited_na


class Announcer:
    def __init__(self, ifname: str, ifindex: int, mac: bytes) -> None:
        self.ifname, self.ifindex, self.mac = ifname, ifindex, mac
        self._arp: socket.socket | None = None
        self._icmp6: socket.socket | None = None

    def _arp_socket(self) -> socket.socket:
        if self._arp is None:
            self._arp = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
            self._arp.bind((self.ifname, ETH_P_ARP))
            self._arp.setblocking(False)
        return self._arp

    def _icmp6_socket(self) -> socket.socket:
        if self._icmp6 is None:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
            s.setblocking(False)
            self._icmp6 = s
        return self._icmp6

    def open(self) -> None:
        """Create both sockets now, while the caller is in the right namespace."""
        self._arp_socket()
        self._icmp6_socket()

    def announce(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        if address.version == 4:
            arp = self._arp_socket()
            frame = gratuitous_arp(self.mac, address)
            try:
                arp.send(frame)
            except OSError as exc:
                if exc.errno != errno.ENETDOWN:
                    raise
                # A packet socket is told ENETDOWN when its device goes down and keeps that
                # error until the next send, which fails with it even though the device is
                # up again (and so clears it). Sending once more tells a stale error from a
                # real one: a device still down fails again, and that error is raised.
                arp.send(frame)
            return
        info = address.packed + struct.pack("@I", self.ifindex)
        self._icmp6_socket().sendmsg(
            [unsolicited_na(self.mac, address)],
            [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)],
            0,
            (str(ALL_NODES), 0, 0, self.ifindex),
        )

    def close(self) -> None:
        for s in (self._arp, self._icmp6):
            if s is not None:
                s.close()
        self._arp = self._icmp6 = None
