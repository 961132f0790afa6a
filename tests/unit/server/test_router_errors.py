"""Agents report routers they could not set up (POST /hanet/v1/agents/{id}/router_errors):
the Neutron API shows such a router's status as ERROR while a live agent hosting it says
so, the reasons are router events, and a report wakes no agent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig
from hanet.server.testing import ServerThread
from tests.unit.server.conftest import TOKENS
from tests.unit.server.test_api_routers import register
from tests.unit.server.test_router_documents import Follower

NET0_TOKEN = "net0-0123456789abcdef"
NET1_TOKEN = "net1-fedcba9876543210"


@pytest.fixture
def quiet_server(db_url: str) -> Iterator[ServerThread]:
    """Agents live until the test silences them, and the server's watch never runs within
    a test: a dead agent's place stays as it was, so only what the API shows changes."""
    config = ServerConfig(
        db=db_url,
        auth="token",
        tokens=TOKENS,
        agent_tokens={"net0": NET0_TOKEN, "net1": NET1_TOKEN},
        report_interval=100.0,
        agent_down_time=1000.0,
    )
    with ServerThread(config) as running:
        yield running


def errors(client: ApiClient, agent: str, routers: object) -> tuple[int, object]:
    reply = client.post(f"/hanet/v1/agents/{agent}/router_errors", {"routers": routers})
    return reply.status, reply.body


def status(admin: ApiClient, router: str) -> str:
    return str(admin.get(f"/v2.0/routers/{router}").body["router"]["status"])


def events(admin: ApiClient, router: str) -> list[tuple[str, str, str]]:
    reply = admin.get(f"/hanet/v1/routers/{router}/events")
    return [(e["kind"], e["host"], e["detail"]) for e in reply.body["events"]]


def message(body: object) -> str:
    assert isinstance(body, dict) and "NeutronError" in body, body
    return str(body["NeutronError"]["message"])


def test_a_reported_error_is_the_routers_status_until_cleared(quiet_server: ServerThread) -> None:
    admin = quiet_server.client("admin-token")
    agents = [register(admin, f"net{i}") for i in range(2)]
    router = admin.post("/v2.0/routers", {"router": {"name": "r", "ha": True}}).body["router"]
    assert router["status"] == "ACTIVE"
    other = admin.post("/v2.0/routers", {"router": {"name": "fine", "ha": True}}).body["router"]
    followers = [Follower(admin, a) for a in agents]

    reason = "keepalived refused the configuration: bad VIP"
    assert errors(admin, agents[0], {router["id"]: reason}) == (200, {"changed": 1})
    assert status(admin, router["id"]) == "ERROR"
    listed = {r["id"]: r["status"] for r in admin.get("/v2.0/routers").body["routers"]}
    assert listed == {router["id"]: "ERROR", other["id"]: "ACTIVE"}
    only = admin.get("/v2.0/routers?status=ERROR").body["routers"]
    assert [r["id"] for r in only] == [router["id"]]
    assert ("agent_error", "net0", f"net0: {reason}") in events(admin, router["id"])
    # No agent's document changed: nobody is woken by a report.
    assert [f.changed() for f in followers] == [{}, {}]

    # The same report again changes nothing and records nothing.
    assert errors(admin, agents[0], {router["id"]: reason}) == (200, {"changed": 0})
    assert [k for k, _, _ in events(admin, router["id"])].count("agent_error") == 1
    # The other agent clearing an error it never had changes nothing either.
    assert errors(admin, agents[1], {router["id"]: None}) == (200, {"changed": 0})
    assert status(admin, router["id"]) == "ERROR"

    assert errors(admin, agents[0], {router["id"]: None}) == (200, {"changed": 1})
    assert status(admin, router["id"]) == "ACTIVE"
    assert events(admin, router["id"])[-1] == (
        "agent_error_cleared",
        "net0",
        "net0 reports no error",
    )
    assert [f.changed() for f in followers] == [{}, {}]


