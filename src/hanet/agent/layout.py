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
from hanet.agent.nat import FloatingIp, RouterNat
from hanet.agent.render import (
    EXTERNAL_PREFIX,
    HA_PREFIX,
    INTERNAL_PREFIX,
    Node,
    Rendered,
    device_name,
    namespace_name,
    render,
)

NETWORK_TYPES = ("vxlan", "flat", "vlan")


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

    port_id = field("id", str)
    network_type = field("network_type", str)
    if network_type not in NETWORK_TYPES:
        raise LayoutError(router, f"{where}.network_type", f"{network_type!r} is not supported")
    segmentation_id = field("segmentation_id", int, optional=True)
    physical_network = field("physical_network", str, optional=True)
    if network_type == "vxlan" and segmentation_id is None:
        raise LayoutError(router, f"{where}.segmentation_id", "a VXLAN network needs its VNI")
    if network_type in ("flat", "vlan") and physical_network is None:
        raise LayoutError(
            router, f"{where}.physical_network", f"a {network_type} network needs one"
        )
    mtu = field("mtu", int)
    addresses = []
    if own:
        for index, fixed in enumerate(field("fixed_ips", list)):
            at = f"{where}.fixed_ips[{index}]"
            try:
                ip = ipaddress.ip_address(fixed["ip_address"])
                network = ipaddress.ip_network(fixed["cidr"])
            except (KeyError, TypeError, ValueError) as exc:
                raise LayoutError(router, at, f"not an address in a subnet: {exc}") from None
            addresses.append(f"{ip}/{network.prefixlen}")
    return PortWiring(
        port_id=port_id,
        device=device_name(prefix, port_id),
        mac=field("mac_address", str),
        network_id=field("network_id", str),
        network_type=network_type,
        physical_network=physical_network,
        segmentation_id=segmentation_id,
        mtu=mtu,
        addresses=tuple(addresses),
    )


def _first_v4(port: dict[str, Any]) -> tuple[str | None, str | None]:
    """(address, gateway) of the port's first IPv4 fixed IP."""
    for fixed in port.get("fixed_ips") or []:
        if isinstance(fixed, dict) and ":" not in str(fixed.get("ip_address", ":")):
            return str(fixed["ip_address"]), fixed.get("gateway_ip")
    return None, None


def layout(document: Any, node: Node) -> RouterLayout | None:
    """The router's layout on this node; None for a router that should not run here (its
    admin state is down: Neutron's agent removes such a router)."""
    instance = render(document, node)  # checks the document; raises RenderError
    router = document["id"]
    if document.get("admin_state_up", True) is False:
        return None
    ha = bool(document.get("ha"))
    legacy = not ha
    ports: list[PortWiring] = []
    for index, raw in enumerate(document.get("interfaces") or []):
        ports.append(port_wiring(router, raw, f"interfaces[{index}]", INTERNAL_PREFIX, legacy))
    gateway = document.get("gateway")
    routes: list[dict[str, Any]] = []
    gateway_device = gateway_address = None
    if gateway is not None:
        wiring = port_wiring(router, gateway, "gateway", EXTERNAL_PREFIX, legacy)
        ports.append(wiring)
        gateway_device = wiring.device
        gateway_address, gateway_ip = _first_v4(gateway)
        if legacy and gateway_ip:
            routes.append({"to": "default", "via": gateway_ip, "dev": wiring.device})
    if ha:
        ports.append(port_wiring(router, document.get("ha_port"), "ha_port", HA_PREFIX, True))
    floating = []
    for index, raw in enumerate(document.get("floating_ips") or []):
        if not isinstance(raw, dict):
            raise LayoutError(router, f"floating_ips[{index}]", "expected an object")
        floating.append(FloatingIp(str(raw.get("floating_ip_address")),
                                   str(raw.get("fixed_ip_address"))))  # fmt: skip
    if legacy:
        for index, raw in enumerate(document.get("routes") or []):
            if not isinstance(raw, dict):
                raise LayoutError(router, f"routes[{index}]", "expected an object")
            routes.append({"to": raw.get("destination"), "via": raw.get("nexthop")})
    internal = [
        str(fixed.get("cidr"))
        for raw in document.get("interfaces") or []
        for fixed in raw.get("fixed_ips") or []
        if ":" not in str(fixed.get("cidr", ":"))
    ]
    nat = RouterNat(
        router=router,
        gateway_device=gateway_device,
        gateway_address=gateway_address,
        enable_snat=bool(document.get("enable_snat", True)),
        internal_subnets=tuple(dict.fromkeys(internal)),
        floating_ips=tuple(floating),
    )
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
