"""hanet-agent's rendering of a router document into the node's vrrpd instance, as
Neutron renders an HA router's keepalived.conf; a document that cannot be one is a
RenderError naming the router and the field, never another exception."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hanet.agent.render import (
    AgentConfig,
    Node,
    RenderError,
    device_name,
    instance_name,
    link_local,
    namespace_name,
    render,
    render_all,
    router_of,
)
from hanet.runtime.config import VirtualAddress
from hanet.vrrpd.schema import parse_request

ROUTER_ID = "496d0f58-2744-4322-aae2-9a1ba45ba593"
# What hanet-server's GET /hanet/v1/agents/{id}/state returned for an HA router with a
# gateway, one interface, a floating IP and an extra route (agent net0, one peer net1).
DOCUMENT: dict[str, Any] = {
    "id": ROUTER_ID, "name": "r", "project_id": "admin-project", "admin_state_up": True,
    "ha": True, "vrid": 80, "enable_snat": True,
    "routes": [{"destination": "192.0.2.0/24", "nexthop": "10.0.0.9"}],
    "interfaces": [{
        "id": "bae87db6-5b5b-41f3-94f1-18ab9351e64c",
        "network_id": "6975d0fd-3207-468d-8eed-88b6d90b7a0d",
        "mac_address": "fa:16:3e:b9:bf:0d",
        "fixed_ips": [{"subnet_id": "1117f94c-84f6-4c50-a3b5-949a5cdf256f",
                       "ip_address": "10.0.0.1", "prefixlen": 24, "cidr": "10.0.0.0/24",
                       "gateway_ip": "10.0.0.1"}],
        "network_type": "vxlan", "physical_network": None, "segmentation_id": 4686880,
        "mtu": 1450}],
    "gateway": {
        "id": "11eddf15-0057-4f86-8360-d4a81089406b",
        "network_id": "1aae992b-d1b5-4f2b-8f8b-d038e3316430",
        "mac_address": "fa:16:3e:9d:f8:68",
        "fixed_ips": [{"subnet_id": "3989bb21-b9fe-45f3-840d-cb15966ac50c",
                       "ip_address": "203.0.113.2", "prefixlen": 24, "cidr": "203.0.113.0/24",
                       "gateway_ip": "203.0.113.1"}],
        "network_type": "flat", "physical_network": "public", "segmentation_id": None,
        "mtu": 1500},
    "ha_port": {
        "id": "800cc0dc-4870-4c64-8db4-1b909d5e2b15",
        "network_id": "9bb0e538-45eb-4bd2-9305-20665ded5f6c",
        "mac_address": "fa:16:3e:dd:a7:74",
        "fixed_ips": [{"subnet_id": "21bf1221-fa06-436a-a6c1-f2e71c92d8b4",
                       "ip_address": "169.254.232.118", "prefixlen": 18,
                       "cidr": "169.254.192.0/18", "gateway_ip": None}],
        "network_type": "vxlan", "physical_network": None, "segmentation_id": 5044605,
        "mtu": 1450},
    "ha_state": "standby", "forced_standby": False,
    "floating_ips": [{"id": "4e703dcf-8386-4c31-91db-2bc258362cdd",
                      "floating_ip_address": "203.0.113.3", "fixed_ip_address": "10.0.0.2"}],
    "ha_peers": [{"host": "net1", "ip_address": "169.254.224.131"}],
}  # fmt: skip

GOLDEN: dict[str, Any] = {
    "interface": "ha-800cc0dc-48",
    "vrid": 80,
    "priority": 50,
    "nopreempt": True,
    "version": 3,
    "advert_int": 0.1,
    "netns": f"qrouter-{ROUTER_ID}",
    "addresses": [
        "169.254.0.80/24",
        {"address": "10.0.0.1/24", "dev": "qr-bae87db6-5b", "advertised": False},
        {"address": "203.0.113.2/24", "dev": "qg-11eddf15-00", "advertised": False},
        {"address": "203.0.113.3/32", "dev": "qg-11eddf15-00", "advertised": False},
    ],
    "garp_repeat": 5,
    "garp_refresh_delay": 60.0,
    "vrid_filter": True,
    "routes": [
        {"to": "default", "via": "203.0.113.1", "dev": "qg-11eddf15-00"},
        {"to": "192.0.2.0/24", "via": "10.0.0.9"},
    ],
}  # fmt: skip

LAB = AgentConfig(advert_int=0.1, version=3)
NODE = Node("net0", config=LAB)


def accepted(entries: dict[str, dict[str, Any]]) -> Any:
    """The sync request vrrpd would get, parsed by vrrpd's own schema."""
    request = parse_request({"command": "sync", "version": 1, "instances": entries})
    assert request.instances is not None
    return request.instances


