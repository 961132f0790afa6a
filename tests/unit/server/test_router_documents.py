"""Router documents never go stale: every change to what a router's document holds (its
ports, their addresses, their subnets and networks, its floating IPs) brings the router
back in its agents' changes; ports only a router or floating IP may remove are refused
by DELETE /ports (409, as in Neutron); `external_gateway_info: {}` removes the gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hanet.server.client import ApiClient
from tests.unit.server.test_api_core import error_type, make_net
from tests.unit.server.test_api_routers import external_net, register


@dataclass
class Setup:
    agent: str
    router: str
    public: str
    net_id: str
    sub_id: str
    vm: dict[str, Any]
    fip: dict[str, Any]

    def port(self, admin: ApiClient, owner: str) -> dict[str, Any]:
        query = f"/v2.0/ports?device_id={self.router}&device_owner=network:{owner}"
        (port,) = admin.get(query).body["ports"]
        return dict(port)


def ha_router_with_everything(admin: ApiClient) -> Setup:
    """An HA router with a gateway, an interface and a floating IP to a VM's port."""
    agent = register(admin, "net0")
    public = external_net(admin)
    router = admin.post(
        "/v2.0/routers",
        {"router": {"name": "r", "ha": True, "external_gateway_info": {"network_id": public}}},
    ).body["router"]["id"]
    net_id, sub_id = make_net(admin)
    admin.put(f"/v2.0/routers/{router}/add_router_interface", {"subnet_id": sub_id})
    vm = admin.post("/v2.0/ports", {"port": {"network_id": net_id}}).body["port"]
    fip = admin.post(
        "/v2.0/floatingips", {"floatingip": {"floating_network_id": public, "port_id": vm["id"]}}
    ).body["floatingip"]
    assert fip["router_id"] == router
    return Setup(agent, router, public, net_id, sub_id, vm, fip)


class Follower:
    """An agent following its state by change number, as hanet-agent does."""

    def __init__(self, admin: ApiClient, agent: str) -> None:
        self.admin, self.agent = admin, agent
        self.revision = admin.get(f"/hanet/v1/agents/{agent}/state").body["revision"]

    def changed(self) -> dict[str, dict[str, Any]]:
        """The router documents changed since the last call, by id."""
        reply = self.admin.get(f"/hanet/v1/agents/{self.agent}/state?since={self.revision}")
        assert reply.status == 200, reply.body
        self.revision = reply.body["revision"]
        return {doc["id"]: doc for doc in reply.body["routers"]}


def test_port_updates_reach_the_agents(admin: ApiClient) -> None:
    s = ha_router_with_everything(admin)
    follower = Follower(admin, s.agent)
    interface = s.port(admin, "router_interface")
    moved = admin.put(
        f"/v2.0/ports/{interface['id']}",
        {
            "port": {
                "fixed_ips": [{"subnet_id": s.sub_id, "ip_address": "10.0.0.1"}],
                "mac_address": "fa:16:3e:00:00:01",
            }
        },
    )
    assert moved.status == 200, moved.body
    doc = follower.changed()[s.router]
    assert doc["interfaces"][0]["mac_address"] == "fa:16:3e:00:00:01"
    gateway = s.port(admin, "router_gateway")
    address = gateway["fixed_ips"][0]
    moved = admin.put(
        f"/v2.0/ports/{gateway['id']}",
        {
            "port": {
                "fixed_ips": [{"subnet_id": address["subnet_id"], "ip_address": "203.0.113.99"}]
            }
        },
    )
    assert moved.status == 200, moved.body
    doc = follower.changed()[s.router]
    assert doc["gateway"]["fixed_ips"][0]["ip_address"] == "203.0.113.99"
    assert (
        admin.put(f"/v2.0/ports/{gateway['id']}", {"port": {"admin_state_up": False}}).status == 200
    )
    assert s.router in follower.changed()
    # The VM's port is no router's: its agents hear nothing.
    assert admin.put(f"/v2.0/ports/{s.vm['id']}", {"port": {"name": "vm1"}}).status == 200
    assert s.router not in follower.changed()


