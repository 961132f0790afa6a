"""Compute (L2) agents: a "Linux bridge agent" registers, heartbeats, is listed, and follows
the instance ports bound to its host (binding:host_id, device_owner compute:...) by change
number, as hanet-agent's compute mode does: every change to such a port, its addresses, or
its subnet or network reaches its host's agent, and a port that leaves the host is
"removed" for that host only."""

from __future__ import annotations

import threading
import time
from typing import Any

from hanet.server.client import ApiClient, Reply
from hanet.server.testing import ServerThread
from tests.unit.server.test_api_core import make_net
from tests.unit.server.test_query_counts import queries

L2 = "Linux bridge agent"


def register_l2(client: ApiClient, host: str) -> str:
    reply = client.post("/hanet/v1/agents", {"agent": {"host": host, "agent_type": L2}})
    assert reply.status == 201, reply.body
    return str(reply.body["agent"]["id"])


def vm_port(admin: ApiClient, net_id: str, host: str, **more: Any) -> dict[str, Any]:
    """A port as Nova binds one: on the compute host, owned by an instance."""
    fields = {
        "network_id": net_id,
        "binding:host_id": host,
        "device_owner": "compute:nova",
        "device_id": "5e0e1d76-6f4e-4c55-9a1c-1d1bd5b0c0de",
        **more,
    }
    reply = admin.post("/v2.0/ports", {"port": fields})
    assert reply.status == 201, reply.body
    return dict(reply.body["port"])