def test_a_full_ha_router_renders_as_neutron_renders_it() -> None:
    rendered = render(copy.deepcopy(DOCUMENT), NODE)
    assert rendered is not None
    assert rendered.name == f"router-{ROUTER_ID}"
    assert rendered.entry == GOLDEN
    spec = accepted({rendered.name: rendered.entry})[rendered.name]
    config = spec.config
    # Equal priority, nopreempt: a backup until the election (highest HA address) says so.
    assert (config.priority, config.preempt, config.advert_int, config.version) == (
        50, False, 0.1, 3)  # fmt: skip
    assert [str(a) for a in config.addresses] == ["169.254.0.80/24"]  # only one advertised
    assert VirtualAddress(
        ipaddress.ip_interface("203.0.113.3/32"), "qg-11eddf15-00",
        advertised=False,
    ) in config.vips  # fmt: skip
    assert spec.tracking is not None
    assert [t.name for t in spec.tracking.interfaces] == ["ha-800cc0dc-48"]
    assert spec.tracking.netns == f"qrouter-{ROUTER_ID}"


def test_neutron_defaults_and_lab_naming() -> None:
    rendered = render(DOCUMENT, Node("net2", shared_machine=True))
    assert rendered is not None
    assert rendered.entry["advert_int"] == 2.0  # Neutron's ha_vrrp_advert_int
    assert rendered.entry["netns"] == f"qrouter-{ROUTER_ID}@net2"
    accepted({rendered.name: rendered.entry})


def test_names() -> None:
    with pytest.raises(RenderError, match=r"router \?: id:"):
        render(DOCUMENT | {"id": "r1\n"}, NODE)
    assert device_name("qr-", "bae87db6-5b5b-41f3-94f1-18ab9351e64c") == "qr-bae87db6-5b"
    assert len(device_name("ha-", "x" * 36)) == 14
    assert namespace_name("r1") == "qrouter-r1"
    assert namespace_name("r1", "net1") == "qrouter-r1@net1"
    assert router_of(instance_name(ROUTER_ID)) == ROUTER_ID
    assert router_of("VI_1") is None
    assert link_local("fa:16:3e:b9:bf:0d") == "fe80::f816:3eff:feb9:bf0d/64"


def test_unicast_to_the_peers_and_no_link_locals() -> None:
    config = AgentConfig(advert_int=0.1, unicast=True, ipv6_link_local=False)
    rendered = render(DOCUMENT, Node("net0", config=config))
    assert rendered is not None
    assert rendered.entry["unicast"] == {"source": "169.254.232.118", "peers": ["169.254.224.131"]}
    assert not any("fe80" in str(a) for a in rendered.entry["addresses"])
    spec = accepted({rendered.name: rendered.entry})[rendered.name]
    assert [str(p) for p in spec.config.unicast_peers] == ["169.254.224.131"]


def test_a_gateway_outside_its_subnet_gets_an_on_link_route_first() -> None:
    document = copy.deepcopy(DOCUMENT)
    document["gateway"]["fixed_ips"][0]["gateway_ip"] = "198.51.100.1"
    rendered = render(document, NODE)
    assert rendered is not None
    assert rendered.entry["routes"][:2] == [
        {"to": "198.51.100.1/32", "dev": "qg-11eddf15-00", "scope": "link"},
        {"to": "default", "via": "198.51.100.1", "dev": "qg-11eddf15-00"},
    ]
    accepted({rendered.name: rendered.entry})


def test_legacy_and_disabled_routers_have_no_instance() -> None:
    assert render(DOCUMENT | {"ha": False}, NODE) is None
    assert render(DOCUMENT | {"admin_state_up": False}, NODE) is None


