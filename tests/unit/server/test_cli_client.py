"""The ``hanet`` client commands against a real hanet-server (noauth, as in the lab)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from hanet.cli.main import main
from hanet.server.config import ServerConfig
from hanet.server.testing import ServerThread
from tests.unit.server.test_api_routers import register


@pytest.fixture
def noauth(tmp_path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    with ServerThread(ServerConfig(db=f"sqlite:///{tmp_path / 'hanet.db'}")) as server:
        yield server


def hanet(server: ServerThread, *args: str) -> str:
    result = CliRunner().invoke(main, [args[0], "--url", server.url, *args[1:]])
    assert result.exit_code == 0, result.output
    return result.output


def test_router_create_show_and_hosting_agents(noauth: ServerThread) -> None:
    admin = noauth.client()
    for i in range(3):
        register(admin, f"net{i}")
    created = json.loads(hanet(noauth, "router", "-f", "json", "create", "r1", "--ha"))
    router_id = created[0]["id"]
    assert created[0]["ha"] is True
    shown = json.loads(hanet(noauth, "router", "-f", "json", "show", router_id))
    assert shown["name"] == "r1" and len(shown["l3_agents"]) == 3
    assert {a["ha_state"] for a in shown["l3_agents"]} == {"standby"}
    table = hanet(noauth, "l3-agent", "list-hosting-router", router_id)
    assert "net0" in table and "standby" in table
    agents = json.loads(hanet(noauth, "agent", "-f", "json", "list"))
    assert sorted(a["host"] for a in agents) == ["net0", "net1", "net2"]
    assert "r1" in hanet(noauth, "router", "list")


def test_router_events_and_errors(noauth: ServerThread) -> None:
    admin = noauth.client()
    agent = register(admin, "net0")
    router_id = json.loads(hanet(noauth, "router", "-f", "json", "create", "r", "--ha"))[0]["id"]
    admin.post(f"/hanet/v1/agents/{agent}/ha_states", {"routers": {router_id: "active"}})
    events = json.loads(hanet(noauth, "router", "-f", "json", "events", router_id))
    assert [(e["kind"], e["host"]) for e in events] == [("became_active", "net0")]
    missing = CliRunner().invoke(
        main, ["router", "--url", noauth.url, "show", "00000000-0000-0000-0000-000000000000"]
    )
    assert missing.exit_code != 0 and "RouterNotFound" in missing.output