class PortFollower:
    """A compute agent following its host's ports by change number."""

    def __init__(self, client: ApiClient, agent: str) -> None:
        self.client, self.agent = client, agent
        full = client.get(f"/hanet/v1/agents/{agent}/state").body
        assert full["full"] is True and full["removed"] == []
        self.revision = full["revision"]
        self.ports = {p["id"]: p for p in full["ports"]}

    def changed(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        reply = self.client.get(f"/hanet/v1/agents/{self.agent}/state?since={self.revision}")
        assert reply.status == 200, reply.body
        assert reply.body["full"] is False and reply.body["schema_version"] == 1
        self.revision = reply.body["revision"]
        return {p["id"]: p for p in reply.body["ports"]}, reply.body["removed"]


def test_a_compute_agent_registers_and_is_listed(admin: ApiClient) -> None:
    agent = register_l2(admin, "compute1")
    assert register_l2(admin, "compute1") == agent  # one per (type, host)
    beat = admin.put(f"/hanet/v1/agents/{agent}/heartbeat", None)
    assert beat.status == 200 and beat.body["agent"]["agent_type"] == L2
    (listed,) = admin.get("/v2.0/agents").body["agents"]
    assert listed["id"] == agent and listed["host"] == "compute1" and listed["alive"] is True
    assert listed["agent_type"] == L2 and listed["topic"] == "N/A"
    assert admin.get(f"/v2.0/agents/{agent}").body["agent"]["binary"] == "hanet-agent"
    state = admin.get(f"/hanet/v1/agents/{agent}/state").body
    assert state == {
        "schema_version": 1,
        "revision": state["revision"],
        "full": True,
        "ports": [],
        "removed": [],
    }


def test_the_full_state_is_the_hosts_instance_ports(admin: ApiClient) -> None:
    agent = register_l2(admin, "compute1")
    register_l2(admin, "compute2")
    net_id, sub_id = make_net(admin)
    mine = vm_port(admin, net_id, "compute1", mac_address="fa:16:3e:12:34:56")
    vm_port(admin, net_id, "compute2")  # another host's
    unbound = admin.post("/v2.0/ports", {"port": {"network_id": net_id}}).body["port"]
    assert unbound["binding:host_id"] == "" and unbound["binding:vif_type"] == "unbound"
    # A port bound to the host that no instance owns (a DHCP port, say) is not the agent's.
    admin.post(
        "/v2.0/ports",
        {"port": {"network_id": net_id, "binding:host_id": "compute1", "device_owner": "x"}},
    )
    assert mine["binding:host_id"] == "compute1" and mine["binding:vif_type"] == "bridge"
    network = admin.get(f"/v2.0/networks/{net_id}").body["network"]
    (doc,) = admin.get(f"/hanet/v1/agents/{agent}/state").body["ports"]
    assert doc == {
        "id": mine["id"],
        "network_id": net_id,
        "mac_address": "fa:16:3e:12:34:56",
        "admin_state_up": True,
        "device_owner": "compute:nova",
        "device_id": "5e0e1d76-6f4e-4c55-9a1c-1d1bd5b0c0de",
        "fixed_ips": [
            {
                "subnet_id": sub_id,
                "ip_address": mine["fixed_ips"][0]["ip_address"],
                "prefixlen": 24,
                "cidr": "10.0.0.0/24",
                "gateway_ip": "10.0.0.1",
            }
        ],
        "network_type": "vxlan",
        "physical_network": None,
        "segmentation_id": network["provider:segmentation_id"],
        "mtu": 1450,
    }


def test_every_change_of_a_hosts_port_reaches_its_agent(admin: ApiClient) -> None:
    agent = register_l2(admin, "compute1")
    net_id, sub_id = make_net(admin)
    port = vm_port(admin, net_id, "compute1")
    follower = PortFollower(admin, agent)
    assert set(follower.ports) == {port["id"]}

    def one_change() -> dict[str, Any]:
        changed, removed = follower.changed()
        assert list(changed) == [port["id"]] and removed == []
        return changed[port["id"]]

    put = admin.put(f"/v2.0/ports/{port['id']}", {"port": {"admin_state_up": False}})
    assert put.status == 200, put.body
    assert one_change()["admin_state_up"] is False
    admin.put(f"/v2.0/ports/{port['id']}", {"port": {"mac_address": "fa:16:3e:00:00:07"}})
    assert one_change()["mac_address"] == "fa:16:3e:00:00:07"
    fixed = [{"subnet_id": sub_id, "ip_address": "10.0.0.77"}]
    admin.put(f"/v2.0/ports/{port['id']}", {"port": {"fixed_ips": fixed}})
    assert one_change()["fixed_ips"][0]["ip_address"] == "10.0.0.77"
    no_gateway = admin.put(f"/v2.0/subnets/{sub_id}", {"subnet": {"gateway_ip": None}})
    assert no_gateway.status == 200, no_gateway.body
    assert one_change()["fixed_ips"][0]["gateway_ip"] is None
    assert admin.put(f"/v2.0/networks/{net_id}", {"network": {"mtu": 1400}}).status == 200
    assert one_change()["mtu"] == 1400
    make_net(admin, "2001:db8::/64", ip_version=6)  # another network and its subnet
    assert follower.changed() == ({}, [])
    # What no port document shows does not resend it: a rename, another network's subnet.
    admin.put(f"/v2.0/subnets/{sub_id}", {"subnet": {"name": "renamed"}})
    admin.put(f"/v2.0/networks/{net_id}", {"network": {"name": "renamed"}})
    assert follower.changed() == ({}, [])


def test_a_port_leaving_the_host_is_removed_for_that_host_only(admin: ApiClient) -> None:
    agents = {h: register_l2(admin, h) for h in ("compute1", "compute2", "compute3")}
    net_id, _ = make_net(admin)
    moving = vm_port(admin, net_id, "compute1")
    deleted = vm_port(admin, net_id, "compute1")
    unowned = vm_port(admin, net_id, "compute1")
    followers = {h: PortFollower(admin, a) for h, a in agents.items()}
    assert set(followers["compute1"].ports) == {moving["id"], deleted["id"], unowned["id"]}

    admin.put(f"/v2.0/ports/{moving['id']}", {"port": {"binding:host_id": "compute2"}})
    admin.delete(f"/v2.0/ports/{deleted['id']}")
    admin.put(f"/v2.0/ports/{unowned['id']}", {"port": {"device_owner": "", "device_id": ""}})
    changed, removed = followers["compute1"].changed()
    assert changed == {} and removed == sorted([moving["id"], deleted["id"], unowned["id"]])
    changed, removed = followers["compute2"].changed()
    assert list(changed) == [moving["id"]] and removed == []
    assert changed[moving["id"]]["network_id"] == net_id
    # A host that never had them hears of none of it.
    assert followers["compute3"].changed() == ({}, [])


def test_a_compute_agents_long_poll_waits_for_its_own_hosts_ports(server: ServerThread) -> None:
    admin = server.client("admin-token")
    agent = register_l2(admin, "compute1")
    net_id, _ = make_net(admin)
    revision = admin.get(f"/hanet/v1/agents/{agent}/state").body["revision"]
    answer: dict[str, Reply] = {}

    def poll() -> None:
        answer["state"] = admin.get(f"/hanet/v1/agents/{agent}/state?since={revision}&wait=30")

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        deadline = time.monotonic() + 10
        while server.waiting_polls() != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.waiting_polls() == 1
        vm_port(admin, net_id, "compute2")  # another host's port: no reason to answer
        admin.post("/v2.0/routers", {"router": {"name": "r"}})  # nor a router
        time.sleep(0.5)  # five looks at the change log (a slow machine only looks fewer)
        assert "state" not in answer and server.waiting_polls() == 1
        mine = vm_port(admin, net_id, "compute1")
        poller.join(20)
        assert "state" in answer, "the long-poll did not answer its own host's change"
    finally:
        poller.join(40)
    body = answer["state"].body
    assert [p["id"] for p in body["ports"]] == [mine["id"]] and body["removed"] == []


def test_a_compute_agents_state_takes_the_same_queries_for_more_ports(
    server: ServerThread, admin: ApiClient
) -> None:
    agent = register_l2(admin, "compute1")
    net_id, _ = make_net(admin, "10.1.0.0/16")
    make_net(admin, "2001:db8::/64", ip_version=6)
    for _ in range(2):
        vm_port(admin, net_id, "compute1")
    few = queries(server, lambda: server.store.agent_state(agent, None))
    for _ in range(10):
        vm_port(admin, net_id, "compute1")
    assert len(server.store.agent_state(agent, None)["ports"]) == 12
    assert queries(server, lambda: server.store.agent_state(agent, None)) == few


def test_a_hosts_token_follows_only_its_own_compute_agent(db_url: str) -> None:
    from hanet.server.config import ServerConfig
    from tests.unit.server.conftest import TOKENS

    tokens = {"compute1": "c1-0123456789abcdef", "compute2": "c2-0123456789abcdef"}
    config = ServerConfig(db=db_url, auth="token", tokens=TOKENS, agent_tokens=tokens)
    with ServerThread(config) as server:
        own = server.client(tokens["compute1"])
        agent = register_l2(own, "compute1")
        other = register_l2(server.client(tokens["compute2"]), "compute2")
        assert own.get(f"/hanet/v1/agents/{agent}/state").status == 200
        assert own.get(f"/hanet/v1/agents/{other}/state").status == 403
        assert own.put(f"/hanet/v1/agents/{other}/heartbeat", None).status == 403
        # Binding a port to a host is the Neutron API's, admin only (as Nova does it).
        net = server.client("admin-token").post("/v2.0/networks", {"network": {"name": "n"}})
        body = {"port": {"network_id": net.body["network"]["id"], "binding:host_id": "compute1"}}
        assert own.post("/v2.0/ports", body).status == 403
        assert server.client("alice-token").post("/v2.0/ports", body).status in (403, 404)
