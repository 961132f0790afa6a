"""A node's L2 in Neutron's linuxbridge layout, converged through netlink.

One Linux bridge per network (``brq`` + the first 11 characters of the network id); a VXLAN
network adds ``vxlan-<vni>`` to it, flooding to the other nodes by head-end replication
(all-zero MAC FDB entries, one per peer tunnel address, as the linuxbridge agent writes
with l2population off); a flat network adds the node's physical interface. A port is a
veth pair: ``tap`` + 11 characters of the port id on the bridge, the other end handed back
for the caller to move into a namespace.

Every function converges: what already matches is left alone (same ifindex, no netlink
write), so an agent that restarts adopts what is there instead of re-creating it.
``inventory`` lists what exists. Only devices named by this module are created, changed
or deleted; a device with one of these names but of another kind is an error, never
repaired. Every error is an ``L2Error`` naming the network and the device.

Each call takes the node's namespace (a name in /run/netns; None: this process's own) and
opens its netlink socket there from the calling thread (``open_netlink``).
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hanet.linux.netns import NamespaceNotFound, WrongNamespace
from hanet.linux.pyroute2_socket import open_netlink
from hanet.linux.sysctl import disable_ipv6

BRIDGE_PREFIX = "brq"
VXLAN_PREFIX = "vxlan-"
TAP_PREFIX = "tap"
ID_CHARS = 11  # Neutron's LINUX_DEV_LEN (14) minus the 3-character prefix
VXLAN_PORT = 4789  # IANA's port; the kernel's own default is Linux's old 8472
ZERO_MAC = "00:00:00:00:00:00"
MAX_VNI = 2**24 - 1
IFNAMSIZ = 15
OUR_PREFIXES = (BRIDGE_PREFIX, VXLAN_PREFIX, TAP_PREFIX)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class L2Error(RuntimeError):
    """Something the node's L2 cannot become; the message names network and device."""


def bridge_name(network_id: str) -> str:
    return BRIDGE_PREFIX + _id_part(network_id, "network")


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


def tap_name(port_id: str) -> str:
    return TAP_PREFIX + _id_part(port_id, "port")


def _id_part(ident: str, what: str) -> str:
    part = ident[:ID_CHARS]
    if not part or any(c in part for c in "/:%") or any(c.isspace() for c in part):
        raise L2Error(f"{what} id {ident!r} cannot name a device")
    return part


@dataclass(frozen=True)
class VxlanState:
    name: str
    index: int
    vni: int
    local: IPAddress | None
    underlay: int | None  # ifindex of the underlay device
    port: int
    learning: bool
    mtu: int
    master: int | None
    peers: frozenset[IPAddress]
    group: IPAddress | None = None


@dataclass(frozen=True)
class BridgeState:
    name: str
    index: int
    mtu: int
    vxlans: tuple[str, ...]  # vxlan-<vni> members
    taps: tuple[str, ...]  # tap<port> members
    others: tuple[str, ...]  # members this module did not name: a flat network's interface


@dataclass(frozen=True)
class Inventory:
    """Everything this module's names cover in one namespace."""

    bridges: dict[str, BridgeState] = field(default_factory=dict)
    vxlans: dict[int, VxlanState] = field(default_factory=dict)  # by VNI
    taps: dict[str, int] = field(default_factory=dict)  # name: ifindex

    def bridge_of(self, network_id: str) -> BridgeState | None:
        return self.bridges.get(bridge_name(network_id))


@dataclass(frozen=True)
class PluggedPort:
    tap: str  # on the bridge
    peer: str  # the caller's end
    peer_index: int | None  # None: no longer in the node's namespace (already moved)
    changes: tuple[str, ...]


# Reading ------------------------------------------------------------------------------------


def _kind(msg: Any) -> str | None:
    kind = msg.get(("linkinfo", "kind"))
    return str(kind) if kind is not None else None


async def _links(ipr: AsyncIPRoute) -> dict[str, Any]:
    return {msg.get("ifname"): msg async for msg in await ipr.link("dump")}


async def _named(ipr: AsyncIPRoute, *names: str) -> dict[str, Any]:
    """Only the devices asked for, each by its own request: a node with thousands of
    routers has thousands of devices, and pyroute2 decodes a full dump in Python (at 200
    routers a node's dump took seconds, once per port)."""
    found = {}
    for name in dict.fromkeys(names):
        try:
            found[name] = next(iter(await ipr.link("get", ifname=name)))
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise
    return found


async def _get(ipr: AsyncIPRoute, name: str) -> Any:
    return next(iter(await ipr.link("get", ifname=name)))


