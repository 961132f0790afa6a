"""What one router needs on this node, from its document: the namespace, each port's wiring
(device, MAC, network segment, MTU), the addresses and routes the agent sets itself, the
NAT table and, for an HA router, the VRRP instance (hanet.agent.render) that owns the rest.

Pure. A document that cannot be realised raises a ``RouterError`` subclass naming the
router and the field, so the agent puts that router in ERROR and goes on with the others.

Who sets what, as in Neutron's L3 agent:
- HA router: the agent sets the ``ha-`` port's own address; vrrpd owns the ``qr-``/``qg-``
  addresses, floating IPs, the default route and extra routes, on the master only.
- legacy router: the agent sets all of them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from hanet.agent.errors import RouterError
from hanet.agent.nat import FloatingIp, RouterNat, ruleset
from hanet.agent.render import (
    EXTERNAL_PREFIX,
    HA_PREFIX,
    INTERNAL_PREFIX,
    MAC,
    PORT_ID,
    Node,
    Rendered,
    device_name,
    namespace_name,
    render,
)

NETWORK_TYPES = ("vxlan", "flat", "vlan")
# What the kernel takes: a VNI is 24 bits, a VLAN id 1..4094, an MTU at least IPv4's 68.
SEGMENTS = {"vxlan": (0, (1 << 24) - 1, "VNI"), "vlan": (1, 4094, "VLAN id")}
MTU = (68, 65535)


class LayoutError(RouterError):
    """A router document whose ports cannot be wired on this node."""


@dataclass(frozen=True)
class PortWiring:
    port_id: str
    device: str  # in the router's namespace
    mac: str
    network_id: str
    network_type: str
    physical_network: str | None
    segmentation_id: int | None
    mtu: int
    addresses: tuple[str, ...]  # "ip/prefixlen", for the agent to set (see the module doc)
    # Whether IPv6 is routed on the port. Without it IPv6 is off on the device: a standby's
    # device with the master's MAC must send nothing, and an IPv6-enabled forwarding device
    # sends MLD reports (all-routers groups) that move the MAC to the standby on bridges.
    ipv6: bool = False


@dataclass(frozen=True)
class RouterLayout:
    router_id: str
    namespace: str
    ha: bool
    ports: tuple[PortWiring, ...]
    routes: tuple[dict[str, Any], ...]  # legacy routers only: {"to", "via", "dev"?}
    nat: RouterNat
    instance: Rendered | None  # the VRRP instance of an HA router
    forced_standby: bool


def port_wiring(router: str, raw: Any, where: str, prefix: str, own: bool) -> PortWiring:
    if not isinstance(raw, dict):
        raise LayoutError(router, where, "expected an object")

    def field(key: str, kinds: type | tuple[type, ...], optional: bool = False) -> Any:
        value = raw.get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise LayoutError(router, f"{where}.{key}", f"missing or of the wrong type: {value!r}")
        return value

    # The id makes the device name and the MAC is set on it: both go to the kernel.
    port_id = field("id", str)
    if not PORT_ID.fullmatch(port_id):
        raise LayoutError(router, f"{where}.id", f"{port_id!r} is not a port id")
    mac = field("mac_address", str)
    if not MAC.fullmatch(mac):
        raise LayoutError(router, f"{where}.mac_address", f"{mac!r} is not a MAC address")
    network_type = field("network_type", str)
    if network_type not in NETWORK_TYPES:
        raise LayoutError(router, f"{where}.network_type", f"{network_type!r} is not supported")
    segmentation_id = field("segmentation_id", int, optional=True)
    physical_network = field("physical_network", str, optional=True)
    if network_type in SEGMENTS:
        low, high, what = SEGMENTS[network_type]
        if segmentation_id is None:
            raise LayoutError(
                router, f"{where}.segmentation_id", f"a {network_type} network needs its {what}"
            )
        if not low <= segmentation_id <= high:
            raise LayoutError(
                router, f"{where}.segmentation_id", f"{segmentation_id} is outside {low}..{high}"
            )
    if network_type in ("flat", "vlan") and physical_network is None:
        raise LayoutError(
            router, f"{where}.physical_network", f"a {network_type} network needs one"
        )
    mtu = field("mtu", int)
    if not MTU[0] <= mtu <= MTU[1]:
        raise LayoutError(router, f"{where}.mtu", f"{mtu} is outside {MTU[0]}..{MTU[1]}")
    addresses = []
    if own:
        for index, fixed in enumerate(field("fixed_ips", list)):
            ip, network = _fixed_ip(router, fixed, f"{where}.fixed_ips[{index}]")
            addresses.append(f"{ip}/{network.prefixlen}")
    fixed_ips = raw.get("fixed_ips")
    ipv6 = isinstance(fixed_ips, list) and any(
        isinstance(f, dict) and ":" in str(f.get("ip_address", "")) for f in fixed_ips
    )
    return PortWiring(
        port_id=port_id,
        device=device_name(prefix, port_id),
        mac=mac,
        network_id=field("network_id", str),
        network_type=network_type,
        physical_network=physical_network,
        segmentation_id=segmentation_id,
        mtu=mtu,
        addresses=tuple(addresses),
        ipv6=ipv6,
    )


def _ip(router: str, value: Any, where: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, str):  # ip_address(5) would be 0.0.0.5
        raise LayoutError(router, where, f"expected an IP address, got {value!r}")
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise LayoutError(router, where, str(exc)) from None


def _network(router: str, value: Any, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise LayoutError(router, where, f"expected a network such as 10.0.0.0/24, got {value!r}")
    try:
        return ipaddress.ip_network(value)
    except ValueError as exc:
        raise LayoutError(router, where, str(exc)) from None


def _items(router: str, value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise LayoutError(router, where, f"expected a list, got {type(value).__name__}")
    return value


def _fixed_ip(
    router: str, fixed: Any, where: str
) -> tuple[
    ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.IPv4Network | ipaddress.IPv6Network
]:
    """A fixed IP the agent sets itself: an address in its subnet, whose gateway (if any)
    is of the subnet's family (as hanet.agent.render checks an HA router's)."""
    if not isinstance(fixed, dict):
        raise LayoutError(router, where, "expected an object")
    ip = _ip(router, fixed.get("ip_address"), f"{where}.ip_address")
    network = _network(router, fixed.get("cidr"), f"{where}.cidr")
    if ip.version != network.version or ip not in network:
        raise LayoutError(router, f"{where}.ip_address", f"{ip} is not in its subnet {network}")
    if fixed.get("gateway_ip") is not None:
        gateway = _ip(router, fixed["gateway_ip"], f"{where}.gateway_ip")
        if gateway.version != network.version:
            raise LayoutError(
                router, f"{where}.gateway_ip", f"{gateway} is not of {network}'s family"
            )
    return ip, network


def _first_v4(port: dict[str, Any]) -> tuple[str | None, str | None]:
    """(address, gateway) of the port's first IPv4 fixed IP (checked by then)."""
    for fixed in port.get("fixed_ips") or []:
        if isinstance(fixed, dict) and ":" not in str(fixed.get("ip_address", ":")):
            return str(fixed["ip_address"]), fixed.get("gateway_ip")
    return None, None


