"""Each node's agents authenticate with their host's own token (``agent_tokens``), good only
for the agents' protocol about that host's agents; admin tokens keep every right."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig, ServerConfigError, load_config
from hanet.server.testing import ServerProcess, ServerThread
from tests.unit.server.conftest import TOKENS

NET1_TOKEN = "net1-0123456789abcdef"
NET2_TOKEN = "net2-fedcba9876543210"
AGENT_TOKENS = {"net1": NET1_TOKEN, "net2": NET2_TOKEN}


@pytest.fixture
def server(db_url: str) -> Iterator[ServerThread]:
    config = ServerConfig(db=db_url, auth="token", tokens=TOKENS, agent_tokens=AGENT_TOKENS)
    with ServerThread(config) as running:
        yield running


def register(client: ApiClient, host: str, agent_type: str = "L3 agent") -> str:
    reply = client.post("/hanet/v1/agents", {"agent": {"host": host, "agent_type": agent_type}})
    assert reply.status == 201, reply.body
    return str(reply.body["agent"]["id"])


def refused(reply_status: int, body: object, status: int = 403) -> bool:
    return reply_status == status and isinstance(body, dict) and "NeutronError" in body


def test_an_agent_speaks_for_its_own_host(server: ServerThread) -> None:
    admin, net1 = server.client("admin-token"), server.client(NET1_TOKEN)
    agent = register(net1, "net1")
    register(server.client(NET2_TOKEN), "net2")
    router = admin.post("/v2.0/routers", {"router": {"name": "r", "ha": True}}).body["router"]

    beat = net1.put(f"/hanet/v1/agents/{agent}/heartbeat", None)
    assert beat.status == 200 and beat.body["agent"]["host"] == "net1"
    full = net1.get(f"/hanet/v1/agents/{agent}/state")
    assert full.status == 200 and [r["id"] for r in full.body["routers"]] == [router["id"]]
    admin.put(f"/v2.0/routers/{router['id']}", {"router": {"name": "renamed"}})
    changes = net1.get(f"/hanet/v1/agents/{agent}/state?since={full.body['revision']}&wait=20")
    assert changes.status == 200 and [r["name"] for r in changes.body["routers"]] == ["renamed"]

    report = net1.post(f"/hanet/v1/agents/{agent}/ha_states", {"routers": {router["id"]: "active"}})
    assert report.status == 200 and report.body == {"changed": 1}
    hosting = admin.get(f"/v2.0/routers/{router['id']}/l3-agents").body["agents"]
    assert {a["host"]: a["ha_state"] for a in hosting} == {"net1": "active", "net2": "standby"}


def test_a_host_token_serves_each_agent_of_that_host(server: ServerThread) -> None:
    net1 = server.client(NET1_TOKEN)
    dhcp = register(net1, "net1", "DHCP agent")
    assert net1.put(f"/hanet/v1/agents/{dhcp}/heartbeat", None).status == 200
    state = net1.get(f"/hanet/v1/agents/{dhcp}/state")
    assert state.status == 200 and state.body["networks"] == []


def test_an_agent_cannot_speak_for_another_host(server: ServerThread) -> None:
    admin, net1 = server.client("admin-token"), server.client(NET1_TOKEN)
    register(net1, "net1")
    other = register(server.client(NET2_TOKEN), "net2")
    router = admin.post("/v2.0/routers", {"router": {"ha": True}}).body["router"]["id"]

    as_net2 = net1.post("/hanet/v1/agents", {"agent": {"host": "net2", "agent_type": "L3 agent"}})
    assert refused(as_net2.status, as_net2.body)
    assert "cannot register an agent of host net2" in as_net2.body["NeutronError"]["message"]
    for reply in (
        net1.put(f"/hanet/v1/agents/{other}/heartbeat", None),
        net1.get(f"/hanet/v1/agents/{other}/state"),
        net1.get(f"/hanet/v1/agents/{other}/state?since=0&wait=5"),
        net1.post(f"/hanet/v1/agents/{other}/ha_states", {"routers": {router: "active"}}),
    ):
        assert refused(reply.status, reply.body), reply
        assert reply.body["NeutronError"]["type"] == "PolicyNotAuthorized"
    hosting = admin.get(f"/v2.0/routers/{router}/l3-agents").body["agents"]
    assert {a["host"]: a["ha_state"] for a in hosting}["net2"] == "standby"
    unknown = net1.put("/hanet/v1/agents/00000000-0000-0000-0000-000000000000/heartbeat", None)
    assert unknown.status == 404


def test_an_agent_token_has_no_api_rights(server: ServerThread) -> None:
    admin, net1 = server.client("admin-token"), server.client(NET1_TOKEN)
    agent = register(net1, "net1")
    router = admin.post("/v2.0/routers", {"router": {"ha": True}}).body["router"]["id"]
    for reply in (
        net1.get("/v2.0/networks"),
        net1.post("/v2.0/networks", {"network": {"name": "mine"}}),
        net1.get("/v2.0/agents"),
        net1.put(f"/v2.0/agents/{agent}", {"agent": {"admin_state_up": False}}),
        net1.get(f"/v2.0/routers/{router}/l3-agents"),
        net1.delete(f"/v2.0/routers/{router}"),
        net1.get("/v2.0/extensions"),
        net1.get(f"/hanet/v1/routers/{router}/events"),
    ):
        assert refused(reply.status, reply.body), reply
        assert "only for the agents' own calls" in reply.body["NeutronError"]["message"]
    names = [n["name"] for n in admin.get("/v2.0/networks").body["networks"]]
    assert "mine" not in names
    assert admin.get(f"/v2.0/routers/{router}").status == 200


def test_the_admin_token_keeps_every_right(server: ServerThread) -> None:
    admin = server.client("admin-token")
    agents = {host: register(server.client(token), host) for host, token in AGENT_TOKENS.items()}
    router = admin.post("/v2.0/routers", {"router": {"ha": True}}).body["router"]["id"]
    assert register(admin, "net3")  # a host with no agent token of its own
    for agent in agents.values():
        assert admin.put(f"/hanet/v1/agents/{agent}/heartbeat", None).status == 200
        assert admin.get(f"/hanet/v1/agents/{agent}/state").status == 200
    faulty = {"routers": {router: "fault"}}
    report = admin.post(f"/hanet/v1/agents/{agents['net2']}/ha_states", faulty)
    assert report.status == 200 and report.body == {"changed": 1}
    assert admin.get("/v2.0/networks").status == 200
    member = server.client("alice-token").get(f"/hanet/v1/agents/{agents['net1']}/state")
    assert refused(member.status, member.body)


def test_a_bad_token_is_401_and_no_token_is_logged(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    agent = register(server.client(NET1_TOKEN), "net1")
    for token in (None, "", "net1-0123456789abcdeX", NET1_TOKEN[:-1], NET1_TOKEN.upper()):
        client = server.client(token)
        for reply in (
            client.put(f"/hanet/v1/agents/{agent}/heartbeat", None),
            client.get(f"/hanet/v1/agents/{agent}/state"),
            client.get("/v2.0/networks"),
        ):
            assert refused(reply.status, reply.body, 401), (token, reply)
            assert reply.body["NeutronError"]["message"] == "Authentication required"
    server.client(NET1_TOKEN).get("/v2.0/networks")  # refused, 403
    assert caplog.records  # the access log saw the requests
    assert NET1_TOKEN not in caplog.text and NET1_TOKEN[:-1] not in caplog.text


def test_a_config_may_hold_only_digests(tmp_path: Path) -> None:
    """A file with ``sha256:<hex>`` in place of a token: the server never holds the token,
    and sending the digest itself is no way in."""
    digest = "sha256:" + hashlib.sha256(NET1_TOKEN.encode()).hexdigest()
    path = tmp_path / "server.yaml"
    path.write_text(
        f"db: sqlite:///{tmp_path / 'hanet.db'}\nauth: token\n"
        f"tokens: {{admin-token: {{project: admin, role: admin}}}}\n"
        f"agent_tokens:\n  net1: '{digest}'\n"
    )
    config = load_config(path)
    assert NET1_TOKEN not in repr(config)
    with ServerThread(config) as server:
        agent = register(server.client(NET1_TOKEN), "net1")
        assert server.client(NET1_TOKEN).get(f"/hanet/v1/agents/{agent}/state").status == 200
        by_digest = server.client(digest).put(f"/hanet/v1/agents/{agent}/heartbeat", None)
        assert by_digest.status == 401


@pytest.mark.parametrize(
    ("agent_tokens", "message"),
    [
        ({"net1": "short"}, "agent_tokens.net1: expected at least 16 characters"),
        ({"net1": NET1_TOKEN, "net2": NET1_TOKEN}, "agent_tokens.net2: the same token as net1's"),
        ({"net1": "admin-token-0123456789"}, "agent_tokens.net1: the same as one of tokens"),
        ({"net1": "sha256:abc"}, "agent_tokens.net1: expected sha256: and 64 hex digits"),
        ({"net1": "with a space 0123456789"}, "agent_tokens.net1: expected at least 16"),
        ({"net1": 12345678901234567890}, "agent_tokens.net1: expected a token of printable ASCII"),
        ({"": NET1_TOKEN}, "agent_tokens: a host must be a non-empty string"),
        (["net1"], "agent_tokens: expected host: token"),
    ],
)
def test_bad_agent_tokens_are_refused_without_showing_them(
    tmp_path: Path, agent_tokens: object, message: str
) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "auth": "token",
                "tokens": {"admin-token-0123456789": {"project": "admin", "role": "admin"}},
                "agent_tokens": agent_tokens,
            }
        )
    )
    with pytest.raises(ServerConfigError) as error:
        load_config(path)
    assert message in str(error.value)
    assert NET1_TOKEN not in str(error.value) and "0123456789" not in str(error.value)


def test_noauth_checks_nothing(tmp_path: Path) -> None:
    """The lab's default: every request is admin, whatever token it carries."""
    config = ServerConfig(db=f"sqlite:///{tmp_path / 'hanet.db'}", agent_tokens=AGENT_TOKENS)
    with ServerThread(config) as server:
        net1 = server.client(NET1_TOKEN)
        other = register(server.client(), "net2")
        assert net1.put(f"/hanet/v1/agents/{other}/heartbeat", None).status == 200
        assert net1.get("/v2.0/networks").status == 200