def mutated(path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    *parents, last = path.split(".")
    target: Any = document
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return document


@pytest.mark.parametrize(
    ("path", "value", "where", "says"),
    [
        ("ha_port", None, "ha_port", "no HA port for host net0"),
        ("vrid", 255, "vrid", "255 is outside 1..254"),
        ("vrid", 0, "vrid", "outside"),
        ("vrid", "7", "vrid", "expected an integer"),
        ("interfaces.0.fixed_ips.0.ip_address", "10.9.0.1", "interfaces[0].fixed_ips[0].ip_address",
         "10.9.0.1 is not in its subnet 10.0.0.0/24"),
        ("interfaces.0.fixed_ips.0.prefixlen", 16, "interfaces[0].fixed_ips[0].prefixlen", "16"),
        ("gateway.fixed_ips", [], "gateway.fixed_ips", "no address"),
        ("gateway.mac_address", "nope", "gateway.mac_address", "MAC"),
        ("ha_port.id", "a/b", "ha_port.id", "port id"),
        ("routes.0.nexthop", "fd00::1", "routes[0].nexthop", "family"),
        ("floating_ips.0.floating_ip_address", "x", "floating_ips[0].floating_ip_address", ""),
        ("gateway", None, "floating_ips[0]", "no gateway"),
        ("interfaces", {}, "interfaces", "expected a list"),
        ("ha", "yes", "ha", "true or false"),
        ("floating_ips.0.floating_ip_address", "203.0.113.2", "document", "given twice"),
    ],
)  # fmt: skip
def test_bad_documents_name_the_router_and_field(
    path: str, value: Any, where: str, says: str
) -> None:
    with pytest.raises(RenderError) as caught:
        render(mutated(path, value), NODE)
    assert caught.value.router == ROUTER_ID
    assert caught.value.where == where
    assert says in caught.value.reason
    assert str(caught.value).startswith(f"router {ROUTER_ID}: {where}: ")


def test_two_ports_whose_device_names_clash() -> None:
    document = copy.deepcopy(DOCUMENT)
    second = copy.deepcopy(document["interfaces"][0])
    second["id"] = "bae87db6-5bff-0000-0000-000000000000"
    second["fixed_ips"][0] |= {"ip_address": "10.1.0.1", "cidr": "10.1.0.0/24"}
    document["interfaces"].append(second)
    with pytest.raises(RenderError, match=r"interfaces\[1\]\.id: device qr-bae87db6-5b is also"):
        render(document, NODE)


def test_one_bad_router_never_blocks_the_others() -> None:
    good = [copy.deepcopy(DOCUMENT) | {"id": f"r{n}", "vrid": n} for n in (1, 2)]
    bad = copy.deepcopy(DOCUMENT) | {"id": "r3", "ha_port": None}
    legacy = copy.deepcopy(DOCUMENT) | {"id": "r4", "ha": False}
    instances, errors = render_all([good[0], bad, "junk", legacy, good[1]], NODE)
    assert sorted(instances) == ["router-r1", "router-r2"]
    assert sorted(errors) == ["?", "r3"]
    assert str(errors["r3"]) == "router r3: ha_port: no HA port for host net0"
    assert str(errors["?"]) == "router ?: document: expected an object, got str"
    assert set(accepted(instances)) == {"router-r1", "router-r2"}


def test_a_router_given_twice_is_refused() -> None:
    instances, errors = render_all([DOCUMENT, DOCUMENT], NODE)
    assert instances == {}
    assert str(errors[ROUTER_ID]) == f"router {ROUTER_ID}: id: given twice"


# Fuzzing: whatever the server sends, only RenderError comes out, and what renders is
# accepted by vrrpd's own schema.

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-300, 300) | st.floats(allow_nan=True)
    | st.sampled_from(["", "x", "10.0.0.1", "10.0.0.0/24", "fd00::1", "a/b", "fa:16:3e:00:00:01",
                       "203.0.113.1", "0.0.0.0/0", "::/0", "169.254.0.0/16"]),
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


PATHS = paths(DOCUMENT)[1:]


def check_render(document: Any, node: Node) -> None:
    try:
        rendered = render(document, node)
    except RenderError as exc:
        assert exc.where and exc.reason
        return
    if rendered is not None:
        accepted({rendered.name: rendered.entry})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), JSON | st.just(KeyError)), min_size=1,
                max_size=4), st.booleans(), st.booleans())  # fmt: skip
def test_fuzz_mutated_documents(changes: list[tuple[Any, Any]], unicast: bool, lab: bool) -> None:
    document = copy.deepcopy(DOCUMENT)
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
    config = AgentConfig(advert_int=0.1, unicast=unicast)
    check_render(document, Node("net0", shared_machine=lab, config=config))


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_fuzz_anything(document: Any) -> None:
    check_render(document, NODE)
    instances, errors = render_all([document, DOCUMENT], NODE)
    assert f"router-{ROUTER_ID}" in instances or ROUTER_ID in errors


def test_a_port_with_an_ipv6_subnet_gets_its_link_local_and_an_ipv4_only_one_does_not() -> None:
    """The link-local follows mastership only where IPv6 is routed: adding and removing it
    makes the kernel send MLD reports from the router's MAC, which can move that MAC back
    to an old master on the bridges after the new master's GARPs."""
    document = copy.deepcopy(DOCUMENT)
    document["interfaces"][0]["fixed_ips"].append({
        "subnet_id": "v6", "ip_address": "2001:db8::1", "prefixlen": 64,
        "cidr": "2001:db8::/64", "gateway_ip": "2001:db8::1",
    })  # fmt: skip
    rendered = render(document, NODE)
    assert rendered is not None
    link_locals = [a for a in rendered.entry["addresses"]
                   if isinstance(a, dict) and a["address"].startswith("fe80::")]  # fmt: skip
    assert link_locals == [{"address": "fe80::f816:3eff:feb9:bf0d/64", "dev": "qr-bae87db6-5b",
                            "advertised": False, "scope": "link"}]  # fmt: skip