def test_subnet_and_network_updates_reach_the_agents(admin: ApiClient) -> None:
    s = ha_router_with_everything(admin)
    follower = Follower(admin, s.agent)
    moved = admin.put(
        f"/v2.0/subnets/{s.sub_id}",
        {
            "subnet": {
                "gateway_ip": "10.0.0.254",
                "allocation_pools": [{"start": "10.0.0.2", "end": "10.0.0.200"}],
            }
        },
    )
    assert moved.status == 200, moved.body
    doc = follower.changed()[s.router]
    assert doc["interfaces"][0]["fixed_ips"][0]["gateway_ip"] == "10.0.0.254"
    for change in (
        {"dns_nameservers": ["192.0.2.53"]},
        {"host_routes": [{"destination": "192.0.2.0/24", "nexthop": "10.0.0.9"}]},
    ):
        assert admin.put(f"/v2.0/subnets/{s.sub_id}", {"subnet": change}).status == 200
        assert s.router in follower.changed(), change
    public_subnet = s.port(admin, "router_gateway")["fixed_ips"][0]["subnet_id"]
    moved = admin.put(
        f"/v2.0/subnets/{public_subnet}",
        {
            "subnet": {
                "gateway_ip": "203.0.113.254",
                "allocation_pools": [{"start": "203.0.113.2", "end": "203.0.113.200"}],
            }
        },
    )
    assert moved.status == 200, moved.body
    doc = follower.changed()[s.router]
    assert doc["gateway"]["fixed_ips"][0]["gateway_ip"] == "203.0.113.254"
    assert admin.put(f"/v2.0/networks/{s.net_id}", {"network": {"mtu": 1400}}).status == 200
    assert s.router in follower.changed()
    # What no document shows resends nothing: a name, a new subnet on the external network.
    assert admin.put(f"/v2.0/subnets/{s.sub_id}", {"subnet": {"name": "renamed"}}).status == 200
    assert admin.put(f"/v2.0/networks/{s.public}", {"network": {"name": "renamed"}}).status == 200
    more = {"network_id": s.public, "ip_version": 4, "cidr": "198.51.100.0/24"}
    assert admin.post("/v2.0/subnets", {"subnet": more}).status == 201
    assert s.router not in follower.changed()


def test_floating_ip_changes_and_a_deleted_port_reach_the_agents(admin: ApiClient) -> None:
    s = ha_router_with_everything(admin)
    follower = Follower(admin, s.agent)
    freed = admin.put(f"/v2.0/floatingips/{s.fip['id']}", {"floatingip": {"port_id": None}})
    assert freed.status == 200
    assert follower.changed()[s.router]["floating_ips"] == []
    again = admin.put(f"/v2.0/floatingips/{s.fip['id']}", {"floatingip": {"port_id": s.vm["id"]}})
    assert again.status == 200
    mapped = follower.changed()[s.router]["floating_ips"]
    assert [f["fixed_ip_address"] for f in mapped] == [s.vm["fixed_ips"][0]["ip_address"]]
    # The VM's port goes: its floating IP stays allocated, mapped to nothing, as in Neutron.
    assert admin.delete(f"/v2.0/ports/{s.vm['id']}").status == 204
    assert follower.changed()[s.router]["floating_ips"] == []
    fip = admin.get(f"/v2.0/floatingips/{s.fip['id']}").body["floatingip"]
    assert fip["port_id"] is None and fip["router_id"] is None and fip["status"] == "DOWN"
    assert fip["fixed_ip_address"] is None


def test_a_mapped_address_stays_on_its_port(admin: ApiClient) -> None:
    s = ha_router_with_everything(admin)
    refused = admin.put(
        f"/v2.0/ports/{s.vm['id']}",
        {"port": {"fixed_ips": [{"subnet_id": s.sub_id, "ip_address": "10.0.0.77"}]}},
    )
    assert refused.status == 400
    assert "has been associated to a floating ip" in refused.body["NeutronError"]["message"]
    port = admin.get(f"/v2.0/ports/{s.vm['id']}").body["port"]
    assert port["fixed_ips"] == s.vm["fixed_ips"]