def test_a_bad_admin_token_entry_is_named_without_the_token(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    secret = "admin-secret-0123456789"
    tokens = {"fine-token": {"project": "p"}, secret: {}}
    path.write_text(yaml.safe_dump({"tokens": tokens}, sort_keys=False))
    with pytest.raises(ServerConfigError) as error:
        load_config(path)
    assert "tokens (entry 2): expected {project, role}" in str(error.value)
    assert secret not in str(error.value)


def test_the_server_process_warns_that_noauth_ignores_agent_tokens(tmp_path: Path) -> None:
    config = ServerConfig(db=f"sqlite:///{tmp_path / 'hanet.db'}", agent_tokens=AGENT_TOKENS)
    with ServerProcess(config, tmp_path) as server:
        assert server.client().get("/v2.0/networks").status == 200
        log = server.log()
    assert "auth is noauth: every request is admin; tokens and agent_tokens are ignored" in log
    assert NET1_TOKEN not in log


def test_the_server_process_reads_agent_tokens_from_its_file(tmp_path: Path) -> None:
    config = ServerConfig(
        db=f"sqlite:///{tmp_path / 'hanet.db'}",
        auth="token",
        tokens=TOKENS,
        agent_tokens=AGENT_TOKENS,
    )
    with ServerProcess(config, tmp_path) as server:
        net1 = server.client(NET1_TOKEN)
        agent = register(net1, "net1")
        assert net1.put(f"/hanet/v1/agents/{agent}/heartbeat", None).status == 200
        assert net1.get("/v2.0/networks").status == 403
        log = server.log()
    assert "ignored" not in log and NET1_TOKEN not in log