async def _peers(ipr: AsyncIPRoute, index: int) -> frozenset[IPAddress]:
    found = set()
    async for entry in await ipr.fdb("dump", ifindex=index):
        if entry.get("ifindex") == index and entry.get("lladdr") == ZERO_MAC:
            dst = entry.get("dst")
            if dst is not None:
                found.add(ipaddress.ip_address(dst))
    return frozenset(found)


async def _vxlan_state(ipr: AsyncIPRoute, msg: Any, with_peers: bool = True) -> VxlanState:
    data = msg.get(("linkinfo", "data"))
    local = data.get("IFLA_VXLAN_LOCAL") or data.get("IFLA_VXLAN_LOCAL6")
    group = data.get("IFLA_VXLAN_GROUP") or data.get("IFLA_VXLAN_GROUP6")
    return VxlanState(
        name=msg.get("ifname"),
        index=msg["index"],
        vni=data.get("IFLA_VXLAN_ID"),
        local=ipaddress.ip_address(local) if local else None,
        underlay=data.get("IFLA_VXLAN_LINK") or None,
        port=data.get("IFLA_VXLAN_PORT"),
        learning=bool(data.get("IFLA_VXLAN_LEARNING")),
        mtu=msg.get("mtu"),
        master=msg.get("master"),
        # An FDB dump is decoded whole in Python: only when the peers are asked for.
        peers=await _peers(ipr, msg["index"]) if with_peers else frozenset(),
        group=ipaddress.ip_address(group) if group not in (None, "0.0.0.0", "::") else None,
    )


async def inventory(netns: str | None) -> Inventory:
    """What exists under this module's names, to adopt after a restart."""
    ipr = await _open(netns, "-", "-")
    try:
        return await _inventory(ipr)
    finally:
        ipr.close()


async def _inventory(ipr: AsyncIPRoute) -> Inventory:
    links = await _links(ipr)
    by_index = {msg["index"]: msg for msg in links.values()}
    result = Inventory()
    for name, msg in links.items():
        kind = _kind(msg)
        if name.startswith(VXLAN_PREFIX) and kind == "vxlan":
            state = await _vxlan_state(ipr, msg)
            if name == vxlan_name(state.vni):
                result.vxlans[state.vni] = state
        elif name.startswith(TAP_PREFIX) and kind == "veth":
            result.taps[name] = msg["index"]
    for name, msg in links.items():
        if not (name.startswith(BRIDGE_PREFIX) and _kind(msg) == "bridge"):
            continue
        members = sorted(
            by_index[i].get("ifname")
            for i, m in by_index.items()
            if m.get("master") == msg["index"]
        )
        vxlans = tuple(m for m in members if m.startswith(VXLAN_PREFIX))
        taps = tuple(m for m in members if m in result.taps)
        others = tuple(m for m in members if m not in vxlans and m not in taps)
        result.bridges[name] = BridgeState(name, msg["index"], msg.get("mtu"), vxlans, taps, others)
    return result


# Converging ---------------------------------------------------------------------------------


async def _open(netns: str | None, network: str, device: str) -> AsyncIPRoute:
    try:
        return await open_netlink(netns)
    except (NamespaceNotFound, WrongNamespace, OSError) as exc:
        raise L2Error(f"network {network}: device {device}: {exc}") from None


def _fail(network: str, device: str, what: str, exc: BaseException | None = None) -> L2Error:
    detail = f": {exc.args[1] if isinstance(exc, NetlinkError) and len(exc.args) > 1 else exc}"
    return L2Error(f"network {network}: device {device}: {what}{detail if exc else ''}")


def _wrong_kind(network: str, device: str, msg: Any, wanted: str) -> L2Error:
    """A device under one of our names that we did not make: never repaired nor removed."""
    kind = _kind(msg) or "device"
    return L2Error(f"network {network}: device {device}: is a {kind} link, not {wanted}: "
                   "left alone")  # fmt: skip


def _check_mtu(network: str, mtu: int) -> None:
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535:
        raise L2Error(f"network {network}: mtu {mtu!r} is not in 68..65535")


async def _ensure_bridge(
    ipr: AsyncIPRoute,
    netns: str | None,
    network: str,
    mtu: int,
    links: dict[str, Any],
    changes: list[str],
) -> int:
    name = bridge_name(network)
    msg = links.get(name)
    try:
        if msg is None:
            # Snooping off: VRRP and other multicast reach every port without a querier.
            await ipr.link("add", ifname=name, kind="bridge", br_mcast_snooping=0, mtu=mtu)
            disable_ipv6(netns, name)
            changes.append(f"created {name}")
            msg = await _get(ipr, name)
        elif _kind(msg) != "bridge":
            raise _wrong_kind(network, name, msg, "a bridge")
        elif msg.get("mtu") != mtu:
            await ipr.link("set", index=msg["index"], mtu=mtu)
            changes.append(f"{name} mtu {mtu}")
        if not msg.get("flags", 0) & 1:  # IFF_UP
            await ipr.link("set", index=msg["index"], state="up")
            changes.append(f"{name} up")
    except NetlinkError as exc:
        raise _fail(network, name, "cannot set up the bridge", exc) from None
    return int(msg["index"])


