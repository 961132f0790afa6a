"""Virtual addresses and interface facts through netlink (pyroute2's asyncio API)."""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hanet.linux.netns import WrongNamespace, check_in, inside

IFA_F_NODAD = 0x02
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


async def interface_facts(ipr: AsyncIPRoute, ifname: str, exclude: set[str]) -> InterfaceFacts:
    """Index, MAC and own addresses; ``exclude`` holds VIPs, never a primary address."""
    found = await ipr.link_lookup(ifname=ifname)
    if not found:
        raise InterfaceNotFound(f"no interface {ifname!r} in this namespace")
    index = found[0]
    mac = "00:00:00:00:00:00"
    for link in await ipr.link("get", index=index):
        mac = link.get("IFLA_ADDRESS") or mac
    primary_v4: ipaddress.IPv4Address | None = None
    link_local: ipaddress.IPv6Address | None = None
    async for msg in await ipr.addr("dump", index=index):
        text = msg.get("IFA_ADDRESS")
        if text is None or text in exclude:
            continue
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv4Address):
            primary_v4 = primary_v4 or address
        elif address.is_link_local:
            link_local = link_local or address
    return InterfaceFacts(ifname, index, mac, primary_v4, link_local)


SCOPES = {"global": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
PROTOCOLS = {"unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4}
ROUTE_TYPES = {"unicast": 1, "blackhole": 6, "unreachable": 7, "prohibit": 8, "throw": 9}


class DeviceIndex:
    """Interface names to indexes in one namespace, looked up when first needed: a device
    named in the config (a Neutron qr- port, say) may appear after the daemon started."""

    def __init__(self, ipr: AsyncIPRoute, known: dict[str, int]) -> None:
        self.ipr, self.known = ipr, dict(known)

    async def index(self, name: str) -> int:
        if name not in self.known:
            found = await self.ipr.link_lookup(ifname=name)
            if not found:
                raise InterfaceNotFound(f"no interface {name!r}")
            self.known[name] = found[0]
        return self.known[name]

    def forget(self, name: str) -> None:
        self.known.pop(name, None)


async def add_address(ipr: AsyncIPRoute, index: int, vip: Any) -> None:
    iface = vip.address
    extra: dict[str, Any] = {"flags": IFA_F_NODAD} if iface.version == 6 else {}
    if vip.broadcast is not None:
        extra["broadcast"] = vip.broadcast
    if vip.scope is not None:
        extra["scope"] = SCOPES[vip.scope]
    if vip.label is not None:
        extra["label"] = vip.label
    try:
        await ipr.addr(
            "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen, **extra
        )
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


async def remove_address(ipr: AsyncIPRoute, index: int, vip: Any) -> None:
    iface = vip.address
    try:
        await ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
            raise


async def add_route(ipr: AsyncIPRoute, index: int | None, route: Any) -> None:
    """``replace``, so that a route a crashed run left behind is simply taken over."""
    await ipr.route("replace", **_route_spec(index, route))


async def remove_route(ipr: AsyncIPRoute, index: int | None, route: Any) -> None:
    try:
        await ipr.route("del", **_route_spec(index, route))
    except NetlinkError as exc:
        if exc.code not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
            raise


def _route_spec(index: int | None, route: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"dst": str(route.to), "type": ROUTE_TYPES[route.kind]}
    if index is not None and route.kind == "unicast":
        spec["oif"] = index
    if route.via is not None:
        spec["gateway"] = str(route.via)
    if route.metric is not None:
        spec["priority"] = route.metric
    if route.table is not None:
        spec["table"] = route.table
    if route.src is not None:
        spec["prefsrc"] = str(route.src)
    if route.scope is not None:
        spec["scope"] = SCOPES[route.scope]
    if route.protocol is not None:
        spec["proto"] = PROTOCOLS.get(route.protocol) or int(route.protocol)
    return spec


async def add_rule(ipr: AsyncIPRoute, rule: Any) -> None:
    try:
        await ipr.rule("add", **_rule_spec(rule))
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


async def remove_rule(ipr: AsyncIPRoute, rule: Any) -> None:
    try:
        await ipr.rule("del", **_rule_spec(rule))
    except NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.ESRCH):
            raise


def _rule_spec(rule: Any) -> dict[str, Any]:
    networks = [n for n in (rule.source, rule.destination) if n is not None]
    spec: dict[str, Any] = {"family": 10 if networks and networks[0].version == 6 else 2}
    if rule.source is not None:
        spec.update(src=str(rule.source.network_address), src_len=rule.source.prefixlen)
    if rule.destination is not None:
        spec.update(dst=str(rule.destination.network_address), dst_len=rule.destination.prefixlen)
    if rule.table is not None:
        spec["table"] = rule.table
    if rule.priority is not None:
        spec["priority"] = rule.priority
    if rule.iif is not None:
        spec["iifname"] = rule.iif
    if rule.oif is not None:
        spec["oifname"] = rule.oif
    if rule.fwmark is not None:
        spec["fwmark"] = rule.fwmark
    return spec
