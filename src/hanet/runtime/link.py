"""One (namespace, interface, family): the VRRP socket, netlink and announcers it shares."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING

from pyroute2 import AsyncIPRoute

from hanet.linux import addresses as netaddr
from hanet.linux.announce_socket import Announcer
from hanet.linux.netns import inside
from hanet.linux.vrrp_socket import VrrpSocket
from hanet.runtime.droplog import DropLog
from hanet.runtime.pacing import BurstPacer
from hanet.vrrp import AdvertReceived
from hanet.vrrp.announce import mac_bytes

if TYPE_CHECKING:
    from hanet.runtime.instance import Instance


class Link:
    """One (namespace, interface, family): its socket, netlink handle and instances."""

    def __init__(self, netns: str | None, ifname: str, family: int) -> None:
        self.netns, self.ifname, self.family = netns, ifname, family
        self.instances: dict[int, Instance] = {}
        # identity_key(packet) -> the instance and event a full decode gave for it.
        self.accepted: dict[bytes, tuple[Instance, AdvertReceived]] = {}
        self.ipr: AsyncIPRoute | None = None
        self.socket: VrrpSocket | None = None
        self.announcer: Announcer | None = None
        self.announcers: dict[str, Announcer] = {}  # by device: the VRRP one and any other
        self.pacer = BurstPacer()
        self.resume: asyncio.TimerHandle | None = None  # a hold-off of the pacer
        self.drops = DropLog(ifname)  # log lines of what its instances drop, rate-limited

    async def open(self, vips: set[str]) -> None:
        self.ipr = await netaddr.open_netlink(self.netns)
        self.facts = await netaddr.interface_facts(self.ipr, self.ifname, vips)
        primary = self.facts.primary_v4 if self.family == 4 else self.facts.link_local_v6
        if primary is None:
            kind = "an IPv4 address" if self.family == 4 else "an IPv6 link-local address"
            raise netaddr.InterfaceNotFound(f"{self.ifname} has no {kind} to send adverts from")
        self.primary: ipaddress.IPv4Address | ipaddress.IPv6Address = primary
        self.devices = netaddr.DeviceIndex(self.ipr, {self.ifname: self.facts.index})
        with inside(self.netns):
            sock_family = socket.AF_INET if self.family == 4 else socket.AF_INET6
            # Frames need an Ethernet address (a device without one keeps the IP path).
            mac = mac_bytes(self.facts.mac) if self.facts.mac.strip("0:") else None
            self.socket = VrrpSocket(self.ifname, self.facts.index, sock_family, mac)
        # Its sockets open on the first announcement, in this namespace (Announcer).
        self.announcer = Announcer(self.netns, self.ifname, self.facts.index,
                                   mac_bytes(self.facts.mac))  # fmt: skip
        self.announcers = {self.ifname: self.announcer}

    def refresh_filter(self) -> None:
        """The kernel's VRID filter follows the link's instances (see
        InstanceConfig.vrid_filter): on when every one asks for it, off otherwise."""
        if self.socket is None:
            return
        wanted = bool(self.instances) and all(i.config.vrid_filter for i in self.instances.values())
        if wanted and len(self.instances) <= 200:
            self.socket.filter_vrids(self.instances)
        else:
            self.socket.filter_vrids(None)

    async def announcer_for(self, ifname: str) -> Announcer:
        """The announcer of another device of this namespace (a Neutron qg- port, say)."""
        if ifname not in self.announcers:
            assert self.ipr is not None
            index = await self.devices.index(ifname)
            facts = await netaddr.interface_facts(self.ipr, ifname, set())
            self.announcers[ifname] = Announcer(self.netns, ifname, index, mac_bytes(facts.mac))
        return self.announcers[ifname]

    def close(self) -> None:
        if self.resume is not None:
            self.resume.cancel()
            self.resume = None
        for announcer in self.announcers.values():
            announcer.close()
        self.announcers = {}
        for part in (self.socket, self.ipr):
            if part is not None:
                part.close()
        self.socket = self.announcer = self.ipr = None
