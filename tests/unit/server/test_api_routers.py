"""Routers, HA and scheduling over simulated L3 agents (they register and heartbeat over
HTTP as hanet-agent will)."""

from __future__ import annotations

from hanet.lab.daemons import wait_until
from hanet.server.client import ApiClient
from hanet.server.testing import ServerThread
from tests.unit.server.conftest import DOWN_TIME
from tests.unit.server.test_api_core import error_type, make_net


def register(admin: ApiClient, host: str, zone: str | None = None) -> str:
    reply = admin.post(
        "/hanet/v1/agents",
        {"agent": {"host": host, "agent_type": "L3 agent", "availability_zone": zone}},
    )
    assert reply.status == 201, reply.body
    return str(reply.body["agent"]["id"])


def external_net(admin: ApiClient) -> str:
    net = admin.post("/v2.0/networks", {"network": {"name": "public", "router:external": True}})
    subnet = {"network_id": net.body["network"]["id"], "ip_version": 4, "cidr": "203.0.113.0/24"}
    admin.post("/v2.0/subnets", {"subnet": subnet})
    return str(net.body["network"]["id"])


def test_ha_router_with_interface_and_gateway_lands_on_three_agents(admin: ApiClient) -> None:
    agents = [register(admin, f"net{i}") for i in range(4)]
    public = external_net(admin)
    router = admin.post(
        "/v2.0/routers",
        {"router": {"name": "r1", "ha": True, "external_gateway_info": {"network_id": public}}},
    )
    assert router.status == 201, router.body
    body = router.body["router"]
    assert body["ha"] is True and body["external_gateway_info"]["network_id"] == public
    assert body["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] == "203.0.113.2"
    net_id, sub_id = make_net(admin)
    added = admin.put(f"/v2.0/routers/{body['id']}/add_router_interface", {"subnet_id": sub_id})
    assert added.status == 200 and added.body["subnet_id"] == sub_id
    port = admin.get(f"/v2.0/ports/{added.body['port_id']}").body["port"]
    assert port["fixed_ips"][0]["ip_address"] == "10.0.0.1"
    assert port["device_owner"] == "network:router_interface"
    hosting = admin.get(f"/v2.0/routers/{body['id']}/l3-agents").body["agents"]
    assert len(hosting) == 3 and {a["ha_state"] for a in hosting} == {"standby"}
    assert {a["id"] for a in hosting} <= set(agents)
    ha_ports = admin.get(
        f"/v2.0/ports?device_id={body['id']}&device_owner=network:router_ha_interface"
    ).body["ports"]
    assert sorted(p["binding:host_id"] for p in ha_ports) == sorted(a["host"] for a in hosting)
    assert all(p["fixed_ips"][0]["ip_address"].startswith("169.254.") for p in ha_ports)
    refused = admin.delete(f"/v2.0/routers/{body['id']}")
    assert refused.status == 409 and error_type(refused) == "RouterInUse"
    removed = admin.put(
        f"/v2.0/routers/{body['id']}/remove_router_interface", {"subnet_id": sub_id}
    )
    assert removed.status == 200
    assert admin.delete(f"/v2.0/routers/{body['id']}").status == 204
    assert admin.get(f"/v2.0/ports?device_id={body['id']}").body["ports"] == []
    _ = net_id


def test_least_routers_placement_spreads_legacy_routers(admin: ApiClient) -> None:
    agents = [register(admin, f"net{i}") for i in range(3)]
    for i in range(6):
        assert admin.post("/v2.0/routers", {"router": {"name": f"r{i}"}}).status == 201
    loads = [len(admin.get(f"/v2.0/agents/{a}/l3-routers").body["routers"]) for a in agents]
    assert loads == [2, 2, 2]


def test_the_ha_network_is_hidden_and_vrids_are_unique(alice: ApiClient, admin: ApiClient) -> None:
    register(admin, "net0")
    # ha is admin-only, as in Neutron's policy: a project gets it from the l3_ha default.
    refused = alice.post("/v2.0/routers", {"router": {"ha": True}})
    assert refused.status == 403
    created = [
        admin.post("/v2.0/routers", {"router": {"ha": True, "project_id": "alice"}})
        for _ in range(3)
    ]
    assert all(r.status == 201 for r in created)
    assert alice.get("/v2.0/networks").body["networks"] == []  # the HA network is hidden
    assert len(alice.get("/v2.0/routers").body["routers"]) == 3
    ha_nets = [
        n
        for n in admin.get("/v2.0/networks").body["networks"]
        if n["name"] == "HA network tenant alice"
    ]
    assert len(ha_nets) == 1


def test_a_project_past_254_ha_routers_gets_a_second_ha_network(admin: ApiClient) -> None:
    """Neutron stops at 254 HA routers per project (one VRID each on one HA network)."""
    for _ in range(255):
        assert admin.post("/v2.0/routers", {"router": {"ha": True}}).status == 201
    ha_nets = [
        n
        for n in admin.get("/v2.0/networks").body["networks"]
        if n["name"].startswith("HA network tenant")
    ]
    assert len(ha_nets) == 2


def test_agents_list_and_admin_only(alice: ApiClient, admin: ApiClient) -> None:
    agent = register(admin, "net0", zone="az1")
    listed = admin.get("/v2.0/agents").body["agents"]
    assert [a["host"] for a in listed] == ["net0"] and listed[0]["alive"] is True
    assert listed[0]["agent_type"] == "L3 agent" and listed[0]["availability_zone"] == "az1"
    assert alice.get("/v2.0/agents").status == 403
    assert admin.post("/v2.0/agents", {"agent": {}}).status == 405
    down = admin.put(f"/v2.0/agents/{agent}", {"agent": {"admin_state_up": False}})
    assert down.status == 200 and down.body["agent"]["admin_state_up"] is False


class Heartbeats:
    """Simulated agents' heartbeats, from a thread, until stopped. (The unit tests decide
    when an agent dies with ServerThread.silence instead.)"""

    def __init__(self, client: ApiClient, agents: list[str], every: float) -> None:
        import threading

        self.client, self.agents, self.every = client, list(agents), every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            for agent in list(self.agents):
                self.client.put(f"/hanet/v1/agents/{agent}/heartbeat", None)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def test_a_dead_agents_ha_routers_get_a_replacement(fast_server: ServerThread) -> None:
    admin = fast_server.client("admin-token")
    agents = [register(admin, f"net{i}") for i in range(4)]
    routers = [
        admin.post("/v2.0/routers", {"router": {"ha": True}}).body["router"]["id"] for _ in range(4)
    ]
    victim = agents[0]
    hosted = {r for r in routers if victim in hosts(admin, r)}
    assert hosted
    # Silent for a while, but less than agent_down_time: not dead, nothing moves.
    fast_server.silence(victim, DOWN_TIME - 60)
    assert fast_server.store.reschedule_dead() == []
    assert all(victim in hosts(admin, r) for r in hosted)
    fast_server.silence(victim, DOWN_TIME + 1)  # its heartbeat stopped that long ago

    def victim_is_replaced() -> bool:
        placed = [hosts(admin, r) for r in hosted]
        return all(victim not in p and len(p) == 3 for p in placed)

    wait_until(victim_is_replaced, 10, "the dead agent's routers to move", step=0.2)
    alive = {a["id"]: a["alive"] for a in admin.get("/v2.0/agents").body["agents"]}
    assert alive == {a: a != victim for a in agents}


def hosts(admin: ApiClient, router: str) -> set[str]:
    return {a["id"] for a in admin.get(f"/v2.0/routers/{router}/l3-agents").body["agents"]}


def test_routers_made_before_any_agent_are_placed_when_agents_come(fast_server) -> None:  # type: ignore[no-untyped-def]
    admin = fast_server.client("admin-token")
    router = admin.post("/v2.0/routers", {"router": {"ha": True}}).body["router"]["id"]
    assert hosts(admin, router) == set()
    agents = [register(admin, f"net{i}") for i in range(3)]
    wait_until(
        lambda: hosts(admin, router) == set(agents),
        10,
        "the router to be placed on the new agents",
        step=0.1,
    )


def test_a_taken_random_mac_is_drawn_again(admin: ApiClient, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """MACs are 24 random bits: on a big HA network a draw can collide. The router is
    still made (the port draws again), not refused."""
    from hanet.server import l3store

    register(admin, "net0")
    draws = iter(["fa:16:3e:00:00:01", "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"])
    monkeypatch.setattr(l3store, "_mac", lambda: next(draws))
    first = admin.post("/v2.0/routers", {"router": {"ha": True}})
    second = admin.post("/v2.0/routers", {"router": {"ha": True}})
    assert first.status == second.status == 201, second.body
    macs = [
        p["mac_address"]
        for p in admin.get("/v2.0/ports?device_owner=network:router_ha_interface").body["ports"]
    ]
    assert sorted(macs) == ["fa:16:3e:00:00:01", "fa:16:3e:00:00:02"]