async def _enslave(
    ipr: AsyncIPRoute,
    network: str,
    msg: Any,
    bridge: int,
    mtu: int | None,
    changes: list[str],
) -> None:
    name = msg.get("ifname")
    wanted: dict[str, Any] = {}
    if msg.get("master") != bridge:
        wanted["master"] = bridge
    if mtu is not None and msg.get("mtu") != mtu:
        wanted["mtu"] = mtu
    if not msg.get("flags", 0) & 1:  # IFF_UP
        wanted["state"] = "up"
    if not wanted:
        return
    try:
        await ipr.link("set", index=msg["index"], **wanted)
    except NetlinkError as exc:
        raise _fail(network, name, f"cannot set {', '.join(sorted(wanted))}", exc) from None
    changes.append(f"{name} " + " ".join(f"{k}={v}" for k, v in sorted(wanted.items())))


def _vxlan_spec(
    vni: int, local: IPAddress, underlay: int, group: IPAddress | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "vxlan_id": vni,
        "vxlan_link": underlay,
        "vxlan_port": VXLAN_PORT,
        "vxlan_learning": 1,
    }
    spec["vxlan_local" if local.version == 4 else "vxlan_local6"] = str(local)
    if group is not None:
        spec["vxlan_group" if group.version == 4 else "vxlan_group6"] = str(group)
    return spec


async def ensure_vxlan_network(
    netns: str | None,
    network_id: str,
    vni: int,
    mtu: int,
    local: str,
    underlay: str,
    peers: Iterable[str],
    group: str | None = None,
) -> list[str]:
    """The network's bridge with ``vxlan-<vni>`` on it, tunnelling from ``local`` over
    ``underlay`` (UDP 4789, learning on), flooding to exactly ``peers``, or, with a
    multicast ``group``, to that group (Neutron's linuxbridge ``vxlan_group`` without
    l2population; ``peers`` must then be empty).

    The node's own address among the peers is ignored. A VXLAN device whose VNI, local
    address, underlay or port differs is re-created (the kernel cannot change them in
    place); its MTU and bridge are changed in place. Returns what was changed (empty: it
    was already so).
    """
    name = vxlan_name(vni) if isinstance(vni, int) else f"{VXLAN_PREFIX}{vni}"
    if not isinstance(vni, int) or isinstance(vni, bool) or not 1 <= vni <= MAX_VNI:
        raise L2Error(f"network {network_id}: device {name}: VNI {vni!r} is not in 1..{MAX_VNI}")
    _check_mtu(network_id, mtu)
    try:
        local_ip = ipaddress.ip_address(local)
        wanted_peers = frozenset(ipaddress.ip_address(p) for p in peers) - {local_ip}
        group_ip = ipaddress.ip_address(group) if group is not None else None
    except ValueError as exc:
        raise L2Error(f"network {network_id}: device {name}: {exc}") from None
    if group_ip is not None and (not group_ip.is_multicast or group_ip.version != local_ip.version):
        raise L2Error(f"network {network_id}: device {name}: group {group_ip} is not an "
                      f"IPv{local_ip.version} multicast address")  # fmt: skip
    if group_ip is not None and wanted_peers:
        raise L2Error(f"network {network_id}: device {name}: flood to a group or to peers, "
                      "not both")  # fmt: skip
    if any(p.version != local_ip.version for p in wanted_peers):
        raise L2Error(f"network {network_id}: device {name}: peers must be IPv{local_ip.version} "
                      f"as the local address {local_ip}")  # fmt: skip
    changes: list[str] = []
    ipr = await _open(netns, network_id, name)
    try:
        links = await _named(ipr, underlay, bridge_name(network_id), name)
        if underlay not in links:
            raise L2Error(f"network {network_id}: device {name}: no underlay device {underlay!r}")
        under_index = links[underlay]["index"]
        bridge = await _ensure_bridge(ipr, netns, network_id, mtu, links, changes)
        msg = links.get(name)
        if msg is not None and _kind(msg) != "vxlan":
            raise _wrong_kind(network_id, name, msg, "VXLAN")
        if msg is not None:
            have = await _vxlan_state(ipr, msg, with_peers=False)
            if (have.vni, have.local, have.underlay, have.port, have.learning, have.group) != (
                vni, local_ip, under_index, VXLAN_PORT, True, group_ip,
            ):  # fmt: skip
                try:
                    await ipr.link("del", index=have.index)
                except NetlinkError as exc:
                    raise _fail(network_id, name, "cannot replace it", exc) from None
                changes.append(f"removed {name} (was VNI {have.vni} from {have.local})")
                msg = None
        if msg is None:
            try:
                await ipr.link("add", ifname=name, kind="vxlan", mtu=mtu,
                               **_vxlan_spec(vni, local_ip, under_index, group_ip))  # fmt: skip
            except NetlinkError as exc:
                raise _fail(network_id, name, "cannot create it", exc) from None
            disable_ipv6(netns, name)
            changes.append(f"created {name}")
            msg = await _get(ipr, name)
        await _enslave(ipr, network_id, msg, bridge, mtu, changes)
        if group_ip is None:  # with a group, no flooding entries (a new group re-creates it)
            await _converge_peers(ipr, network_id, name, msg["index"], wanted_peers, changes)
    finally:
        ipr.close()
    return changes