def test_ports_of_routers_and_floating_ips_are_not_deleted_directly(admin: ApiClient) -> None:
    s = ha_router_with_everything(admin)
    follower = Follower(admin, s.agent)
    floating_port = admin.get(f"/v2.0/ports?device_id={s.fip['id']}").body["ports"][0]
    for port in (
        s.port(admin, "router_interface"),
        s.port(admin, "router_gateway"),
        s.port(admin, "router_ha_interface"),
        floating_port,
    ):
        refused = admin.delete(f"/v2.0/ports/{port['id']}")
        assert refused.status == 409, port["device_owner"]
        assert error_type(refused) == "ServicePortInUse"
        assert refused.body["NeutronError"]["message"] == (
            f"Port {port['id']} cannot be deleted directly via the port API: "
            f"has device owner {port['device_owner']}."
        )
        assert admin.get(f"/v2.0/ports/{port['id']}").status == 200
    assert follower.changed() == {}
    doc = admin.get(f"/hanet/v1/agents/{s.agent}/state").body["routers"][0]
    assert doc["interfaces"] and doc["gateway"] and doc["ha_port"] and doc["floating_ips"]


def test_an_empty_gateway_removes_it(admin: ApiClient) -> None:
    s = ha_router_with_everything(admin)
    # Not while a floating IP needs it (Neutron's RouterExternalGatewayInUseByFloatingIp).
    refused = admin.put(f"/v2.0/routers/{s.router}", {"router": {"external_gateway_info": {}}})
    assert refused.status == 409
    assert error_type(refused) == "RouterExternalGatewayInUseByFloatingIp"
    admin.put(f"/v2.0/floatingips/{s.fip['id']}", {"floatingip": {"port_id": None}})
    follower = Follower(admin, s.agent)
    for empty in ({}, None):
        removed = admin.put(
            f"/v2.0/routers/{s.router}", {"router": {"external_gateway_info": empty}}
        )
        assert removed.status == 200, removed.body
        assert removed.body["router"]["external_gateway_info"] is None
        assert (
            admin.get(f"/v2.0/ports?device_id={s.router}&device_owner=network:router_gateway").body[
                "ports"
            ]
            == []
        )
        assert follower.changed()[s.router]["gateway"] is None
        back = {"network_id": s.public}
        assert (
            admin.put(
                f"/v2.0/routers/{s.router}", {"router": {"external_gateway_info": back}}
            ).status
            == 200
        )
        assert follower.changed()[s.router]["gateway"] is not None
    # Anything else still needs its network.
    bad = admin.put(
        f"/v2.0/routers/{s.router}", {"router": {"external_gateway_info": {"enable_snat": False}}}
    )
    assert bad.status == 400 and "network_id" in bad.body["NeutronError"]["message"]
    created = admin.post("/v2.0/routers", {"router": {"name": "bare", "external_gateway_info": {}}})
    assert created.status == 201 and created.body["router"]["external_gateway_info"] is None


def test_a_change_noted_before_an_undone_savepoint_stands(admin: ApiClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Moving a gateway between external networks removes its port from the first, then
    makes one on the second in a savepoint, drawn again when its MAC is taken there. The
    first network's change must survive that savepoint's rollback."""
    from hanet.server import l3store
    from tests.unit.server.test_api_dhcp import register_dhcp

    first, second = external_net(admin), external_net(admin)
    taken = {"network_id": second, "mac_address": "fa:16:3e:00:00:09"}
    assert admin.post("/v2.0/ports", {"port": taken}).status == 201
    draws = iter(["fa:16:3e:00:00:01", "fa:16:3e:00:00:09", "fa:16:3e:00:00:0a"])
    monkeypatch.setattr(l3store, "_mac", lambda: next(draws))
    gateway = {"network_id": first}
    router = admin.post("/v2.0/routers", {"router": {"external_gateway_info": gateway}})
    assert router.status == 201, router.body
    dhcp = register_dhcp(admin, "dhcp0")
    admin.post(f"/v2.0/agents/{dhcp}/dhcp-networks", {"network_id": first})
    revision = admin.get(f"/hanet/v1/agents/{dhcp}/state").body["revision"]
    moved = admin.put(
        f"/v2.0/routers/{router.body['router']['id']}",
        {"router": {"external_gateway_info": {"network_id": second}}},
    )
    assert moved.status == 200, moved.body
    changes = admin.get(f"/hanet/v1/agents/{dhcp}/state?since={revision}").body
    (network,) = [n for n in changes["networks"] if n["id"] == first]
    assert [p for p in network["ports"] if p["device_owner"] == "network:router_gateway"] == []
