"""A router's namespace on a network node: made, its ports moved in, its own addresses and
routes set, and removed. Every call converges: what is already so is left alone, so an
agent that restarts adopts the namespaces it finds (same devices, same ifindexes, no
flap) instead of re-creating them.

Ports are veth pairs from hanet.linux.l2: the ``tap`` end on the network's bridge in the
node's namespace, the other end moved into the router's namespace and renamed there to its
``qr-``/``qg-``/``ha-`` name with the port's MAC.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hanet.linux import l2
from hanet.linux.netns import NETNS_DIR
from hanet.linux.pyroute2_socket import open_netlink
from hanet.linux.sysctl import set_sysctls

ROUTER_DEVICE_PREFIXES = ("qr-", "qg-", "ha-")
METADATA_ADDRESS = "169.254.169.254/32"
STATIC = 4  # RTPROT_STATIC: the routes this module sets, so it can tell them from others

ROUTER_SYSCTLS = {
    "net/ipv4/ip_forward": "1",
    "net/ipv6/conf/all/forwarding": "1",
    # Addresses appear on the master at take-over: no DAD delay before they work.
    "net/ipv6/conf/all/accept_dad": "0",
    "net/ipv6/conf/default/accept_dad": "0",
    # A standby holds the same MACs as the master on the same networks: it must send
    # nothing there (no RS, MLD or DAD from an automatic link-local), so that bridges keep
    # learning those MACs from the master only. vrrpd puts the link-locals on the master.
    "net/ipv6/conf/default/addr_gen_mode": "1",
    "net/ipv4/conf/all/arp_ignore": "1",
    # Hairpinned traffic goes back out the port it came in by: no ICMP redirects for it.
    "net/ipv4/conf/all/send_redirects": "0",
    "net/ipv4/conf/default/send_redirects": "0",
}


class RouterNamespaceError(RuntimeError):
    """The namespace or one of its devices cannot be made so; says which and why."""


def exists(namespace: str) -> bool:
    return Path(NETNS_DIR, namespace).exists()


async def _ip(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ip", *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RouterNamespaceError(f"ip {' '.join(argv)}: {err.decode(errors='replace').strip()}")


async def ensure_namespace(namespace: str) -> bool:
    """The namespace with forwarding on and ``lo`` up; True if it was made now."""
    created = not exists(namespace)
    if created:
        await _ip("netns", "add", namespace)
    try:
        set_sysctls(namespace, ROUTER_SYSCTLS)
    except OSError as exc:
        raise RouterNamespaceError(f"namespace {namespace}: sysctl: {exc}") from None
    ipr = await open_netlink(namespace)
    try:
        lo = (await ipr.link_lookup(ifname="lo"))[0]
        await ipr.link("set", index=lo, state="up")
        await _ensure_addresses(ipr, lo, [METADATA_ADDRESS], keep=lambda a: True)
    finally:
        ipr.close()
    return created


async def remove_namespace(namespace: str) -> bool:
    """Remove it (its devices go with it, and their tap ends on the bridges too)."""
    if not exists(namespace):
        return False
    await _ip("netns", "delete", namespace)
    return True


async def _devices(ipr: AsyncIPRoute) -> dict[str, Any]:
    return {msg.get("ifname"): msg async for msg in await ipr.link("dump")}


def _peer_name(port_id: str) -> str:
    return "rp" + port_id[: l2.ID_CHARS]


async def wire_port(
    node_namespace: str | None,
    namespace: str,
    *,
    port_id: str,
    network_id: str,
    device: str,
    mac: str,
    mtu: int,
    addresses: Iterable[str] = (),
    keep: Callable[[str], bool] = lambda address: False,
    ipv6: bool = True,
) -> list[str]:
    """The port's veth pair: ``tap`` on the network's bridge (which must exist), ``device``
    in the router's namespace with ``mac`` and ``mtu``, up, holding ``addresses``. Other
    global addresses on it are removed unless ``keep(address)`` (vrrpd's, for instance).
    A ``qr-``/``qg-`` device gets no automatic link-local, and IPv6 only with ``ipv6``.
    Returns what changed."""
    plugged = await l2.plug_port(node_namespace, network_id, port_id, _peer_name(port_id), mtu)
    changes = list(plugged.changes)
    ipr = await open_netlink(namespace)
    try:
        devices = await _devices(ipr)
        if plugged.peer_index is not None:
            if device in devices:
                raise RouterNamespaceError(
                    f"namespace {namespace}: device {device} exists but is not {plugged.tap}'s peer"
                )
            node = await open_netlink(node_namespace)
            try:
                await node.link("set", index=plugged.peer_index, net_ns_fd=namespace)
            finally:
                node.close()
            changes.append(f"moved {plugged.peer} into {namespace}")
            devices = await _devices(ipr)
        msg = devices.get(device) or devices.get(plugged.peer)
        if msg is None:
            raise RouterNamespaceError(
                f"namespace {namespace}: device {device}: missing, and "
                f"{plugged.tap}'s peer is elsewhere"
            )
        index = msg["index"]
        wanted: dict[str, Any] = {}
        if msg.get("ifname") != device:
            wanted["ifname"] = device
        if str(msg.get("address", "")).lower() != mac.lower():
            wanted["address"] = mac
        if msg.get("mtu") != mtu:
            wanted["mtu"] = mtu
        if wanted:
            if msg.get("flags", 0) & 1:
                await ipr.link("set", index=index, state="down")
            await ipr.link("set", index=index, **wanted)
            changes.append(f"{device} " + " ".join(f"{k}={v}" for k, v in sorted(wanted.items())))
        if device.startswith(("qr-", "qg-")):
            # Before the device is up: a standby must send nothing from the master's MAC.
            set_sysctls(
                namespace,
                {
                    f"net/ipv6/conf/{device}/addr_gen_mode": "1",
                    f"net/ipv6/conf/{device}/disable_ipv6": "0" if ipv6 else "1",
                },
            )
        if not msg.get("flags", 0) & 1 or wanted:
            await ipr.link("set", index=index, state="up")
            changes.append(f"{device} up")
        changes += await _ensure_addresses(ipr, index, list(addresses), keep)
    except NetlinkError as exc:
        raise RouterNamespaceError(f"namespace {namespace}: device {device}: {exc}") from None
    finally:
        ipr.close()
    return changes


async def _ensure_addresses(
    ipr: AsyncIPRoute, index: int, wanted: list[str], keep: Callable[[str], bool]
) -> list[str]:
    changes: list[str] = []
    have: dict[str, Any] = {}
    async for msg in await ipr.addr("dump", index=index):
        address = msg.get("IFA_ADDRESS")
        if address is not None:
            have[f"{address}/{msg['prefixlen']}"] = msg
    wanted_set = {str(ipaddress.ip_interface(a)) for a in wanted}
    for address in sorted(wanted_set - set(have)):
        iface = ipaddress.ip_interface(address)
        extra = {"flags": 0x02} if iface.version == 6 else {}  # IFA_F_NODAD
        try:
            await ipr.addr(
                "add",
                index=index,
                address=str(iface.ip),
                prefixlen=iface.network.prefixlen,
                **extra,
            )
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        changes.append(f"address {address}")
    for address in sorted(set(have) - wanted_set):
        iface = ipaddress.ip_interface(address)
        if (iface.ip.is_link_local and iface.version == 6) or keep(address):
            continue
        if iface.ip.is_loopback:
            continue
        await ipr.addr("del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        changes.append(f"removed address {address}")
    return changes


async def remove_other_devices(namespace: str, keep: Iterable[str]) -> list[str]:
    """Remove the router devices (qr-, qg-, ha-) that are not in ``keep``: ports that left
    the router. Their tap ends on the bridges go with them."""
    keep = set(keep)
    removed = []
    ipr = await open_netlink(namespace)
    try:
        for name, msg in (await _devices(ipr)).items():
            if name.startswith(ROUTER_DEVICE_PREFIXES) and name not in keep:
                try:
                    await ipr.link("del", index=msg["index"])
                except NetlinkError as exc:
                    if exc.code != errno.ENODEV:
                        what = f"namespace {namespace}: {name}: {exc}"
                        raise RouterNamespaceError(what) from None
                removed.append(name)
    finally:
        ipr.close()
    return removed


async def set_routes(namespace: str, routes: Iterable[dict[str, Any]]) -> list[str]:
    """A legacy router's routes (``to``, ``via``?, ``dev``?, ``scope``?), exactly, in both
    families: those this module set before (protocol static) and no longer wanted are
    removed. On-link routes come first in ``routes`` and are applied first."""
    changes = []
    ipr = await open_netlink(namespace)
    try:
        wanted: dict[str, dict[str, Any]] = {}
        for route in routes:
            destination = ipaddress.ip_network(
                "0.0.0.0/0" if route["to"] == "default" else route["to"]
            )
            spec: dict[str, Any] = {
                "dst": str(destination),
                "proto": STATIC,
                "family": 2 if destination.version == 4 else 10,
            }
            if route.get("via"):
                spec["gateway"] = route["via"]
            if route.get("dev"):
                spec["oif"] = (await ipr.link_lookup(ifname=route["dev"]))[0]
            if route.get("scope") == "link":
                spec["scope"] = 253
            wanted[str(destination)] = spec
        have = set()
        for family, zero in ((2, "0.0.0.0"), (10, "::")):
            async for msg in await ipr.route("dump", family=family, table=254):
                if msg.get("proto") == STATIC:
                    have.add(
                        str(ipaddress.ip_network(f"{msg.get('RTA_DST') or zero}/{msg['dst_len']}"))
                    )
        for to, spec in wanted.items():
            await ipr.route("replace", **spec)
            if to not in have:
                changes.append(
                    f"route {to}" + (f" via {spec['gateway']}" if "gateway" in spec else "")
                )
        for to in sorted(have - set(wanted)):
            network = ipaddress.ip_network(to)
            try:
                await ipr.route(
                    "del", dst=to, proto=STATIC, family=2 if network.version == 4 else 10
                )
            except NetlinkError as exc:
                if exc.code not in (errno.ESRCH, errno.ENOENT):
                    raise
            changes.append(f"removed route {to}")
    except (NetlinkError, IndexError, ValueError, KeyError) as exc:
        raise RouterNamespaceError(f"namespace {namespace}: routes: {exc}") from None
    finally:
        ipr.close()
    return changes