async def _converge_peers(
    ipr: AsyncIPRoute,
    network: str,
    name: str,
    index: int,
    wanted: frozenset[IPAddress],
    changes: list[str],
) -> None:
    have = await _peers(ipr, index)
    for peer in sorted(wanted - have, key=str):
        try:
            await ipr.fdb("append", ifindex=index, lladdr=ZERO_MAC, dst=str(peer))
        except NetlinkError as exc:
            raise _fail(network, name, f"cannot add flooding to {peer}", exc) from None
        changes.append(f"{name} flood to {peer}")
    for peer in sorted(have - wanted, key=str):
        try:
            await ipr.fdb("del", ifindex=index, lladdr=ZERO_MAC, dst=str(peer))
        except NetlinkError as exc:
            if exc.code != errno.ENOENT:
                raise _fail(network, name, f"cannot remove flooding to {peer}", exc) from None
        changes.append(f"{name} no longer floods to {peer}")


async def ensure_flat_network(
    netns: str | None, network_id: str, mtu: int, interface: str
) -> list[str]:
    """The network's bridge with the physical ``interface`` on it (its MTU is not changed:
    the interface is the node's, not this module's). Returns what was changed."""
    _check_mtu(network_id, mtu)
    changes: list[str] = []
    ipr = await _open(netns, network_id, interface)
    try:
        links = await _named(ipr, interface, bridge_name(network_id))
        msg = links.get(interface)
        if msg is None:
            raise L2Error(f"network {network_id}: device {interface}: no such interface")
        if _kind(msg) == "bridge" or interface.startswith(OUR_PREFIXES):
            raise L2Error(f"network {network_id}: device {interface}: not a physical interface")
        bridge = await _ensure_bridge(ipr, netns, network_id, mtu, links, changes)
        master = msg.get("master")
        if master not in (None, bridge):
            owner = next(iter(await ipr.link("get", index=master)))
            raise L2Error(f"network {network_id}: device {interface}: already on "
                          f"{owner.get('ifname', master)}")  # fmt: skip
        await _enslave(ipr, network_id, msg, bridge, None, changes)
    finally:
        ipr.close()
    return changes


async def plug_port(
    netns: str | None, network_id: str, port_id: str, peer: str, mtu: int
) -> PluggedPort:
    """A veth pair for the port: ``tap<port>`` on the network's bridge (which must exist),
    ``peer`` handed back for the caller to move into its namespace. Both ends get ``mtu``.

    Plugging again keeps the pair: the tap is put back on the bridge with its MTU, and
    ``peer_index`` is None once the peer has been moved away.
    """
    _check_mtu(network_id, mtu)
    tap = tap_name(port_id)
    if not peer or len(peer) > IFNAMSIZ or "/" in peer or any(c.isspace() for c in peer):
        raise L2Error(f"network {network_id}: device {peer!r}: not a valid interface name")
    if peer.startswith(OUR_PREFIXES):
        raise L2Error(f"network {network_id}: device {peer}: the name is taken by bridges, "
                      "VXLAN devices and taps")  # fmt: skip
    changes: list[str] = []
    ipr = await _open(netns, network_id, tap)
    try:
        links = await _named(ipr, bridge_name(network_id), tap, peer)
        bridge_msg = links.get(bridge_name(network_id))
        if bridge_msg is None or _kind(bridge_msg) != "bridge":
            raise L2Error(f"network {network_id}: device {tap}: no bridge "
                          f"{bridge_name(network_id)} to plug into")  # fmt: skip
        msg = links.get(tap)
        if msg is not None and _kind(msg) != "veth":
            raise _wrong_kind(network_id, tap, msg, "veth")
        if msg is None:
            if peer in links:
                raise L2Error(f"network {network_id}: device {peer}: already exists")
            try:
                await ipr.link("add", ifname=tap, kind="veth", mtu=mtu,
                               peer={"ifname": peer, "mtu": mtu})  # fmt: skip
            except NetlinkError as exc:
                what = f"cannot create the veth pair with {peer}"
                raise _fail(network_id, tap, what, exc) from None
            disable_ipv6(netns, tap)
            changes.append(f"created {tap} with {peer}")
            links = await _named(ipr, tap, peer)
            msg = links[tap]
        await _enslave(ipr, network_id, msg, bridge_msg["index"], mtu, changes)
        peer_msg, peer_index = links.get(peer), None
        if peer_msg is not None:
            if peer_msg.get("link") != msg["index"]:
                raise L2Error(f"network {network_id}: device {peer}: exists, not {tap}'s peer")
            peer_index = peer_msg["index"]
        return PluggedPort(tap, peer, peer_index, tuple(changes))
    finally:
        ipr.close()


