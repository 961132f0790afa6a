"""The Neutron v2.0 API for networks, subnets and ports: shapes, status codes, errors."""

from __future__ import annotations

from hanet.server.client import ApiClient


def error_type(reply) -> str:  # type: ignore[no-untyped-def]
    assert set(reply.body) == {"NeutronError"}, reply.body
    assert set(reply.body["NeutronError"]) == {"type", "message", "detail"}
    return reply.body["NeutronError"]["type"]


def make_net(client: ApiClient, cidr: str = "10.0.0.0/24", **subnet: object) -> tuple[str, str]:
    net = client.post("/v2.0/networks", {"network": {"name": "n"}})
    assert net.status == 201, net.body
    fields = {"network_id": net.body["network"]["id"], "ip_version": 4, "cidr": cidr, **subnet}
    sub = client.post("/v2.0/subnets", {"subnet": fields})
    assert sub.status == 201, sub.body
    return net.body["network"]["id"], sub.body["subnet"]["id"]


def test_network_lifecycle_has_neutron_shapes(alice: ApiClient) -> None:
    created = alice.post("/v2.0/networks", {"network": {"name": "blue"}})
    assert created.status == 201
    net = created.body["network"]
    assert net["name"] == "blue" and net["project_id"] == net["tenant_id"] == "alice"
    assert net["status"] == "ACTIVE" and net["admin_state_up"] is True
    assert net["subnets"] == [] and net["router:external"] is False and net["mtu"] == 1450
    shown = alice.get(f"/v2.0/networks/{net['id']}")
    assert shown.status == 200 and shown.body["network"]["id"] == net["id"]
    updated = alice.put(f"/v2.0/networks/{net['id']}", {"network": {"name": "green"}})
    assert updated.body["network"]["name"] == "green"
    assert updated.body["network"]["revision_number"] == net["revision_number"] + 1
    assert alice.delete(f"/v2.0/networks/{net['id']}").status == 204
    gone = alice.get(f"/v2.0/networks/{net['id']}")
    assert gone.status == 404 and error_type(gone) == "NetworkNotFound"


