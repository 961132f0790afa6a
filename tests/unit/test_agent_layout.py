"""What hanet-agent builds for one router on its node (hanet.agent.layout), from the
documents a real hanet-server sends: an HA router's ports, NAT and VRRP instance, a legacy
router's addresses and routes; a document that cannot be built is a RouterError naming the
router and the field, never another exception (the agent puts that router alone in ERROR)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hanet.agent.errors import RouterError
from hanet.agent.layout import RouterLayout, floating_addresses, layout
from hanet.agent.nat import FloatingIp, ruleset
from hanet.agent.render import AgentConfig, Node
from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig, Token
from hanet.server.testing import ServerThread

NODE = Node("net0", config=AgentConfig(advert_int=0.1))
TOKENS = {"admin-token": Token("admin-project", "admin")}


@dataclass(frozen=True)
class Cloud:
    """Two network nodes, a flat ``public`` network, a VXLAN tenant network each for an HA
    and a legacy router, a VM port behind each with a floating IP: the documents net0 got."""

    ha: dict[str, Any]
    legacy: dict[str, Any]
    public: dict[str, Any]
    tenant: dict[str, Any]
    ha_fip: dict[str, Any]
    legacy_fip: dict[str, Any]


def created(client: ApiClient, path: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = client.post(path, {kind: body})
    assert reply.status == 201, reply.body
    return dict(reply.body[kind])


def build_cloud(admin: ApiClient) -> Cloud:
    agents = {}
    for host in ("net0", "net1"):
        body = {"host": host, "agent_type": "L3 agent"}
        agents[host] = admin.post("/hanet/v1/agents", {"agent": body}).body["agent"]["id"]
    public = created(admin, "/v2.0/networks", "network", {
        "name": "public", "router:external": True,
        "provider:network_type": "flat", "provider:physical_network": "public"})  # fmt: skip
    created(admin, "/v2.0/subnets", "subnet", {
        "network_id": public["id"], "ip_version": 4, "cidr": "203.0.113.0/24"})  # fmt: skip
    gateway = {"external_gateway_info": {"network_id": public["id"]}}
    tenant = created(admin, "/v2.0/networks", "network", {"name": "blue"})
    routers, fips = {}, {}
    for kind, cidr in (("ha", "10.0.0.0/24"), ("legacy", "10.1.0.0/24")):
        network = tenant if kind == "ha" else created(admin, "/v2.0/networks", "network", {})
        subnet = created(admin, "/v2.0/subnets", "subnet", {
            "network_id": network["id"], "ip_version": 4, "cidr": cidr})  # fmt: skip
        router = created(admin, "/v2.0/routers", "router",
                         {"name": kind, "ha": kind == "ha", **gateway})  # fmt: skip
        added = admin.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                          {"subnet_id": subnet["id"]})  # fmt: skip
        assert added.status == 200, added.body
        vm = created(admin, "/v2.0/ports", "port", {"network_id": network["id"]})
        fip = {"floating_network_id": public["id"], "port_id": vm["id"]}
        fips[kind] = created(admin, "/v2.0/floatingips", "floatingip", fip)
        routers[kind] = router["id"]
    extra = [{"destination": "192.0.2.0/24", "nexthop": "10.1.0.9"}]
    updated = admin.put(f"/v2.0/routers/{routers['legacy']}", {"router": {"routes": extra}})
    assert updated.status == 200, updated.body
    documents = {}
    for agent in agents.values():
        state = admin.get(f"/hanet/v1/agents/{agent}/state").body
        documents.update({doc["id"]: doc for doc in state["routers"]})
    return Cloud(
        ha=documents[routers["ha"]], legacy=documents[routers["legacy"]],
        public=public, tenant=admin.get(f"/v2.0/networks/{tenant['id']}").body["network"],
        ha_fip=fips["ha"], legacy_fip=fips["legacy"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    db: Path = tmp_path_factory.mktemp("layout") / "hanet.db"
    # Agents that never heartbeat must not die (3 s) on a loaded machine while it is built.
    quiet = {"report_interval": 100.0, "agent_down_time": 600.0, "agent_gone_time": 1200.0}
    config = ServerConfig(db=f"sqlite:///{db}", auth="token", tokens=TOKENS, **quiet)
    with ServerThread(config) as server:
        yield build_cloud(server.client("admin-token"))


def built(document: dict[str, Any], node: Node = NODE) -> RouterLayout:
    result = layout(copy.deepcopy(document), node)
    assert result is not None
    return result


def test_an_ha_router_layout(cloud: Cloud) -> None:
    doc = cloud.ha
    result = built(doc)
    assert result.router_id == doc["id"] and result.ha
    assert result.namespace == f"qrouter-{doc['id']}"
    assert built(doc, Node("net0", shared_machine=True)).namespace == f"qrouter-{doc['id']}@net0"
    internal, gateway, ha = result.ports
    assert internal.device == "qr-" + doc["interfaces"][0]["id"][:11]
    assert gateway.device == "qg-" + doc["gateway"]["id"][:11]
    assert ha.device == "ha-" + doc["ha_port"]["id"][:11]
    assert all(len(p.device) == 14 for p in result.ports)
    # Wiring: the tenant network's VNI and MTU, the flat public network's physical network.
    assert (internal.network_id, internal.network_type, internal.physical_network) == (
        cloud.tenant["id"], "vxlan", None)  # fmt: skip
    assert internal.segmentation_id == cloud.tenant["provider:segmentation_id"]
    assert internal.mtu == cloud.tenant["mtu"] == 1450
    assert internal.mac == doc["interfaces"][0]["mac_address"]
    assert (gateway.network_id, gateway.network_type, gateway.physical_network) == (
        cloud.public["id"], "flat", "public")  # fmt: skip
    assert gateway.segmentation_id is None and gateway.mtu == 1500
    assert ha.network_type == "vxlan" and isinstance(ha.segmentation_id, int)
    # vrrpd owns qr-/qg- addresses (on the master only); the agent sets the ha- port's.
    assert internal.addresses == () and gateway.addresses == ()
    ha_ip = doc["ha_port"]["fixed_ips"][0]["ip_address"]
    assert ha.addresses == (f"{ha_ip}/18",) and ha_ip.startswith("169.254.")
    assert result.routes == ()  # vrrpd's too
    nat = result.nat
    assert nat.router == doc["id"] and nat.gateway_device == gateway.device
    assert nat.gateway_address == doc["gateway"]["fixed_ips"][0]["ip_address"]
    assert nat.enable_snat and tuple(nat.internal_subnets) == ("10.0.0.0/24",)
    fip = cloud.ha_fip
    assert tuple(nat.floating_ips) == (
        FloatingIp(fip["floating_ip_address"], fip["fixed_ip_address"]),)  # fmt: skip
    assert "snat" in ruleset(nat) and fip["floating_ip_address"] in ruleset(nat)
    assert result.instance is not None and result.instance.name == f"router-{doc['id']}"
    assert result.instance.entry["interface"] == ha.device
    assert result.instance.entry["vrid"] == doc["vrid"]
    assert not result.forced_standby


def test_a_legacy_router_layout(cloud: Cloud) -> None:
    doc = cloud.legacy
    result = built(doc)
    assert not result.ha and result.instance is None
    internal, gateway = result.ports  # no ha- port
    assert internal.device.startswith("qr-") and gateway.device.startswith("qg-")
    # The agent sets every address itself.
    assert internal.addresses == ("10.1.0.1/24",)
    gateway_ip = doc["gateway"]["fixed_ips"][0]["ip_address"]
    assert gateway.addresses == (f"{gateway_ip}/24",)
    assert result.routes == (
        {"to": "0.0.0.0/0", "via": "203.0.113.1", "dev": gateway.device},
        {"to": "192.0.2.0/24", "via": "10.1.0.9"},
    )
    fip = cloud.legacy_fip
    assert result.nat.gateway_device == gateway.device
    assert tuple(result.nat.internal_subnets) == ("10.1.0.0/24",)
    assert floating_addresses(result.nat) == (f"{fip['floating_ip_address']}/32",)


def test_a_router_whose_admin_state_is_down_is_not_built(cloud: Cloud) -> None:
    for doc in (cloud.ha, cloud.legacy):
        assert layout(copy.deepcopy(doc) | {"admin_state_up": False}, NODE) is None


def test_forced_standby_and_no_snat(cloud: Cloud) -> None:
    result = built(cloud.ha | {"forced_standby": True, "enable_snat": False})
    assert result.forced_standby and not result.nat.enable_snat
    gateway_ip = cloud.ha["gateway"]["fixed_ips"][0]["ip_address"]

    def subnets_snat(text: str) -> list[str]:  # the hairpin's snat stays without enable_snat
        wanted = f"snat to {gateway_ip}"
        return [
            r for r in text.splitlines() if r.strip().startswith("ip saddr") and r.endswith(wanted)
        ]

    assert subnets_snat(ruleset(result.nat)) == []
    assert subnets_snat(ruleset(built(cloud.ha).nat)) != []


def change(document: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy with ``path`` (dotted; list indexes as numbers) set to ``value``; ``...``
    deletes it."""
    document = copy.deepcopy(document)
    *parents, last = path.split(".")
    target: Any = document
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    place: Any = int(last) if isinstance(target, list) else last
    if value is ...:
        del target[place]
    else:
        target[place] = value
    return document