def test_only_live_agents_errors_count(quiet_server: ServerThread) -> None:
    admin = quiet_server.client("admin-token")
    agents = [register(admin, f"net{i}") for i in range(2)]
    router = admin.post("/v2.0/routers", {"router": {"ha": True}}).body["router"]["id"]
    errors(admin, agents[0], {router: "no namespace"})
    errors(admin, agents[1], {router: "no namespace either"})
    quiet_server.silence(agents[0], 1001)  # dead, its place (and report) still there
    assert status(admin, router) == "ERROR"  # net1 is alive and still says so
    quiet_server.silence(agents[1], 1001)
    assert status(admin, router) == "ACTIVE"
    assert len(admin.get(f"/v2.0/routers/{router}/l3-agents").body["agents"]) == 2


def test_a_restarted_agent_starts_without_errors(quiet_server: ServerThread) -> None:
    admin = quiet_server.client("admin-token")
    agent = register(admin, "net0")
    router = admin.post("/v2.0/routers", {"router": {"name": "legacy"}}).body["router"]["id"]
    errors(admin, agent, {router: "could not add qr- device"})
    assert status(admin, router) == "ERROR"
    assert register(admin, "net0") == agent  # the agent restarted: it registers again
    assert status(admin, router) == "ACTIVE"
    assert events(admin, router)[-1] == ("agent_error_cleared", "net0", "net0's agent restarted")


def test_bad_reports_are_refused_whole_with_where_and_why(quiet_server: ServerThread) -> None:
    admin = quiet_server.client("admin-token")
    for host in ("net0", "net1"):
        register(admin, host)
    mine = admin.post("/v2.0/routers", {"router": {"name": "mine"}}).body["router"]["id"]
    other = admin.post("/v2.0/routers", {"router": {"name": "other"}}).body["router"]["id"]
    hosts = {
        r: admin.get(f"/v2.0/routers/{r}/l3-agents").body["agents"][0]["id"] for r in (mine, other)
    }
    assert hosts[mine] != hosts[other]  # least-loaded placement: one each
    agent = hosts[mine]
    unknown = "00000000-0000-0000-0000-000000000000"
    url = f"/hanet/v1/agents/{agent}/router_errors"

    cases = [
        ([1, 2], 400, "Invalid input for body"),
        ({"routers": [mine]}, 400, "Invalid input for routers. Reason: '['"),
        ({"routers": {}, "more": 1}, 400, "Invalid input for body"),
        ({"routers": {"r1": "x"}}, 400, "Invalid input for routers. Reason: 'r1' is not a valid"),
        ({"routers": {mine: 5}}, 400, f"Invalid input for routers.{mine}. Reason: '5' is not"),
        ({"routers": {mine: " "}}, 400, f"routers.{mine}. Reason: an empty reason; null clears"),
        ({"routers": {mine: "x" * 256}}, 400, f"routers.{mine}. Reason: the reason is longer"),
        (
            {"routers": {mine: "fine", other: "x"}},
            400,
            f"routers.{other}. Reason: router {other} is not hosted by agent {agent}",
        ),
        (
            {"routers": {mine: "fine", unknown: "x"}},
            404,
            f"routers.{unknown}. Reason: router {unknown} could not be found",
        ),
    ]
    for body, code, text in cases:
        reply = admin.post(url, body)
        assert reply.status == code, (body, reply.body)
        assert text in message(reply.body), (body, reply.body)
    # Nothing of a refused report was applied; 255 characters are taken.
    assert status(admin, mine) == "ACTIVE"
    assert errors(admin, agent, {mine: "x" * 255}) == (200, {"changed": 1})
    gone = admin.post(f"/hanet/v1/agents/{unknown}/router_errors", {"routers": {}})
    assert gone.status == 404 and gone.body["NeutronError"]["type"] == "AgentNotFound"


def test_a_host_reports_only_for_its_own_agents(quiet_server: ServerThread) -> None:
    admin = quiet_server.client("admin-token")
    net0, net1 = quiet_server.client(NET0_TOKEN), quiet_server.client(NET1_TOKEN)
    agent = register(net0, "net0")
    router = admin.post("/v2.0/routers", {"router": {"name": "r"}}).body["router"]["id"]
    code, body = errors(net1, agent, {router: "not mine to say"})
    assert code == 403 and "is not for agent" in message(body)
    assert status(admin, router) == "ACTIVE"
    assert errors(net0, agent, {router: "mine to say"}) == (200, {"changed": 1})
    assert status(admin, router) == "ERROR"
    member = quiet_server.client("alice-token")
    assert errors(member, agent, {router: None})[0] == 403
    assert status(admin, router) == "ERROR"