def test_subnet_defaults_gateway_and_pools(alice: ApiClient) -> None:
    net_id, sub_id = make_net(alice)
    subnet = alice.get(f"/v2.0/subnets/{sub_id}").body["subnet"]
    assert subnet["gateway_ip"] == "10.0.0.1"
    assert subnet["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert subnet["enable_dhcp"] is True and subnet["network_id"] == net_id
    assert alice.get(f"/v2.0/networks/{net_id}").body["network"]["subnets"] == [sub_id]


def test_ports_get_addresses_from_the_pool_in_order(alice: ApiClient) -> None:
    pool = {"start": "10.0.0.10", "end": "10.0.0.11"}
    net_id, _ = make_net(alice, allocation_pools=[pool])
    ips = []
    for _ in range(2):
        port = alice.post("/v2.0/ports", {"port": {"network_id": net_id}})
        assert port.status == 201, port.body
        ips += [f["ip_address"] for f in port.body["port"]["fixed_ips"]]
        assert port.body["port"]["mac_address"].startswith("fa:16:3e:")
    assert ips == ["10.0.0.10", "10.0.0.11"]
    full = alice.post("/v2.0/ports", {"port": {"network_id": net_id}})
    assert full.status == 409 and error_type(full) == "IpAddressGenerationFailure"


def test_a_fixed_ip_is_never_given_twice(alice: ApiClient) -> None:
    net_id, sub_id = make_net(alice)
    wanted = {"port": {"network_id": net_id, "fixed_ips": [{"ip_address": "10.0.0.50"}]}}
    first = alice.post("/v2.0/ports", wanted)
    assert first.status == 201
    assert first.body["port"]["fixed_ips"] == [{"subnet_id": sub_id, "ip_address": "10.0.0.50"}]
    again = alice.post("/v2.0/ports", wanted)
    assert again.status == 409 and error_type(again) == "IpAddressAlreadyAllocated"
    outside = alice.post("/v2.0/ports", {"port": {"network_id": net_id, "fixed_ips": [
        {"subnet_id": sub_id, "ip_address": "10.0.1.5"}]}})  # fmt: skip
    assert outside.status == 400 and error_type(outside) == "InvalidIpForSubnet"


def test_ipv6_slaac_port_address_is_eui64(alice: ApiClient, admin: ApiClient) -> None:
    """RFC 4291 §2.5.1 and appendix A: the interface id is the MAC with ff:fe inserted and
    the universal/local bit inverted."""
    net = admin.post("/v2.0/networks", {"network": {}}).body["network"]
    sub = admin.post("/v2.0/subnets", {"subnet": {
        "network_id": net["id"], "ip_version": 6, "cidr": "2001:db8::/64",
        "ipv6_address_mode": "slaac", "ipv6_ra_mode": "slaac"}})  # fmt: skip
    assert sub.status == 201, sub.body
    wanted = {"port": {"network_id": net["id"], "mac_address": "fa:16:3e:11:22:33"}}
    refused = alice.post("/v2.0/ports", wanted)
    assert refused.status == 403  # mac_address is the admin's to set
    port = admin.post("/v2.0/ports", wanted).body["port"]
    assert port["fixed_ips"][0]["ip_address"] == "2001:db8::f816:3eff:fe11:2233"


def test_network_in_use_cannot_be_deleted(alice: ApiClient) -> None:
    net_id, sub_id = make_net(alice)
    port = alice.post("/v2.0/ports", {"port": {"network_id": net_id}}).body["port"]
    refused = alice.delete(f"/v2.0/networks/{net_id}")
    assert refused.status == 409 and error_type(refused) == "NetworkInUse"
    refused = alice.delete(f"/v2.0/subnets/{sub_id}")
    assert refused.status == 409 and error_type(refused) == "SubnetInUse"
    assert alice.delete(f"/v2.0/ports/{port['id']}").status == 204
    assert alice.delete(f"/v2.0/networks/{net_id}").status == 204


def test_projects_see_only_their_own(alice: ApiClient, bob: ApiClient, admin: ApiClient) -> None:
    net_id, _ = make_net(alice)
    assert bob.get(f"/v2.0/networks/{net_id}").status == 404
    assert [n["id"] for n in bob.get("/v2.0/networks").body["networks"]] == []
    assert bob.post("/v2.0/ports", {"port": {"network_id": net_id}}).status == 404
    assert [n["id"] for n in admin.get("/v2.0/networks").body["networks"]] == [net_id]
    external = admin.post("/v2.0/networks", {"network": {"router:external": True}})
    assert external.status == 201
    visible = {n["id"] for n in bob.get("/v2.0/networks").body["networks"]}
    assert visible == {external.body["network"]["id"]}
    refused = alice.post("/v2.0/networks", {"network": {"router:external": True}})
    assert refused.status == 403 and error_type(refused) == "PolicyNotAuthorized"


def test_list_filters_fields_sorting_and_pagination(alice: ApiClient) -> None:
    ids = [alice.post("/v2.0/networks", {"network": {"name": name}}).body["network"]["id"]
           for name in ("c", "a", "b")]  # fmt: skip
    only_a = alice.get("/v2.0/networks?name=a").body["networks"]
    assert [n["name"] for n in only_a] == ["a"]
    both = alice.get("/v2.0/networks?name=a&name=b&fields=name&fields=id").body["networks"]
    assert sorted(n["name"] for n in both) == ["a", "b"] and set(both[0]) == {"name", "id"}
    ordered = alice.get("/v2.0/networks?sort_key=name&sort_dir=desc").body["networks"]
    assert [n["name"] for n in ordered] == ["c", "b", "a"]
    page = alice.get("/v2.0/networks?limit=2").body
    assert [n["id"] for n in page["networks"]] == ids[:2]
    assert page["networks_links"][0]["rel"] == "next"
    rest = alice.get(f"/v2.0/networks?limit=2&marker={ids[1]}").body
    assert [n["id"] for n in rest["networks"]] == ids[2:]
    bad = alice.get("/v2.0/networks?sort_key=name&sort_dir=sideways")
    assert bad.status == 400


def test_no_token_no_service(server) -> None:  # type: ignore[no-untyped-def]
    reply = server.client().get("/v2.0/networks")
    assert reply.status == 401 and error_type(reply) == "HTTPUnauthorized"
    assert server.client("nonsense").get("/v2.0/networks").status == 401


def test_extensions_and_versions(alice: ApiClient) -> None:
    aliases = {e["alias"] for e in alice.get("/v2.0/extensions").body["extensions"]}
    assert {"external-net", "provider", "binding", "pagination", "sorting"} <= aliases
    assert alice.get("/").body["versions"][0]["id"] == "v2.0"


def test_big_pools_hand_out_random_addresses_inside_the_pools(alice: ApiClient) -> None:
    pools = [{"start": "10.8.0.10", "end": "10.8.3.255"}, {"start": "10.8.9.0", "end": "10.8.9.9"}]
    net_id, _ = make_net(alice, "10.8.0.0/20", allocation_pools=pools)
    import ipaddress

    seen = set()
    for _ in range(20):
        port = alice.post("/v2.0/ports", {"port": {"network_id": net_id}}).body["port"]
        address = ipaddress.ip_address(port["fixed_ips"][0]["ip_address"])
        assert ipaddress.ip_address("10.8.0.10") <= address <= ipaddress.ip_address(
            "10.8.3.255"
        ) or ipaddress.ip_address("10.8.9.0") <= address <= ipaddress.ip_address("10.8.9.9")
        seen.add(address)
    assert len(seen) == 20