BOTH = ("ha", "legacy")
MALFORMED = [
    # (routers, path, value, where the error says)
    (BOTH, "interfaces.0.network_type", "gre", "interfaces[0].network_type"),
    (BOTH, "interfaces.0.segmentation_id", None, "interfaces[0].segmentation_id"),
    (BOTH, "interfaces.0.segmentation_id", 1 << 24, "interfaces[0].segmentation_id"),
    (BOTH, "gateway.physical_network", None, "gateway.physical_network"),
    (BOTH, "gateway.network_type", "vlan", "gateway.segmentation_id"),
    (BOTH, "interfaces.0.mtu", "1450", "interfaces[0].mtu"),
    (BOTH, "interfaces.0.mtu", 0, "interfaces[0].mtu"),
    (BOTH, "interfaces.0.network_id", ..., "interfaces[0].network_id"),
    (BOTH, "interfaces.0.id", "a/b", "interfaces[0].id"),
    (BOTH, "interfaces.0.mac_address", "nope", "interfaces[0].mac_address"),
    (BOTH, "interfaces", 7, "interfaces"),
    (BOTH, "interfaces.0", "port", "interfaces[0]"),
    (BOTH, "interfaces.0.fixed_ips.0.ip_address", "10.9.9.9", "interfaces[0].fixed_ips[0]"),
    (BOTH, "interfaces.0.fixed_ips.0.cidr", "10.0.0.1/33", "interfaces[0].fixed_ips[0]"),
    (BOTH, "gateway.fixed_ips.0.gateway_ip", "fd00::1", "gateway.fixed_ips[0].gateway_ip"),
    (BOTH, "gateway.fixed_ips.0.gateway_ip", "one", "gateway.fixed_ips[0].gateway_ip"),
    (BOTH, "floating_ips", {"a": 1}, "floating_ips"),
    (BOTH, "floating_ips.0", "fip", "floating_ips[0]"),
    (BOTH, "floating_ips.0.floating_ip_address", None, "floating_ips[0].floating_ip_address"),
    (BOTH, "floating_ips.0.fixed_ip_address", "10.1.0", "floating_ips[0].fixed_ip_address"),
    (BOTH, "floating_ips.0.fixed_ip_address", ..., "floating_ips[0].fixed_ip_address"),
    (BOTH, "gateway", None, "floating_ips[0]"),  # a floating IP needs the gateway
    (BOTH, "enable_snat", "yes", "enable_snat"),
    (BOTH, "admin_state_up", "no", "admin_state_up"),
    (BOTH, "id", "r/1", "id"),
    (("ha",), "ha_port", None, "ha_port"),
    (("ha",), "vrid", 0, "vrid"),
    (("ha",), "ha_port.mtu", None, "ha_port.mtu"),
    (("legacy",), "routes", "10.0.0.0/8", "routes"),
    (("legacy",), "routes.0", ["192.0.2.0/24"], "routes[0]"),
    (("legacy",), "routes.0.destination", "192.0.2.0/33", "routes[0].destination"),
    (("legacy",), "routes.0.nexthop", None, "routes[0].nexthop"),
    (("legacy",), "routes.0.nexthop", "fd00::9", "routes[0].nexthop"),
]
CASES = [(kind, *case) for routers, *case in MALFORMED for kind in routers]


