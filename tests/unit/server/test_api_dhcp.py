"""DHCP scheduling: each network with a DHCP subnet on dhcp_agents_per_network agents
(default 2); a dead agent's networks move (issue 4 §5)."""

from __future__ import annotations

import time

from hanet.lab.daemons import wait_until
from hanet.server.client import ApiClient
from hanet.server.testing import ServerThread
from tests.unit.server.conftest import DOWN_TIME
from tests.unit.server.test_api_core import make_net


def register_dhcp(admin: ApiClient, host: str) -> str:
    reply = admin.post("/hanet/v1/agents", {"agent": {"host": host, "agent_type": "DHCP agent"}})
    assert reply.status == 201, reply.body
    return str(reply.body["agent"]["id"])


def serving(admin: ApiClient, network: str) -> set[str]:
    return {a["host"] for a in admin.get(f"/v2.0/networks/{network}/dhcp-agents").body["agents"]}


def test_networks_get_two_dhcp_agents_and_move_off_a_dead_one(fast_server: ServerThread) -> None:
    admin = fast_server.client("admin-token")
    agents = {register_dhcp(admin, f"dhcp{i}"): f"dhcp{i}" for i in range(3)}
    network, _ = make_net(admin)
    no_dhcp = admin.post("/v2.0/networks", {"network": {}}).body["network"]["id"]
    admin.post(
        "/v2.0/subnets",
        {
            "subnet": {
                "network_id": no_dhcp,
                "ip_version": 4,
                "cidr": "10.5.0.0/24",
                "enable_dhcp": False,
            }
        },
    )
    wait_until(lambda: len(serving(admin, network)) == 2, 10, "two DHCP agents", step=0.1)
    assert serving(admin, no_dhcp) == set()
    victim = next(a for a, host in agents.items() if host in serving(admin, network))
    fast_server.silence(victim, DOWN_TIME + 1)  # its heartbeat stopped that long ago
    wait_until(
        lambda: agents[victim] not in serving(admin, network) and len(serving(admin, network)) == 2,
        10,
        "the network to move",
        step=0.1,
    )
    survivor = next(a for a in agents if a != victim)
    listed = admin.get(f"/v2.0/agents/{survivor}/dhcp-networks").body["networks"]
    assert [n["id"] for n in listed] == [network]


def test_dhcp_networks_by_hand(admin: ApiClient) -> None:
    agent = register_dhcp(admin, "dhcp0")
    network, _ = make_net(admin)
    assert admin.post(f"/v2.0/agents/{agent}/dhcp-networks", {"network_id": network}).status == 201
    again = admin.post(f"/v2.0/agents/{agent}/dhcp-networks", {"network_id": network})
    assert again.status == 409
    assert serving(admin, network) == {"dhcp0"}
    assert admin.delete(f"/v2.0/agents/{agent}/dhcp-networks/{network}").status == 204
    assert serving(admin, network) == set()


def test_a_dhcp_agent_fetches_its_networks_with_subnets_and_ports(admin: ApiClient) -> None:
    """The agents' protocol for DHCP agents (docs/server.md): networks instead of routers."""
    agent = register_dhcp(admin, "dhcp0")
    network, subnet = make_net(admin)
    admin.post(f"/v2.0/agents/{agent}/dhcp-networks", {"network_id": network})
    full = admin.get(f"/hanet/v1/agents/{agent}/state").body
    assert full["full"] is True and "routers" not in full
    (doc,) = full["networks"]
    assert doc["id"] == network and [s["id"] for s in doc["subnets"]] == [subnet]
    assert doc["subnets"][0]["cidr"] == "10.0.0.0/24" and doc["ports"] == []
    port = admin.post("/v2.0/ports", {"port": {"network_id": network}}).body["port"]
    changes = admin.get(f"/hanet/v1/agents/{agent}/state?since={full['revision']}").body
    (doc,) = changes["networks"]
    assert [(p["id"], p["mac_address"], p["fixed_ips"]) for p in doc["ports"]] == [
        (port["id"], port["mac_address"], port["fixed_ips"])
    ]
    nothing = admin.get(f"/hanet/v1/agents/{agent}/state?since={changes['revision']}").body
    assert nothing["networks"] == [] and nothing["removed"] == []
    admin.delete(f"/v2.0/ports/{port['id']}")
    assert admin.delete(f"/v2.0/networks/{network}").status == 204
    gone = admin.get(f"/hanet/v1/agents/{agent}/state?since={changes['revision']}").body
    assert gone["networks"] == [] and gone["removed"] == [network]


def test_each_agent_follows_only_its_own_kind_of_change(admin: ApiClient) -> None:
    dhcp = register_dhcp(admin, "dhcp0")
    l3 = admin.post("/hanet/v1/agents", {"agent": {"host": "net0", "agent_type": "L3 agent"}})
    l3_agent = l3.body["agent"]["id"]
    network, _ = make_net(admin)
    admin.post(f"/v2.0/agents/{dhcp}/dhcp-networks", {"network_id": network})
    revision = admin.get(f"/hanet/v1/agents/{l3_agent}/state").body["revision"]
    admin.post("/v2.0/ports", {"port": {"network_id": network}})
    # A network changed: the L3 agent's long-poll holds on, then answers with nothing.
    started = time.monotonic()
    held = admin.get(f"/hanet/v1/agents/{l3_agent}/state?since={revision}&wait=1").body
    assert time.monotonic() - started >= 0.9
    assert held["routers"] == [] and held["removed"] == []
    # The DHCP agent's poll answers at once with the network.
    started = time.monotonic()
    answer = admin.get(f"/hanet/v1/agents/{dhcp}/state?since={revision}&wait=20").body
    assert time.monotonic() - started < 10
    assert [n["id"] for n in answer["networks"]] == [network]
