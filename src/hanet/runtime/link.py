"""One (namespace, interface, family): the VRRP socket, netlink and announcers it shares.

Its netlink socket (a plain one, hanet.linux.rtnl_socket: one per router namespace) is
set up, used and closed on the service's netlink thread (hanet.runtime.netlink_worker),
where its calls may block; everything else runs on the event loop."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING

from hanet.linux import addresses as netaddr
from hanet.linux.announce_socket import Announcer
from hanet.linux.netns import inside
from hanet.linux.rtnl_socket import RtnlSocket
from hanet.linux.vrrp_socket import VrrpSocket
from hanet.runtime.droplog import DropLog
from hanet.runtime.netlink_worker import NetlinkWorker
from hanet.runtime.pacing import BurstPacer
from hanet.vrrp import AdvertReceived
from hanet.vrrp.announce import mac_bytes

if TYPE_CHECKING:
    from hanet.runtime.instance import Instance


class Link:
    """One (namespace, interface, family): its socket, netlink handle and instances."""

    def __init__(self, netns: str | None, ifname: str, family: int, netlink: NetlinkWorker) -> None:
        self.netns, self.ifname, self.family = netns, ifname, family
        self.netlink = netlink
        self.instances: dict[int, Instance] = {}
        # identity_key(packet) -> the instance and event a full decode gave for it.
        self.accepted: dict[bytes, tuple[Instance, AdvertReceived]] = {}
        self.rtnl: RtnlSocket | None = None
        self.socket: VrrpSocket | None = None
        self.announcer: Announcer | None = None
        self.announcers: dict[str, Announcer] = {}  # by device: the VRRP one and any other
        self.pacer = BurstPacer()
        self.resume: asyncio.TimerHandle | None = None  # a hold-off of the pacer
        self.drops = DropLog(ifname)  # log lines of what its instances drop, rate-limited

    async def open(self, vips: set[str]) -> None:
        rtnl, self.facts, self.socket = await self.netlink.run(lambda: self._open(vips))
        self.rtnl = rtnl
        primary = self.facts.primary_v4 if self.family == 4 else self.facts.link_local_v6
        assert primary is not None  # _open refused a link without one
        self.primary: ipaddress.IPv4Address | ipaddress.IPv6Address = primary
        self.devices = netaddr.DeviceIndex(rtnl, {self.ifname: self.facts.index})
        # Its sockets open on the first announcement, in this namespace (Announcer).
        self.announcer = Announcer(self.netns, self.ifname, self.facts.index,
                                   mac_bytes(self.facts.mac))  # fmt: skip
        self.announcers = {self.ifname: self.announcer}

    async def _open(self, vips: set[str]) -> tuple[RtnlSocket, netaddr.InterfaceFacts, VrrpSocket]:
        """On the netlink thread: nothing is left open if a step fails."""
        rtnl = RtnlSocket(self.netns)
        try:
            facts = netaddr.interface_facts(rtnl, self.ifname, vips)
            primary = facts.primary_v4 if self.family == 4 else facts.link_local_v6
            if primary is None:
                kind = "an IPv4 address" if self.family == 4 else "an IPv6 link-local address"
                raise netaddr.InterfaceNotFound(f"{self.ifname} has no {kind} to send adverts from")
            with inside(self.netns):
                sock_family = socket.AF_INET if self.family == 4 else socket.AF_INET6
                # Frames need an Ethernet address (a device without one keeps the IP path).
                mac = mac_bytes(facts.mac) if facts.mac.strip("0:") else None
                vrrp_socket = VrrpSocket(self.ifname, facts.index, sock_family, mac)
        except BaseException:
            rtnl.close()
            raise
        return rtnl, facts, vrrp_socket

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
            index, mac = await self.netlink.run(lambda: self._device(ifname))
            if ifname not in self.announcers:  # another caller may have made it meanwhile
                self.announcers[ifname] = Announcer(self.netns, ifname, index, mac)
        return self.announcers[ifname]

    async def _device(self, ifname: str) -> tuple[int, bytes]:
        """On the netlink thread: a device's index and Ethernet address."""
        assert self.rtnl is not None
        found = self.rtnl.link(ifname)
        if found is None:
            raise netaddr.InterfaceNotFound(f"no interface {ifname!r}")
        return found.index, found.mac

    def close(self) -> None:
        if self.resume is not None:
            self.resume.cancel()
            self.resume = None
        for announcer in self.announcers.values():
            announcer.close()
        self.announcers = {}
        if self.socket is not None:
            self.socket.close()
        if self.rtnl is not None:
            self.netlink.call_soon(self.rtnl.close)  # after the requests queued there
        self.socket = self.announcer = self.rtnl = None