@pytest.mark.parametrize(("kind", "path", "value", "where"), CASES)
def test_each_malformed_field_names_the_router_and_field(
    cloud: Cloud, kind: str, path: str, value: Any, where: str
) -> None:
    document = getattr(cloud, kind)
    with pytest.raises(RouterError) as caught:
        layout(change(document, path, value), NODE)
    router = document["id"] if path != "id" else "?"
    assert caught.value.router == router, str(caught.value)
    assert caught.value.where.startswith(where), str(caught.value)
    assert str(caught.value).startswith(f"router {router}: {caught.value.where}: ")


def test_two_legacy_ports_sharing_a_device_name_are_refused(cloud: Cloud) -> None:
    # Port ids that share their first 11 characters would be one qr- device.
    document = copy.deepcopy(cloud.legacy)
    twin = copy.deepcopy(document["interfaces"][0])
    twin["id"] = twin["id"][:11] + "0" * (len(twin["id"]) - 11)
    twin["fixed_ips"][0] |= {"ip_address": "10.2.0.1", "cidr": "10.2.0.0/24"}
    document["interfaces"].append(twin)
    with pytest.raises(RouterError, match=r"interfaces\[1\]\.id: device qr-\S+ is also"):
        layout(document, NODE)


# Fuzzing: whatever the server sends, a layout or a RouterError.

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 1 << 25) | st.floats(allow_nan=True)
    | st.sampled_from(["", "x", "10.0.0.1", "10.0.0.0/24", "fd00::1", "a/b", "vxlan", "flat",
                       "vlan", "fa:16:3e:00:00:01", "203.0.113.1", "0.0.0.0/0", "default"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner,
                                                                   max_size=3),
    max_leaves=8,
)  # fmt: skip


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(BOTH), lab=st.booleans())
def test_mutated_documents_give_a_layout_or_a_router_error(
    cloud: Cloud, data: st.DataObject, kind: str, lab: bool
) -> None:
    document = copy.deepcopy(getattr(cloud, kind))
    places = paths(document)[1:]
    changes = data.draw(st.lists(st.tuples(st.sampled_from(places), JSON | st.just(KeyError)),
                                 min_size=1, max_size=4))  # fmt: skip
    for path, value in changes:
        target: Any = document
        try:
            for key in path[:-1]:
                target = target[key]
            if value is KeyError:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed the place
    try:
        result = layout(document, Node("net0", shared_machine=lab))
    except RouterError as exc:
        assert exc.where and exc.reason
        return
    if result is not None:  # what lays out can be built: its NAT renders
        ruleset(result.nat)


def test_a_legacy_gateway_outside_its_subnet_gets_an_on_link_route_first(cloud: Cloud) -> None:
    doc = copy.deepcopy(cloud.legacy)
    doc["gateway"]["fixed_ips"][0]["gateway_ip"] = "198.51.100.1"
    routes = built(doc).routes
    device = routes[0]["dev"]
    assert routes[:2] == (
        {"to": "198.51.100.1/32", "dev": device, "scope": "link"},
        {"to": "0.0.0.0/0", "via": "198.51.100.1", "dev": device},
    )
