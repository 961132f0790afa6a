"""Virtual addresses, routes, rules and interface facts through netlink.

vrrpd's own requests go through a plain rtnetlink socket per namespace
(hanet.linux.rtnl_socket); the agent's builders use pyroute2 (hanet.linux.pyroute2_socket)."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hanet.linux.rtnl_requests import address_request, route_request, rule_request
from hanet.linux.rtnl_socket import NetlinkFailure, RtnlSocket

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass(frozen=True)
class InterfaceFacts:
    name: str
    index: int
    mac: str
    primary_v4: ipaddress.IPv4Address | None
    link_local_v6: ipaddress.IPv6Address | None


class InterfaceNotFound(LookupError):
    pass


def interface_facts(rtnl: RtnlSocket, ifname: str, exclude: set[str]) -> InterfaceFacts:
    """Index, MAC and own addresses; ``exclude`` holds VIPs, never a primary address."""
    link = rtnl.link(ifname)
    if link is None:
        raise InterfaceNotFound(f"no interface {ifname!r} in this namespace")
    mac = ":".join(f"{byte:02x}" for byte in link.mac) if link.mac else "00:00:00:00:00:00"
    primary_v4: ipaddress.IPv4Address | None = None
    link_local: ipaddress.IPv6Address | None = None
    for seen in rtnl.addresses(link.index):
        address = seen.address
        if str(address) in exclude:
            continue
        if isinstance(address, ipaddress.IPv4Address):
            primary_v4 = primary_v4 or address
        elif address.is_link_local:
            link_local = link_local or address
    return InterfaceFacts(ifname, link.index, mac, primary_v4, link_local)


SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
PROTOCOLS = {"unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4}
ROUTE_TYPES = {"unicast": 1, "blackhole": 6, "unreachable": 7, "prohibit": 8, "throw": 9}


class DeviceIndex:
    """Interface names to indexes in one namespace, looked up when first needed: a device
    named in the config (a Neutron qr- port, say) may appear after the daemon started."""

    def __init__(self, rtnl: RtnlSocket, known: dict[str, int]) -> None:
        self.rtnl, self.known = rtnl, dict(known)

    def index(self, name: str) -> int:
        if name not in self.known:
            link = self.rtnl.link(name)
            if link is None:
                raise InterfaceNotFound(f"no interface {name!r}")
            self.known[name] = link.index
        return self.known[name]

    def forget(self, name: str) -> None:
        self.known.pop(name, None)


def add_address(rtnl: RtnlSocket, index: int, vip: Any) -> None:
    _tolerating((errno.EEXIST,), rtnl, lambda seq: _address(seq, True, index, vip))


def remove_address(rtnl: RtnlSocket, index: int, vip: Any) -> None:
    _tolerating((errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV), rtnl,
                lambda seq: _address(seq, False, index, vip))  # fmt: skip


def _address(seq: int, adding: bool, index: int, vip: Any) -> bytes:
    broadcast = None if vip.broadcast is None else ipaddress.ip_address(vip.broadcast)
    scope = None if vip.scope is None else SCOPES[vip.scope]
    return address_request(seq, adding, index, vip.address, broadcast=broadcast,
                           scope=scope, label=vip.label if adding else None)  # fmt: skip


def add_route(rtnl: RtnlSocket, index: int | None, route: Any) -> None:
    """A replace, so that a route a crashed run left behind is simply taken over."""
    _tolerating((), rtnl, lambda seq: _route(seq, True, index, route))


def remove_route(rtnl: RtnlSocket, index: int | None, route: Any) -> None:
    _tolerating((errno.ESRCH, errno.ENOENT, errno.ENODEV), rtnl,
                lambda seq: _route(seq, False, index, route))  # fmt: skip


def _route(seq: int, adding: bool, index: int | None, route: Any) -> bytes:
    protocol = None
    if route.protocol is not None:
        protocol = PROTOCOLS.get(route.protocol) or int(route.protocol)
    return route_request(
        seq, adding, route.to, ROUTE_TYPES[route.kind],
        oif=index if index is not None and route.kind == "unicast" else None,
        gateway=route.via, priority=route.metric, table=route.table, prefsrc=route.src,
        scope=None if route.scope is None else SCOPES[route.scope], protocol=protocol,
    )  # fmt: skip


def add_rule(rtnl: RtnlSocket, rule: Any) -> None:
    _tolerating((errno.EEXIST,), rtnl, lambda seq: _rule(seq, True, rule))


def remove_rule(rtnl: RtnlSocket, rule: Any) -> None:
    _tolerating((errno.ENOENT, errno.ESRCH), rtnl, lambda seq: _rule(seq, False, rule))


def _rule(seq: int, adding: bool, rule: Any) -> bytes:
    networks = [n for n in (rule.source, rule.destination) if n is not None]
    return rule_request(
        seq, adding, networks[0].version if networks else 4, source=rule.source,
        destination=rule.destination, table=rule.table, priority=rule.priority,
        iif=rule.iif, oif=rule.oif, fwmark=rule.fwmark,
    )  # fmt: skip


def _tolerating(codes: tuple[int, ...], rtnl: RtnlSocket, make: Callable[[int], bytes]) -> None:
    """Send one change; the kernel's answer is an error only when not in ``codes`` (an
    address already there when adding, already gone when removing)."""
    seq = rtnl.next_seq()
    try:
        rtnl.change(make(seq), seq)
    except NetlinkFailure as exc:
        if exc.errno not in codes:
            raise