def _gateway_routes(router: str, gateway: dict[str, Any], device: str) -> list[dict[str, Any]]:
    """A legacy router's default route per family, via the first gateway subnet of that
    family with a gateway; an on-link route to a gateway outside its subnet first (as
    Neutron's _add_default_gw_virtual_route, and hanet.agent.render for HA routers)."""
    routes: list[dict[str, Any]] = []
    families: set[int] = set()
    for index, fixed in enumerate(gateway.get("fixed_ips") or []):
        if fixed.get("gateway_ip") is None:
            continue
        where = f"gateway.fixed_ips[{index}]"
        _, network = _fixed_ip(router, fixed, where)
        via = _ip(router, fixed["gateway_ip"], f"{where}.gateway_ip")
        if via.version in families:
            continue
        families.add(via.version)
        if via not in network:
            routes.append({"to": f"{via}/{via.max_prefixlen}", "dev": device, "scope": "link"})
        routes.append(
            {"to": "0.0.0.0/0" if via.version == 4 else "::/0", "via": str(via), "dev": device}
        )
    return routes


def _claim(router: str, devices: dict[str, str], wiring: PortWiring, where: str) -> PortWiring:
    """Two ports whose ids share their first 11 characters would be one device."""
    if wiring.device in devices:
        raise LayoutError(
            router, f"{where}.id", f"device {wiring.device} is also {devices[wiring.device]}'s"
        )
    devices[wiring.device] = where
    return wiring


