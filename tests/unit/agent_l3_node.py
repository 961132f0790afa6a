"""The L3 agent's node, faked for tests/unit/test_agent_l3.py: a builder that records what
it is asked to build and remove, a vrrpd that checks each ``sync`` with vrrpd's own schema
and can refuse, a server API that records the reports; and the router documents a real
hanet-server gives its network nodes."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from hanet.agent.l3 import L3Agent
from hanet.agent.layout import RouterLayout
from hanet.agent.metrics import AgentMetrics
from hanet.agent.routers import BuildError, RouterBuilder
from hanet.agent.server_api import Registration, ServerApi, StateAnswer
from hanet.agent.settings import AgentSettings
from hanet.agent.vrrpd_client import VrrpdClient, VrrpdRefused
from hanet.server.client import ApiClient
from hanet.vrrpd.schema import SchemaError, parse_request
from tests.unit.test_agent_layout import created

T = TypeVar("T")
WAIT = 5.0  # for what the agent's own loops do; a pass never waits this long


def run(scenario: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(scenario, 30))


# The documents --------------------------------------------------------------------------


@dataclass(frozen=True)
class Routers:
    """Three HA routers and a legacy one, each with its tenant network and a gateway on a
    flat public network, as the server gives them to the network nodes."""

    ha: list[dict[str, Any]]
    legacy: dict[str, Any]


def build_routers(admin: ApiClient) -> Routers:
    agents = [
        admin.post("/hanet/v1/agents", {"agent": {"host": h, "agent_type": "L3 agent"}}).body[
            "agent"
        ]["id"]
        for h in ("net0", "net1")
    ]
    public = created(admin, "/v2.0/networks", "network", {
        "name": "public", "router:external": True,
        "provider:network_type": "flat", "provider:physical_network": "public"})  # fmt: skip
    created(admin, "/v2.0/subnets", "subnet", {
        "network_id": public["id"], "ip_version": 4, "cidr": "203.0.113.0/24"})  # fmt: skip
    ids = []
    for index, ha in enumerate((True, True, True, False)):
        network = created(admin, "/v2.0/networks", "network", {"name": f"net{index}"})
        subnet = created(admin, "/v2.0/subnets", "subnet", {"network_id": network["id"],
                         "ip_version": 4, "cidr": f"10.{index}.0.0/24"})  # fmt: skip
        router = created(admin, "/v2.0/routers", "router", {
            "name": f"r{index}", "ha": ha,
            "external_gateway_info": {"network_id": public["id"]}})  # fmt: skip
        added = admin.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                          {"subnet_id": subnet["id"]})  # fmt: skip
        assert added.status == 200, added.body
        ids.append(router["id"])
    documents: dict[str, dict[str, Any]] = {}
    for agent in agents:
        state = admin.get(f"/hanet/v1/agents/{agent}/state").body
        documents.update({doc["id"]: doc for doc in state["routers"]})
    return Routers(ha=[documents[i] for i in ids[:3]], legacy=documents[ids[3]])


def instance(document: dict[str, Any]) -> str:
    return f"router-{document['id']}"


def namespace(document: dict[str, Any]) -> str:
    return f"qrouter-{document['id']}@net0"


def full(*documents: dict[str, Any], revision: int = 1) -> StateAnswer:
    return StateAnswer(revision, True, [copy.deepcopy(d) for d in documents], [])


def changes(
    *documents: dict[str, Any], removed: tuple[str, ...] = (), revision: int = 2
) -> StateAnswer:
    return StateAnswer(revision, False, [copy.deepcopy(d) for d in documents], list(removed))


# The node, faked ------------------------------------------------------------------------

Journal = list[tuple[Any, ...]]


class FakeBuilder:
    """Records each call in the shared journal; ``failing`` routers raise BuildError."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.failing: dict[str, str] = {}
        self.proxies: set[str] = set()
        self.proxy_calls: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self.removed = asyncio.Event()

    async def build(self, layout: RouterLayout) -> list[str]:
        self.journal.append(("build", layout.router_id))
        if layout.router_id in self.failing:
            raise BuildError(layout.router_id, "build", self.failing[layout.router_id])
        return [f"wired {len(layout.ports)} ports"]

    async def remove(self, router_id: str, namespace: str) -> bool:
        self.journal.append(("remove", router_id, namespace))
        self.proxies.discard(router_id)
        self.removed.set()
        return True

    async def start_metadata(self, router_id: str, namespace: str) -> int | None:
        self.journal.append(("start_metadata", router_id, namespace))
        self.proxy_calls.put_nowait(self.journal[-1])
        self.proxies.add(router_id)
        return 1

    async def stop_metadata(self, router_id: str) -> bool:
        self.journal.append(("stop_metadata", router_id))
        self.proxy_calls.put_nowait(self.journal[-1])
        self.proxies.discard(router_id)
        return True

    def metadata_running(self, router_id: str) -> bool:
        return router_id in self.proxies

    async def remove_unused_networks(self, used: set[str]) -> list[str]:
        self.journal.append(("remove_unused_networks", frozenset(used)))
        return []


