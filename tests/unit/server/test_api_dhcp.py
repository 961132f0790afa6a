"""DHCP scheduling: each network with a DHCP subnet on dhcp_agents_per_network agents
(default 2); a dead agent's networks move (issue 4 §5)."""

from __future__ import annotations

from hanet.lab.daemons import wait_until
from hanet.server.client import ApiClient
from hanet.server.testing import ServerThread
from tests.unit.server.test_api_core import make_net
from tests.unit.server.test_api_routers import Heartbeats


def register_dhcp(admin: ApiClient, host: str) -> str:
    reply = admin.post("/hanet/v1/agents", {"agent": {"host": host, "agent_type": "DHCP agent"}})
    assert reply.status == 201, reply.body
    return str(reply.body["agent"]["id"])


def serving(admin: ApiClient, network: str) -> set[str]:
    return {a["host"] for a in admin.get(f"/v2.0/networks/{network}/dhcp-agents").body["agents"]}


def test_networks_get_two_dhcp_agents_and_move_off_a_dead_one(fast_server: ServerThread) -> None:
    admin = fast_server.client("admin-token")
    agents = {register_dhcp(admin, f"dhcp{i}"): f"dhcp{i}" for i in range(3)}
    beats = Heartbeats(admin, list(agents), 0.2)
    try:
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
        beats.agents.remove(victim)
        wait_until(
            lambda: (
                agents[victim] not in serving(admin, network) and len(serving(admin, network)) == 2
            ),
            10,
            "the network to move",
            step=0.1,
        )
        survivor = next(a for a in agents if a != victim)
        listed = admin.get(f"/v2.0/agents/{survivor}/dhcp-networks").body["networks"]
        assert [n["id"] for n in listed] == [network]
    finally:
        beats.close()


def test_dhcp_networks_by_hand(admin: ApiClient) -> None:
    agent = register_dhcp(admin, "dhcp0")
    network, _ = make_net(admin)
    assert admin.post(f"/v2.0/agents/{agent}/dhcp-networks", {"network_id": network}).status == 201
    again = admin.post(f"/v2.0/agents/{agent}/dhcp-networks", {"network_id": network})
    assert again.status == 409
    assert serving(admin, network) == {"dhcp0"}
    assert admin.delete(f"/v2.0/agents/{agent}/dhcp-networks/{network}").status == 204
    assert serving(admin, network) == set()
