"""The real `openstack` client (python-openstackclient) against hanet-server, with auth
type none and with tokens (issue 4, 'Done when')."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hanet.server.config import ServerConfig, Token
from hanet.server.testing import ServerThread
from tests.unit.server.test_api_routers import Heartbeats

OPENSTACK = shutil.which("openstack", path=str(Path(sys.executable).parent)) or shutil.which(
    "openstack"
)
pytestmark = pytest.mark.skipif(OPENSTACK is None, reason="python-openstackclient missing")
TOKENS = {"alice-token": Token("alice"), "admin-token": Token("ops", "admin")}


@pytest.fixture
def server(tmp_path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    config = ServerConfig(db=f"sqlite:///{tmp_path / 'hanet.db'}", auth="token", tokens=TOKENS)
    with ServerThread(config) as running:
        yield running


@pytest.fixture
def noauth(tmp_path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    with ServerThread(ServerConfig(db=f"sqlite:///{tmp_path / 'hanet.db'}")) as running:
        yield running


def openstack(
    server: ServerThread, *args: str, token: str | None = None, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    auth = (
        ["--os-auth-type", "none"]
        if token is None
        else ["--os-auth-type", "admin_token", "--os-token", token]
    )
    assert OPENSTACK is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    result = subprocess.run(
        [OPENSTACK, *auth, "--os-endpoint", server.url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert (result.returncode == 0) == ok, result.stderr
    return result


def value(server: ServerThread, *args: str, token: str | None = None) -> dict:  # type: ignore[type-arg]
    return json.loads(openstack(server, *args, "-f", "json", token=token).stdout)  # type: ignore[no-any-return]


def test_ha_router_life_with_auth_type_none(noauth: ServerThread) -> None:
    agent = noauth.client().post(
        "/hanet/v1/agents", {"agent": {"host": "node1", "agent_type": "L3 agent"}}
    )
    assert agent.status == 201
    beats = Heartbeats(noauth.client(), [agent.body["agent"]["id"]], 0.5)
    try:
        ha_router_life(noauth)
    finally:
        beats.close()


def ha_router_life(noauth: ServerThread) -> None:
    value(noauth, "network", "create", "blue")
    subnet = value(
        noauth, "subnet", "create", "blue-v4", "--network", "blue", "--subnet-range", "10.0.0.0/24"
    )
    assert subnet["gateway_ip"] == "10.0.0.1"
    router = value(noauth, "router", "create", "--ha", "r1")
    assert router["ha"] is True
    openstack(noauth, "router", "add", "subnet", "r1", "blue-v4")
    value(noauth, "network", "create", "public", "--external")
    value(
        noauth,
        "subnet",
        "create",
        "public-v4",
        "--network",
        "public",
        "--subnet-range",
        "203.0.113.0/24",
    )
    openstack(noauth, "router", "set", "r1", "--external-gateway", "public")
    shown = value(noauth, "router", "show", "r1")
    assert shown["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] == "203.0.113.2"
    # As in Neutron, an admin also sees the router's HA port (169.254.192.0/18) here.
    addresses = {i["ip_address"] for i in shown["interfaces_info"]}
    assert "10.0.0.1" in addresses
    assert all(a == "10.0.0.1" or a.startswith("169.254.") for a in addresses)
    value(noauth, "port", "create", "vm", "--network", "blue")
    fip = value(noauth, "floating", "ip", "create", "public", "--port", "vm")
    assert fip["router_id"] == router["id"]
    hosting = json.loads(
        openstack(
            noauth, "network", "agent", "list", "--router", "r1", "--long", "-f", "json"
        ).stdout
    )
    assert [(a["Host"], a["HA State"]) for a in hosting] == [("node1", "standby")]
    refused = openstack(noauth, "router", "delete", "r1", ok=False)
    assert "still has ports" in refused.stderr
    interface = next(
        i["port_id"] for i in shown["interfaces_info"] if i["ip_address"] == "10.0.0.1"
    )
    refused = openstack(noauth, "port", "delete", interface, ok=False)
    assert "cannot be deleted directly via the port API" in refused.stderr
    # The client sends external_gateway_info {}: Neutron's "no gateway". Not while a
    # floating IP needs it.
    refused = openstack(noauth, "router", "unset", "--external-gateway", "r1", ok=False)
    assert "required by one or more floating IPs" in refused.stderr
    openstack(noauth, "floating", "ip", "unset", "--port", fip["id"])
    openstack(noauth, "router", "unset", "--external-gateway", "r1")
    assert not value(noauth, "router", "show", "r1")["external_gateway_info"]
    gateways = value(noauth, "port", "list", "--device-owner", "network:router_gateway")
    assert gateways == []


def test_tokens_map_to_projects_and_roles(server: ServerThread) -> None:
    mine = value(server, "network", "create", "mine", token="alice-token")
    assert mine["project_id"] == "alice"
    value(server, "network", "create", "theirs", token="admin-token")
    names = [
        n["Name"]
        for n in json.loads(
            openstack(server, "network", "list", "-f", "json", token="alice-token").stdout
        )
    ]
    assert names == ["mine"]
    refused = openstack(server, "router", "create", "--ha", "r", token="alice-token", ok=False)
    assert "disallowed by policy" in refused.stderr
    unknown = openstack(server, "network", "list", token="not-a-token", ok=False)
    assert "401" in unknown.stderr
