"""Virtual addresses and interface facts through netlink (pyroute2's asyncio API)."""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

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
    ipr = AsyncIPRoute(netns=netns) if netns else AsyncIPRoute()
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


async def add_address(ipr: AsyncIPRoute, index: int, iface: IPInterface) -> None:
    extra = {"flags": IFA_F_NODAD} if iface.version == 6 else {}  # a VIP is usable at once
    try:
        await ipr.addr(
            "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen, **extra
        )
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


async def add_route(ipr: AsyncIPRoute, index: int, route: Any) -> None:
    """``replace``, so that a route a crashed run left behind is simply taken over."""
    await ipr.route("replace", **_route_spec(index, route))


async def remove_route(ipr: AsyncIPRoute, index: int, route: Any) -> None:
    try:
        await ipr.route("del", **_route_spec(index, route))
    except NetlinkError as exc:
        if exc.code not in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
            raise


def _route_spec(index: int, route: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"dst": str(route.to), "oif": index}
    if route.via is not None:
        spec["gateway"] = str(route.via)
    if route.metric is not None:
        spec["priority"] = route.metric
    if route.table is not None:
        spec["table"] = route.table
    return spec


async def remove_address(ipr: AsyncIPRoute, index: int, iface: IPInterface) -> None:
    try:
        await ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
            raise