def layout(document: Any, node: Node) -> RouterLayout | None:
    """The router's layout on this node; None for a router that should not run here (its
    admin state is down: Neutron's agent removes such a router)."""
    instance = render(document, node)  # checks the document; raises RenderError
    router = document["id"]
    if document.get("admin_state_up", True) is False:
        return None
    # render checked all of an HA router's document; a legacy router's is checked here, as
    # the agent sets its addresses and routes itself.
    ha = document.get("ha") is True
    legacy = not ha
    ports: list[PortWiring] = []
    devices: dict[str, str] = {}
    interfaces = _items(router, document.get("interfaces"), "interfaces")
    for index, raw in enumerate(interfaces):
        where = f"interfaces[{index}]"
        wiring = port_wiring(router, raw, where, INTERNAL_PREFIX, legacy)
        ports.append(_claim(router, devices, wiring, where))
    gateway = document.get("gateway")
    routes: list[dict[str, Any]] = []
    gateway_device = gateway_address = None
    if gateway is not None:
        wiring = port_wiring(router, gateway, "gateway", EXTERNAL_PREFIX, legacy)
        ports.append(_claim(router, devices, wiring, "gateway"))
        gateway_device = wiring.device
        gateway_address, _ = _first_v4(gateway)
        if legacy:
            routes += _gateway_routes(router, gateway, wiring.device)
    if ha:
        wiring = port_wiring(router, document.get("ha_port"), "ha_port", HA_PREFIX, True)
        ports.append(_claim(router, devices, wiring, "ha_port"))
    floating = []
    for index, raw in enumerate(_items(router, document.get("floating_ips"), "floating_ips")):
        if not isinstance(raw, dict):
            raise LayoutError(router, f"floating_ips[{index}]", "expected an object")
        # Checked: a missing address must not become the text "None" (the NAT checks the rest).
        floating_ip, fixed_ip = (
            str(_ip(router, raw.get(key), f"floating_ips[{index}].{key}"))
            for key in ("floating_ip_address", "fixed_ip_address")
        )
        floating.append(FloatingIp(floating_ip, fixed_ip))
    if legacy:
        for index, raw in enumerate(_items(router, document.get("routes"), "routes")):
            where = f"routes[{index}]"
            if not isinstance(raw, dict):
                raise LayoutError(router, where, "expected an object")
            destination = _network(router, raw.get("destination"), f"{where}.destination")
            nexthop = _ip(router, raw.get("nexthop"), f"{where}.nexthop")
            if nexthop.version != destination.version:
                raise LayoutError(
                    router, f"{where}.nexthop", f"{nexthop} is not of {destination}'s family"
                )
            routes.append({"to": str(destination), "via": str(nexthop)})
    internal = [
        str(fixed.get("cidr"))
        for raw in interfaces
        for fixed in raw.get("fixed_ips") or []
        if ":" not in str(fixed.get("cidr", ":"))
    ]
    enable_snat = document.get("enable_snat", True)
    if not isinstance(enable_snat, bool):
        raise LayoutError(router, "enable_snat", f"expected true or false, got {enable_snat!r}")
    nat = RouterNat(
        router=router,
        gateway_device=gateway_device,
        gateway_address=gateway_address,
        enable_snat=enable_snat,
        internal_subnets=tuple(dict.fromkeys(internal)),
        floating_ips=tuple(floating),
    )
    # The NAT's own checks (floating and fixed addresses IPv4, a gateway for floating IPs,
    # ...) now, not when the router is half built: a NatError names the field as here.
    ruleset(nat)
    return RouterLayout(
        router_id=router,
        namespace=namespace_name(router, node.host if node.shared_machine else None),
        ha=ha,
        ports=tuple(ports),
        routes=tuple(routes),
        nat=nat,
        instance=instance,
        forced_standby=document.get("forced_standby") is True,
    )


def floating_addresses(nat: RouterNat) -> tuple[str, ...]:
    """A legacy router's floating IPs, as /32s on the gateway device."""
    return tuple(f"{f.floating_ip_address}/32" for f in nat.floating_ips)
