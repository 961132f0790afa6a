"""What each resource accepts: type, default, whether POST/PUT may set it, who may.

One table per resource, as Neutron's RESOURCE_ATTRIBUTE_MAP: unknown keys are refused,
read-only keys are refused, admin-only keys are refused to projects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hanet.server.api import validate as v
from hanet.server.api.errors import BadRequest, InvalidInput, NotAuthorized

__all__ = ["NotAuthorized", "parse", "parse_interface"]

REQUIRED = object()  # no default: POST must give it
UNSET = object()  # no default, and nothing stored when absent (computed by the handler)


@dataclass(frozen=True)
class Attr:
    convert: v.Converter
    default: Any = UNSET
    post: bool = True
    put: bool = False
    admin: bool = False
    hidden: bool = False  # shown to admins only (Neutron's get_<resource>:<attr> admin_only)


NAME = Attr(v.string(255), "", put=True)
DESCRIPTION = Attr(v.string(255), "", put=True)
PROJECT = Attr(v.string(255), UNSET)
ADMIN_STATE = Attr(v.boolean, True, put=True)

POOL = v.mapping({"start": v.ip_address, "end": v.ip_address}, required=("start", "end"))
HOST_ROUTE = v.mapping(
    {"destination": v.cidr, "nexthop": v.ip_address}, required=("destination", "nexthop")
)
FIXED_IP = v.mapping({"subnet_id": v.uuid_string, "ip_address": v.ip_address})
ADDRESS_PAIR = v.mapping(
    {"ip_address": v.string(64), "mac_address": v.mac_address}, required=("ip_address",)
)
IPV6_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")

NETWORK: dict[str, Attr] = {
    "name": NAME,
    "description": DESCRIPTION,
    "tenant_id": PROJECT,
    "project_id": PROJECT,
    "admin_state_up": ADMIN_STATE,
    "shared": Attr(v.boolean, False, put=True, admin=True),
    "router:external": Attr(v.boolean, False, put=True, admin=True),
    # The MTU and the segment default to what hanet.server.segments draws.
    "mtu": Attr(v.integer(68, 9216), UNSET, put=True),
    "provider:network_type": Attr(
        v.optional(v.one_of("flat", "vlan", "vxlan")), UNSET, admin=True, hidden=True
    ),
    "provider:physical_network": Attr(v.optional(v.string(64)), UNSET, admin=True, hidden=True),
    "provider:segmentation_id": Attr(
        v.optional(v.integer(1, 16777215)), UNSET, admin=True, hidden=True
    ),
    "port_security_enabled": Attr(v.boolean, True, put=True),
    "availability_zone_hints": Attr(v.list_of(v.string(255), 16), UNSET),
}

SUBNET: dict[str, Attr] = {
    "name": NAME,
    "description": DESCRIPTION,
    "tenant_id": PROJECT,
    "project_id": PROJECT,
    "network_id": Attr(v.uuid_string, REQUIRED),
    "ip_version": Attr(v.one_of(4, 6), REQUIRED),
    "cidr": Attr(v.cidr, REQUIRED),
    "gateway_ip": Attr(v.optional(v.ip_address), UNSET, put=True),
    "enable_dhcp": Attr(v.boolean, True, put=True),
    "allocation_pools": Attr(v.list_of(POOL, 256), UNSET, put=True),
    "dns_nameservers": Attr(v.list_of(v.ip_address, 16), [], put=True),
    "host_routes": Attr(v.list_of(HOST_ROUTE, 64), [], put=True),
    "ipv6_ra_mode": Attr(v.optional(v.one_of(*IPV6_MODES)), None),
    "ipv6_address_mode": Attr(v.optional(v.one_of(*IPV6_MODES)), None),
    "subnetpool_id": Attr(v.optional(v.uuid_string), None),
}

PORT: dict[str, Attr] = {
    "name": NAME,
    "description": DESCRIPTION,
    "tenant_id": PROJECT,
    "project_id": PROJECT,
    "network_id": Attr(v.uuid_string, REQUIRED),
    "admin_state_up": ADMIN_STATE,
    "mac_address": Attr(v.mac_address, UNSET, put=True, admin=True),
    "fixed_ips": Attr(v.list_of(FIXED_IP, 64), UNSET, put=True),
    "device_id": Attr(v.string(255), "", put=True),
    "device_owner": Attr(v.string(255), "", put=True),
    "binding:host_id": Attr(v.string(255), "", put=True, admin=True),
    "binding:profile": Attr(v.free_dict, {}, put=True, admin=True),
    "binding:vnic_type": Attr(
        v.one_of("normal", "direct", "macvtap", "baremetal"), "normal", put=True
    ),
    "allowed_address_pairs": Attr(v.list_of(ADDRESS_PAIR, 64), [], put=True),
    "security_groups": Attr(v.list_of(v.uuid_string, 64), [], put=True),
    "port_security_enabled": Attr(v.boolean, True, put=True),
}


def parse(
    resource: str, spec: dict[str, Attr], body: Any, *, creating: bool, is_admin: bool
) -> dict[str, Any]:
    """The request body ``{resource: {...}}`` checked against ``spec``; defaults filled in
    on create. Raises BadRequest / InvalidInput / NotAuthorized naming the field."""
    if not isinstance(body, dict) or set(body) != {resource}:
        raise BadRequest(f"Resource body required: expected one key '{resource}'")
    fields = body[resource]
    if not isinstance(fields, dict):
        raise BadRequest(f"Resource body '{resource}' must be an object")
    unknown = sorted(set(fields) - set(spec))
    if unknown:
        raise BadRequest(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    values: dict[str, Any] = {}
    for name, raw in fields.items():
        attr = spec[name]
        if creating and not attr.post:
            raise BadRequest(f"Attribute '{name}' not allowed in POST")
        if not creating and not attr.put:
            raise BadRequest(f"Cannot update read-only attribute {name}")
        if attr.admin and not is_admin:
            raise NotAuthorized(
                f"(rule:{'create' if creating else 'update'}_{resource}:"
                f"{name}) is disallowed by policy"
            )
        values[name] = attr.convert(name, raw)
    if creating:
        for name, attr in spec.items():
            if name in values:
                continue
            if attr.default is REQUIRED:
                raise InvalidInput(name, "this field is required")
            if attr.default is not UNSET:
                values[name] = attr.default
    return values


def shown(spec: dict[str, Attr], row: dict[str, Any], is_admin: bool) -> dict[str, Any]:
    """``row`` as its reader may see it: without hidden attributes unless admin."""
    if is_admin:
        return row
    return {k: value for k, value in row.items() if not (k in spec and spec[k].hidden)}


GATEWAY_INFO = v.mapping(
    {"network_id": v.uuid_string, "enable_snat": v.boolean,
     "external_fixed_ips": v.list_of(FIXED_IP, 8)},
    required=("network_id",),
)  # fmt: skip
ROUTE = v.mapping({"destination": v.cidr, "nexthop": v.ip_address},
                  required=("destination", "nexthop"))  # fmt: skip

ROUTER: dict[str, Attr] = {
    "name": NAME,
    "description": DESCRIPTION,
    "tenant_id": PROJECT,
    "project_id": PROJECT,
    "admin_state_up": ADMIN_STATE,
    "ha": Attr(v.boolean, UNSET, put=True, admin=True),
    "distributed": Attr(v.boolean, False, admin=True),
    # {} is "no gateway" too: what `openstack router unset --external-gateway` sends.
    "external_gateway_info": Attr(v.optional(v.or_empty(GATEWAY_INFO)), None, put=True),
    "routes": Attr(v.list_of(ROUTE, 64), [], put=True),
    "availability_zone_hints": Attr(v.list_of(v.string(255), 16), []),
}

FLOATINGIP: dict[str, Attr] = {
    "description": DESCRIPTION,
    "tenant_id": PROJECT,
    "project_id": PROJECT,
    "floating_network_id": Attr(v.uuid_string, REQUIRED),
    "floating_ip_address": Attr(v.optional(v.ip_address), None, admin=True),
    "port_id": Attr(v.optional(v.uuid_string), None, put=True),
    "fixed_ip_address": Attr(v.optional(v.ip_address), None, put=True),
}

AGENT: dict[str, Attr] = {
    "admin_state_up": Attr(v.boolean, put=True, post=False),
    "description": Attr(v.string(255), put=True, post=False),
}

INTERFACE = {
    "subnet_id": Attr(v.uuid_string),
    "port_id": Attr(v.uuid_string),
}


def parse_interface(body: Any) -> dict[str, Any]:
    """The body of add_router_interface / remove_router_interface: a subnet or a port."""
    if not isinstance(body, dict):
        raise BadRequest("Bad router request: expected an object with subnet_id or port_id")
    unknown = sorted(set(body) - set(INTERFACE))
    if unknown:
        raise BadRequest(f"Unrecognized attribute(s) '{', '.join(unknown)}'")
    if len(body) != 1:
        raise BadRequest("Bad router request: Either subnet_id or port_id must be specified")
    return {k: INTERFACE[k].convert(k, value) for k, value in body.items()}