async def attach_tap(
    netns: str | None, network_id: str, port_id: str, mtu: int
) -> list[str] | None:
    """Put the port's existing ``tap<port>`` on the network's bridge (which must exist),
    with ``mtu``, up: a compute node's side, where the hypervisor (here the lab's
    ``vm create``, as Nova with libvirt) makes the tap and the agent only wires it, as
    Neutron's linuxbridge agent does. None while the tap does not exist yet; otherwise what
    was changed (empty: it was already so)."""
    _check_mtu(network_id, mtu)
    tap = tap_name(port_id)
    ipr = await _open(netns, network_id, tap)
    try:
        links = await _named(ipr, tap, bridge_name(network_id))
        msg = links.get(tap)
        if msg is None:
            return None
        bridge_msg = links.get(bridge_name(network_id))
        if bridge_msg is None or _kind(bridge_msg) != "bridge":
            raise L2Error(f"network {network_id}: device {tap}: no bridge "
                          f"{bridge_name(network_id)} to plug into")  # fmt: skip
        if _kind(msg) not in ("veth", "tun"):
            raise _wrong_kind(network_id, tap, msg, "a veth or tap device")
        changes: list[str] = []
        await _enslave(ipr, network_id, msg, bridge_msg["index"], mtu, changes)
        return changes
    finally:
        ipr.close()


async def unplug_port(netns: str | None, network_id: str, port_id: str) -> bool:
    """Remove the port's veth pair (both ends go); False if it was not there."""
    tap = tap_name(port_id)
    ipr = await _open(netns, network_id, tap)
    try:
        msg = (await _named(ipr, tap)).get(tap)
        if msg is None:
            return False
        if _kind(msg) != "veth":
            raise _wrong_kind(network_id, tap, msg, "veth")
        await _delete(ipr, network_id, tap, msg["index"])
        return True
    finally:
        ipr.close()


async def remove_network(netns: str | None, network_id: str, vni: int | None = None) -> list[str]:
    """Remove the network's bridge, the taps still on it, and ``vxlan-<vni>`` if given.

    A flat network's physical interface is only released. Returns what was removed.
    """
    name = bridge_name(network_id)
    removed: list[str] = []
    ipr = await _open(netns, network_id, name)
    try:
        links = await _links(ipr)
        msg = links.get(name)
        if msg is not None and _kind(msg) != "bridge":
            raise _wrong_kind(network_id, name, msg, "a bridge")
        if vni is not None:
            vx = links.get(vxlan_name(vni))
            if vx is not None and _kind(vx) == "vxlan":
                if msg is not None and vx.get("master") not in (None, msg["index"]):
                    raise _fail(network_id, vxlan_name(vni), "is on another bridge: left alone")
                await _delete(ipr, network_id, vxlan_name(vni), vx["index"])
                removed.append(vxlan_name(vni))
        if msg is not None:
            for tap, tap_msg in links.items():
                if tap.startswith(TAP_PREFIX) and tap_msg.get("master") == msg["index"]:
                    await _delete(ipr, network_id, tap, tap_msg["index"])
                    removed.append(tap)
            await _delete(ipr, network_id, name, msg["index"])
            removed.append(name)
    finally:
        ipr.close()
    return removed


async def _delete(ipr: AsyncIPRoute, network: str, name: str, index: int) -> None:
    try:
        await ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise _fail(network, name, "cannot remove it", exc) from None
