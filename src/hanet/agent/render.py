"""An HA router's document, as the server's agents' protocol gives it, rendered into the
vrrpd control socket's version 1 instance for this node: what Neutron's L3 agent writes
into each HA router's keepalived.conf (neutron/agent/l3/ha_router.py and
neutron/agent/linux/keepalived.py; ../shared/reference/neutron-agents.md), said to the
node's single vrrpd instead.

Pure: no I/O. Everything the document says is checked; a document that is malformed or
cannot be realised raises ``RenderError`` naming the router and the field, never another
exception, so the agent can put that one router in ERROR and go on with the others.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hanet.agent.errors import RouterError
from hanet.vrrpd.schema import SchemaError, parse_instance

# Neutron's device names: a prefix and the port id, cut to LINUX_DEV_LEN (14) characters
# so that a 2-character suffix still fits IFNAMSIZ (neutron/common/constants.py;
# get_internal_device_name / get_external_device_name in neutron/agent/l3/router_info.py,
# get_ha_device_name in ha_router.py). The prefixes are namespaces.INTERNAL_DEV_PREFIX,
# EXTERNAL_DEV_PREFIX and ha_router.HA_DEV_PREFIX.
INTERNAL_PREFIX = "qr-"
EXTERNAL_PREFIX = "qg-"
HA_PREFIX = "ha-"
DEVICE_NAME_LENGTH = 14
NAMESPACE_PREFIX = "qrouter-"  # neutron/agent/l3/namespaces.py NS_PREFIX
INSTANCE_PREFIX = "router-"

# Neutron's defaults: ha_vrrp_advert_int 2 s, HA_DEFAULT_PRIORITY 50, garp_master_delay 60.
NEUTRON_ADVERT_INT = 2.0
NEUTRON_PRIORITY = 50
NEUTRON_GARP_DELAY = 60.0

ROUTER_ID = re.compile(r"^[A-Za-z0-9-]{1,57}$")  # "router-" + id fits an instance name (64)
PORT_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
HOST = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
UNKNOWN = "?"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RenderError(RouterError):
    """A router document that cannot become a VRRP instance; says which router and field."""


@dataclass(frozen=True)
class AgentConfig:
    """The deployment's VRRP settings (the agent's configuration, as Neutron's
    ha_vrrp_advert_int). The lab and the benchmark use version 3 at 0.1 s."""

    advert_int: float = NEUTRON_ADVERT_INT
    version: int = 3
    priority: int = NEUTRON_PRIORITY
    garp_repeat: int = 5  # keepalived's garp_master_repeat default
    garp_delay: float = NEUTRON_GARP_DELAY  # keepalived's garp_master_delay: a second burst
    ipv6_link_local: bool = True  # each qr-/qg- port's fe80:: address follows mastership
    unicast: bool = False  # VRRP to ha_peers' addresses instead of multicast


@dataclass(frozen=True)
class Node:
    """This node: its host name (as it registered with the server), whether several nodes
    share one machine's namespaces (the lab: router namespaces then carry the host name),
    and the deployment's VRRP settings."""

    host: str
    shared_machine: bool = False
    config: AgentConfig = field(default_factory=AgentConfig)

    def __post_init__(self) -> None:
        if not HOST.fullmatch(self.host):
            raise ValueError(f"host: {self.host!r} is not 1-64 of [A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Rendered:
    """One router's instance: its name in vrrpd and the version 1 instance object."""

    router_id: str
    name: str
    entry: dict[str, Any]


# Names -----------------------------------------------------------------------------------


def device_name(prefix: str, port_id: str) -> str:
    """Neutron's name for a router port's device: ``qr-`` + the first 11 characters of
    the port id. Inside the router's own namespace, so nodes on one machine never clash."""
    return (prefix + port_id)[:DEVICE_NAME_LENGTH]


def namespace_name(router_id: str, host: str | None = None) -> str:
    """``qrouter-<id>``; with a host, ``qrouter-<id>@<host>``, as Neutron's fullstack tests
    name the namespaces of several agents on one machine (neutron/tests/common/agents/
    l3_agent.py appends ``@<test_namespace_suffix>``)."""
    name = NAMESPACE_PREFIX + router_id
    return f"{name}@{host}" if host else name


def instance_name(router_id: str) -> str:
    return INSTANCE_PREFIX + router_id


def router_of(instance: str) -> str | None:
    """The router an instance name belongs to; None for an instance that is no router's
    (one of vrrpd's file instances)."""
    if instance.startswith(INSTANCE_PREFIX) and ROUTER_ID.fullmatch(
        instance[len(INSTANCE_PREFIX) :]
    ):
        return instance[len(INSTANCE_PREFIX) :]
    return None


def primary_vip(vrid: int) -> str:
    """Neutron's primary VIP: never changes, carried in the adverts, on the ha- device; the
    agent learns the router's state from it, not from the real addresses."""
    return f"169.254.0.{vrid}/24"


def link_local(mac: str) -> str:
    """The EUI-64 fe80:: address of a MAC (Neutron's ip_lib.get_ipv6_lladdr)."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    suffix = int.from_bytes(bytes(eui), "big")
    return f"{ipaddress.IPv6Address((0xFE80 << 112) | suffix)}/64"


# Rendering -------------------------------------------------------------------------------


def render(document: Any, node: Node) -> Rendered | None:
    """The router's instance on this node, or None if it has none (a legacy router, or one
    whose admin state is down: Neutron's agent removes such a router)."""
    router = _router_id(document)
    check = _Checker(router)
    if check.boolean(document, "admin_state_up", default=True) is False:
        return None
    if not check.boolean(document, "ha", default=False):
        return None
    config = node.config
    vrid = check.integer(document.get("vrid"), "vrid", 1, 254)
    ha_port = document.get("ha_port")
    if ha_port is None:
        raise RenderError(router, "ha_port", f"no HA port for host {node.host}")
    ha = _Port(check, ha_port, "ha_port", HA_PREFIX)
    devices: dict[str, str] = {ha.device: "ha_port"}
    addresses: list[Any] = [primary_vip(vrid)]
    routes: list[dict[str, Any]] = []

    interfaces = check.items(document.get("interfaces", []), "interfaces")
    for index, raw in enumerate(interfaces):
        port = _Port(check, raw, f"interfaces[{index}]", INTERNAL_PREFIX)
        port.claim(devices)
        addresses += port.addresses(config.ipv6_link_local)

    gateway = None
    if document.get("gateway") is not None:
        gateway = _Port(check, document["gateway"], "gateway", EXTERNAL_PREFIX)
        gateway.claim(devices)
        addresses += gateway.addresses(config.ipv6_link_local)
        routes += gateway.gateway_routes()

    floating = check.items(document.get("floating_ips", []), "floating_ips")
    for index, raw in enumerate(floating):
        where = f"floating_ips[{index}]"
        item = check.mapping(raw, where)
        ip = check.ip(item.get("floating_ip_address"), f"{where}.floating_ip_address")
        if gateway is None:
            raise RenderError(router, where, f"floating IP {ip} but the router has no gateway")
        # A /32 (/128) on the gateway device, as Neutron's HaRouter.add_floating_ip.
        addresses.append(_excluded(f"{ip}/{ip.max_prefixlen}", gateway.device))

    for index, raw in enumerate(check.items(document.get("routes", []), "routes")):
        routes.append(_extra_route(check, raw, f"routes[{index}]"))

    entry: dict[str, Any] = {
        "interface": ha.device,
        "vrid": vrid,
        "priority": config.priority,
        "nopreempt": True,
        "version": config.version,
        "advert_int": config.advert_int,
        "netns": namespace_name(router, node.host if node.shared_machine else None),
        "addresses": addresses,
        "garp_repeat": config.garp_repeat,
        "garp_refresh_delay": config.garp_delay,
        # The project's HA network carries every router's adverts to every ha- port.
        "vrid_filter": True,
    }
    if routes:
        entry["routes"] = routes
    if config.unicast:
        entry["unicast"] = _unicast(check, document, ha, node)
    name = instance_name(router)
    try:
        parse_instance(name, entry, "instance")
    except SchemaError as exc:  # what the checks above missed: still this router's error
        raise RenderError(router, "document", str(exc)) from None
    return Rendered(router, name, entry)


def render_all(
    documents: Iterable[Any], node: Node
) -> tuple[dict[str, dict[str, Any]], dict[str, RenderError]]:
    """Every router's instance on this node (a ``sync`` request's ``instances``), and the
    routers that cannot have one, by id: one bad router never keeps the others out."""
    instances: dict[str, dict[str, Any]] = {}
    errors: dict[str, RenderError] = {}
    for document in documents:
        try:
            rendered = render(document, node)
        except RenderError as exc:
            errors[exc.router] = exc
            continue
        if rendered is None:
            continue
        if rendered.router_id in errors or rendered.name in instances:
            errors[rendered.router_id] = RenderError(rendered.router_id, "id", "given twice")
            instances.pop(rendered.name, None)
            continue
        instances[rendered.name] = rendered.entry
    return instances, errors


# Checks ----------------------------------------------------------------------------------


def _router_id(document: Any) -> str:
    if not isinstance(document, dict):
        raise RenderError(UNKNOWN, "document", f"expected an object, got {type(document).__name__}")
    router = document.get("id")
    if not isinstance(router, str) or not ROUTER_ID.fullmatch(router):
        raise RenderError(UNKNOWN, "id", "expected a router id (1-57 of [A-Za-z0-9-])")
    return router


class _Checker:
    """Typed reads of one router's document; every failure is a RenderError naming it."""

    def __init__(self, router: str) -> None:
        self.router = router

    def fail(self, where: str, reason: str) -> RenderError:
        return RenderError(self.router, where, reason)

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected an object, got {_kind(value)}")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        return value

    def boolean(self, document: dict[str, Any], key: str, default: bool) -> bool:
        value = document.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {_kind(value)}")
        return value

    def integer(self, value: Any, where: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer {low}..{high}, got {_kind(value)}")
        if not low <= value <= high:
            raise self.fail(where, f"{value} is outside {low}..{high}")
        return value

    def string(self, value: Any, where: str, pattern: re.Pattern[str], what: str) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise self.fail(where, f"expected {what}")
        return value

    def ip(self, value: Any, where: str) -> IPAddress:
        if not isinstance(value, str):
            raise self.fail(where, f"expected an IP address, got {_kind(value)}")
        try:
            return ipaddress.ip_address(value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def network(self, value: Any, where: str) -> IPNetwork:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a network such as 10.0.0.0/24, got {_kind(value)}")
        try:
            return ipaddress.ip_network(value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None


@dataclass(frozen=True)
class _FixedIP:
    ip: IPAddress
    network: IPNetwork
    gateway: IPAddress | None


class _Port:
    """A router port of the document: its device name and checked addresses."""

    def __init__(self, check: _Checker, raw: Any, where: str, prefix: str) -> None:
        self.check, self.where = check, where
        port = check.mapping(raw, where)
        self.id = check.string(port.get("id"), f"{where}.id", PORT_ID, "a port id")
        self.device = device_name(prefix, self.id)
        self.mac = check.string(
            port.get("mac_address"), f"{where}.mac_address", MAC, "a MAC address"
        )
        self.fixed_ips = [
            self._fixed_ip(item, f"{where}.fixed_ips[{index}]")
            for index, item in enumerate(check.items(port.get("fixed_ips"), f"{where}.fixed_ips"))
        ]
        if not self.fixed_ips:
            raise check.fail(f"{where}.fixed_ips", "the port has no address")

    def _fixed_ip(self, raw: Any, where: str) -> _FixedIP:
        check = self.check
        item = check.mapping(raw, where)
        ip = check.ip(item.get("ip_address"), f"{where}.ip_address")
        network = check.network(item.get("cidr"), f"{where}.cidr")
        if ip.version != network.version or ip not in network:
            raise check.fail(f"{where}.ip_address", f"{ip} is not in its subnet {network}")
        if "prefixlen" in item:
            prefixlen = check.integer(item["prefixlen"], f"{where}.prefixlen", 0, 128)
            if prefixlen != network.prefixlen:
                raise check.fail(f"{where}.prefixlen", f"{prefixlen} but the subnet is {network}")
        gateway = None
        if item.get("gateway_ip") is not None:
            gateway = check.ip(item["gateway_ip"], f"{where}.gateway_ip")
            if gateway.version != network.version:
                raise check.fail(f"{where}.gateway_ip", f"{gateway} is not of {network}'s family")
        return _FixedIP(ip, network, gateway)

    def claim(self, devices: dict[str, str]) -> None:
        """Two ports whose ids share their first 11 characters would get one device."""
        if self.device in devices:
            raise self.check.fail(
                f"{self.where}.id", f"device {self.device} is also {devices[self.device]}'s"
            )
        devices[self.device] = self.where

    def addresses(self, link_locals: bool) -> list[dict[str, Any]]:
        """Every real address is excluded (not in the adverts) and placed on the master
        only: Neutron keeps them out of virtual_ipaddress because changing that and
        reloading could drop the router's default gateway."""
        result = [_excluded(f"{f.ip}/{f.network.prefixlen}", self.device) for f in self.fixed_ips]
        # Neutron's _disable_ipv6_addressing_on_interface: keepalived owns the link-local.
        # Only on a port with an IPv6 subnet: adding and removing it makes the kernel send
        # MLD reports from the router's MAC, up to a second later, and an old master's
        # report after the new master's GARPs moves the MAC back on every bridge (a
        # blackhole until the new master sends again; seen at vrrpd restarts in the lab).
        if link_locals and any(f.ip.version == 6 for f in self.fixed_ips):
            result.append(_excluded(link_local(self.mac), self.device) | {"scope": "link"})
        return result

    def gateway_routes(self) -> list[dict[str, Any]]:
        """A default route per family via the first subnet's gateway that has one, and an
        on-link route first to a gateway outside the subnet (Neutron's
        _add_default_gw_virtual_route)."""
        routes: list[dict[str, Any]] = []
        families: set[int] = set()
        for fixed in self.fixed_ips:
            gateway = fixed.gateway
            if gateway is None or gateway.version in families:
                continue
            families.add(gateway.version)
            if gateway not in fixed.network:
                routes.append(
                    {"to": f"{gateway}/{gateway.max_prefixlen}", "dev": self.device,
                     "scope": "link"}
                )  # fmt: skip
            default = "default" if gateway.version == 4 else "::/0"
            routes.append({"to": default, "via": str(gateway), "dev": self.device})
        return routes


def _excluded(address: str, device: str) -> dict[str, Any]:
    return {"address": address, "dev": device, "advertised": False}


def _extra_route(check: _Checker, raw: Any, where: str) -> dict[str, Any]:
    """A router's extra route (destination, nexthop), a virtual route as Neutron's
    HaRouter.routes_updated makes it: no device, the kernel finds it from the nexthop."""
    route = check.mapping(raw, where)
    destination = check.network(route.get("destination"), f"{where}.destination")
    nexthop = check.ip(route.get("nexthop"), f"{where}.nexthop")
    if nexthop.version != destination.version:
        raise check.fail(f"{where}.nexthop", f"{nexthop} is not of {destination}'s family")
    return {"to": str(destination), "via": str(nexthop)}


def _unicast(check: _Checker, document: dict[str, Any], ha: _Port, node: Node) -> dict[str, Any]:
    peers = []
    for index, raw in enumerate(check.items(document.get("ha_peers"), "ha_peers")):
        peer = check.mapping(raw, f"ha_peers[{index}]")
        if peer.get("host") == node.host:
            raise check.fail(f"ha_peers[{index}].host", f"{node.host} is this node")
        ip = check.ip(peer.get("ip_address"), f"ha_peers[{index}].ip_address")
        if ip.version != 4:
            raise check.fail(f"ha_peers[{index}].ip_address", f"{ip}: the VIPs are IPv4")
        peers.append(str(ip))
    if not peers:
        raise check.fail("ha_peers", "unicast VRRP needs at least one peer")
    source = ha.fixed_ips[0].ip
    if source.version != 4:
        raise check.fail("ha_port.fixed_ips[0].ip_address", f"{source}: the VIPs are IPv4")
    return {"source": str(source), "peers": peers}


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)