class FakeVrrpd:
    """Checks every sync as vrrpd does (its schema), refuses a set that adds or changes
    one of ``refuse`` (instance: vrrpd's message; what it runs already is no change to
    refuse) and keeps what it accepted last."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.refuse: dict[str, str] = {}
        self.running: dict[str, dict[str, Any]] = {}
        self.ran: list[set[str]] = []  # the names running after each sync

    async def sync(
        self, instances: dict[str, dict[str, Any]], keep: set[str] | None = None
    ) -> dict[str, Any]:
        self.journal.append(("sync", frozenset(instances)))
        request: dict[str, Any] = {"command": "sync", "version": 1, "instances": instances}
        if keep:
            request["keep"] = sorted(keep)
        try:
            parse_request(request)
        except SchemaError as exc:
            raise VrrpdRefused(str(exc)) from None
        for name, message in self.refuse.items():
            if name in instances and instances[name] != self.running.get(name):
                raise VrrpdRefused(message)
        added = sorted(set(instances) - set(self.running))
        kept = {name: self.running[name] for name in keep or () if name in self.running}
        self.running = copy.deepcopy(instances) | kept
        self.ran.append(set(self.running))
        return {"added": added, "changed": [], "removed": []}

    async def hold_backup(self, name: str, reason: str) -> None:
        self.journal.append(("hold_backup", name, reason))

    async def release(self, name: str) -> None:
        self.journal.append(("release", name))

    async def announce(self, name: str) -> bool:
        self.journal.append(("announce", name))
        return True


@dataclass
class FakeApi:
    journal: Journal
    reports: asyncio.Queue[dict[str, str]] = field(default_factory=asyncio.Queue)
    errors: list[dict[str, str | None]] = field(default_factory=list)

    async def register(self, host: str, agent_type: str, configurations: Any) -> Registration:
        return Registration("agent-0", 30.0)

    async def ha_states(self, agent_id: str, states: dict[str, str]) -> None:
        self.reports.put_nowait(dict(states))

    async def router_errors(self, agent_id: str, errors: dict[str, str | None]) -> None:
        self.journal.append(("router_errors", dict(errors)))
        self.errors.append(dict(errors))


@dataclass
class Node:
    agent: L3Agent
    builder: FakeBuilder
    vrrpd: FakeVrrpd
    api: FakeApi
    journal: Journal
    status_path: Path

    def calls(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.journal if c[0] == kind]

    def status(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.status_path.read_text())["routers"])

    def forget(self) -> None:
        self.journal.clear()


async def node(tmp_path: Path, **settings: Any) -> Node:
    """A registered agent of host net0 (namespaces qrouter-<id>@net0) on faked parts."""
    journal: Journal = []
    values: dict[str, Any] = {
        "host": "net0",
        "namespace_suffix": "net0",
        "run_dir": tmp_path,
        "tunnel_address": "192.0.2.10",
        "tunnel_interface": "eth0",
        "advert_int": 0.1,
    }
    config = AgentSettings(**(values | settings))
    builder, vrrpd, api = FakeBuilder(journal), FakeVrrpd(journal), FakeApi(journal)
    agent = L3Agent(
        config,
        cast(ServerApi, api),
        cast(VrrpdClient, vrrpd),
        cast(RouterBuilder, builder),
        AgentMetrics(),
    )
    await agent.session.register()
    return Node(agent, builder, vrrpd, api, journal, tmp_path / "status.json")


async def within(what: Awaitable[T]) -> T:
    return await asyncio.wait_for(what, WAIT)


async def running(loop: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # it starts now
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def state_event(document: dict[str, Any], new: str) -> dict[str, Any]:
    return {"event": "state", "instance": instance(document), "new": new}


def snapshot(*items: tuple[dict[str, Any], str, bool]) -> dict[str, Any]:
    return {
        "event": "snapshot",
        "instances": [{"instance": instance(d), "state": s, "held": held} for d, s, held in items],
    }
