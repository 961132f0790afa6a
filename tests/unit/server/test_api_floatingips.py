"""Floating IPs: allocated on the external network, mapped by the router that connects the
port's subnet to it, and shown in that router's document for its agents."""

from __future__ import annotations

from hanet.server.client import ApiClient
from tests.unit.server.test_api_core import error_type, make_net
from tests.unit.server.test_api_routers import external_net, register


def test_floating_ip_follows_the_router_that_can_map_it(admin: ApiClient) -> None:
    agent = register(admin, "net0")
    public = external_net(admin)
    router = admin.post(
        "/v2.0/routers",
        {"router": {"name": "r", "ha": True, "external_gateway_info": {"network_id": public}}},
    ).body["router"]
    net_id, sub_id = make_net(admin)
    admin.put(f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": sub_id})
    vm = admin.post("/v2.0/ports", {"port": {"network_id": net_id}}).body["port"]
    created = admin.post(
        "/v2.0/floatingips", {"floatingip": {"floating_network_id": public, "port_id": vm["id"]}}
    )
    assert created.status == 201, created.body
    fip = created.body["floatingip"]
    assert fip["router_id"] == router["id"] and fip["status"] == "ACTIVE"
    assert fip["fixed_ip_address"] == vm["fixed_ips"][0]["ip_address"]
    assert fip["floating_ip_address"].startswith("203.0.113.")
    doc = admin.get(f"/hanet/v1/agents/{agent}/state").body["routers"][0]
    assert doc["floating_ips"] == [
        {
            "id": fip["id"],
            "floating_ip_address": fip["floating_ip_address"],
            "fixed_ip_address": fip["fixed_ip_address"],
        }
    ]
    again = admin.post(
        "/v2.0/floatingips", {"floatingip": {"floating_network_id": public, "port_id": vm["id"]}}
    )
    assert again.status == 409 and error_type(again) == "FloatingIPPortAlreadyAssociated"
    freed = admin.put(f"/v2.0/floatingips/{fip['id']}", {"floatingip": {"port_id": None}})
    assert freed.body["floatingip"]["router_id"] is None
    assert freed.body["floatingip"]["status"] == "DOWN"
    assert admin.delete(f"/v2.0/floatingips/{fip['id']}").status == 204
    assert admin.get("/v2.0/ports?device_owner=network:floatingip").body["ports"] == []


def test_no_router_no_floating_ip(admin: ApiClient) -> None:
    public = external_net(admin)
    net_id, _ = make_net(admin)
    vm = admin.post("/v2.0/ports", {"port": {"network_id": net_id}}).body["port"]
    refused = admin.post(
        "/v2.0/floatingips", {"floatingip": {"floating_network_id": public, "port_id": vm["id"]}}
    )
    assert refused.status == 404
    assert error_type(refused) == "ExternalGatewayForFloatingIPNotFound"
    assert admin.get("/v2.0/floatingips").body["floatingips"] == []
    # Nothing half-written: the port made for the address went with the refusal.
    assert admin.get("/v2.0/ports?device_owner=network:floatingip").body["ports"] == []
    internal = admin.post("/v2.0/floatingips", {"floatingip": {"floating_network_id": net_id}})
    assert internal.status == 400
