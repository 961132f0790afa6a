"""The agents' protocol (docs/server.md): state by change number with a long-poll, HA
state reports shown by the API, and split-brain arbitration, with simulated agents."""

from __future__ import annotations

import threading
import time

from hanet.lab.daemons import wait_until
from hanet.server.client import ApiClient, Reply
from hanet.server.testing import ServerThread
from tests.unit.server.test_api_core import make_net
from tests.unit.server.test_api_routers import register


def test_full_state_then_changes_only(admin: ApiClient) -> None:
    agent = register(admin, "net0")
    router = admin.post("/v2.0/routers", {"router": {"name": "r", "ha": True}}).body["router"]
    full = admin.get(f"/hanet/v1/agents/{agent}/state").body
    assert full["full"] is True and [r["id"] for r in full["routers"]] == [router["id"]]
    doc = full["routers"][0]
    assert doc["ha"] is True and 1 <= doc["vrid"] <= 254
    assert doc["ha_port"]["fixed_ips"][0]["cidr"] == "169.254.192.0/18"
    _, sub_id = make_net(admin)
    admin.put(f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": sub_id})
    changes = admin.get(f"/hanet/v1/agents/{agent}/state?since={full['revision']}").body
    assert changes["full"] is False and changes["revision"] > full["revision"]
    (changed,) = changes["routers"]
    assert changed["interfaces"][0]["fixed_ips"][0]["ip_address"] == "10.0.0.1"
    assert changed["interfaces"][0]["fixed_ips"][0]["prefixlen"] == 24
    admin.put(f"/v2.0/routers/{router['id']}/remove_router_interface", {"subnet_id": sub_id})
    admin.delete(f"/v2.0/routers/{router['id']}")
    gone = admin.get(f"/hanet/v1/agents/{agent}/state?since={changes['revision']}").body
    assert gone["routers"] == [] and gone["removed"] == [router["id"]]


def test_a_long_poll_holds_until_something_changes(server: ServerThread) -> None:
    admin = server.client("admin-token")
    agent = register(admin, "net0")
    revision = admin.get(f"/hanet/v1/agents/{agent}/state").body["revision"]
    answer: dict[str, Reply] = {}

    def poll() -> None:
        answer["state"] = admin.get(f"/hanet/v1/agents/{agent}/state?since={revision}&wait=30")

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        # The server says the poll looked, found nothing newer, and holds: a poll that
        # answered at once never gets here.
        wait_until(lambda: server.waiting_polls() == 1, 10, "the long-poll to hold")
        assert "state" not in answer
        admin.post("/v2.0/routers", {"router": {"name": "late"}})
        # Well before its own 30 s: it answers because of the change.
        wait_until(lambda: "state" in answer, 20, "the long-poll to answer the change")
    finally:
        poller.join(40)
    assert [r["name"] for r in answer["state"].body["routers"]] == ["late"]
    assert server.waiting_polls() == 0


def test_reported_ha_state_shows_in_the_api(admin: ApiClient) -> None:
    agents = [register(admin, f"net{i}") for i in range(3)]
    router = admin.post("/v2.0/routers", {"router": {"ha": True}}).body["router"]["id"]
    reply = admin.post(f"/hanet/v1/agents/{agents[1]}/ha_states", {"routers": {router: "active"}})
    assert reply.status == 200 and reply.body == {"changed": 1}
    states = {
        a["id"]: a["ha_state"]
        for a in admin.get(f"/v2.0/routers/{router}/l3-agents").body["agents"]
    }
    assert states == {agents[0]: "standby", agents[1]: "active", agents[2]: "standby"}
    bad = admin.post(f"/hanet/v1/agents/{agents[1]}/ha_states", {"routers": {router: "boss"}})
    assert bad.status == 400


def test_split_brain_lower_address_steps_down(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hanet.server.config import ServerConfig
    from tests.unit.server.conftest import DOWN_TIME, TOKENS

    config = ServerConfig(
        db=f"sqlite:///{tmp_path / 'hanet.db'}",
        auth="token",
        tokens=TOKENS,
        report_interval=0.2,
        agent_down_time=DOWN_TIME,  # both agents live through the test without heartbeats
    )
    with ServerThread(config) as server:
        admin = server.client("admin-token")
        agents = [register(admin, f"net{i}") for i in range(2)]
        arbitrate(admin, agents)


def arbitrate(admin: ApiClient, agents: list[str]) -> None:
    router = admin.post("/v2.0/routers", {"router": {"ha": True}}).body["router"]["id"]
    docs = {a: admin.get(f"/hanet/v1/agents/{a}/state").body["routers"][0] for a in agents}
    address = {a: docs[a]["ha_port"]["fixed_ips"][0]["ip_address"] for a in agents}
    loser = min(agents, key=lambda a: tuple(int(x) for x in address[a].split(".")))
    winner = next(a for a in agents if a != loser)
    for agent in agents:  # both claim the router: a partition between them
        admin.post(f"/hanet/v1/agents/{agent}/ha_states", {"routers": {router: "active"}})
    reported = time.monotonic()

    def loser_told() -> bool:
        for agent in agents:  # both still heartbeat: a real split brain, not a crash
            admin.put(f"/hanet/v1/agents/{agent}/heartbeat", None)
        doc = admin.get(f"/hanet/v1/agents/{loser}/state").body["routers"][0]
        return bool(doc["forced_standby"])

    wait_until(loser_told, 10, "the server to tell the lower address to stand by", step=0.1)
    assert time.monotonic() - reported >= 2.0  # only after 2 s of both active
    winner_doc = admin.get(f"/hanet/v1/agents/{winner}/state").body["routers"][0]
    assert winner_doc["forced_standby"] is False
    admin.post(f"/hanet/v1/agents/{loser}/ha_states", {"routers": {router: "standby"}})
    kinds = [
        (e["kind"], e["agent_id"])
        for e in admin.get(f"/hanet/v1/routers/{router}/events").body["events"]
    ]
    assert ("split_brain_step_down", loser) in kinds
    # The winner dies (reports standby, say): the order is lifted so the loser may take over.
    admin.post(f"/hanet/v1/agents/{winner}/ha_states", {"routers": {router: "standby"}})
    wait_until(lambda: not loser_told(), 10, "the order to be lifted", step=0.1)
