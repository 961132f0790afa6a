"""Parallel requests never allocate anything twice: addresses, MACs, VRIDs, router places;
also with two servers on one PostgreSQL database (issue 4, 'Concurrency tests')."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig
from hanet.server.postgres import TemporaryPostgres
from hanet.server.testing import ServerThread
from tests.unit.server.conftest import TOKENS
from tests.unit.server.test_api_routers import register


def servers(stack: ExitStack, db_url: str, count: int) -> list[ApiClient]:
    config = ServerConfig(db=db_url, auth="token", tokens=TOKENS, agent_down_time=600.0)
    return [stack.enter_context(ServerThread(config)).client("admin-token") for _ in range(count)]


def burst_of_ports(clients: list[ApiClient], requests: int) -> tuple[list[str], Counter[str]]:
    first = clients[0]
    net = first.post("/v2.0/networks", {"network": {"name": "busy"}}).body["network"]["id"]
    first.post(
        "/v2.0/subnets", {"subnet": {"network_id": net, "ip_version": 4, "cidr": "10.9.0.0/27"}}
    )  # 29 addresses: 10.9.0.2-30

    def create(i: int) -> tuple[int, str]:
        reply = clients[i % len(clients)].post("/v2.0/ports", {"port": {"network_id": net}})
        if reply.status == 201:
            return 201, reply.body["port"]["fixed_ips"][0]["ip_address"]
        return reply.status, reply.body["NeutronError"]["type"]

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(create, range(requests)))
    addresses = [value for status, value in results if status == 201]
    failures = Counter(value for status, value in results if status != 201)
    return addresses, failures


def check_ports(addresses: list[str], failures: Counter[str], requests: int) -> None:
    assert len(addresses) == len(set(addresses)), "an address was handed out twice"
    assert len(addresses) == min(requests, 29)
    assert set(failures) <= {"IpAddressGenerationFailure"}, failures


def test_parallel_ports_on_one_sqlite_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with ExitStack() as stack:
        clients = servers(stack, f"sqlite:///{tmp_path / 'hanet.db'}", 1)
        addresses, failures = burst_of_ports(clients, 40)
    check_ports(addresses, failures, 40)


@pytest.fixture
def shared_db(postgres: TemporaryPostgres) -> str:
    return postgres.database()


def test_two_servers_on_one_postgresql_never_share_an_address(shared_db: str) -> None:
    with ExitStack() as stack:
        clients = servers(stack, shared_db, 2)
        addresses, failures = burst_of_ports(clients, 40)
    check_ports(addresses, failures, 40)


def test_two_servers_give_parallel_ha_routers_distinct_vrids(shared_db: str) -> None:
    with ExitStack() as stack:
        clients = servers(stack, shared_db, 2)
        for i in range(3):
            register(clients[0], f"net{i}")

        def create(i: int) -> object:
            reply = clients[i % 2].post("/v2.0/routers", {"router": {"ha": True}})
            return reply.status if reply.status == 201 else reply.body

        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(create, range(30)))
        assert statuses == [201] * 30
        routers = clients[0].get("/v2.0/routers").body["routers"]
        docs = [
            clients[0].get(f"/hanet/v1/agents/{a['id']}/state").body["routers"]
            for a in clients[0].get("/v2.0/agents").body["agents"]
        ]
    vrids = {doc["id"]: doc["vrid"] for agent_docs in docs for doc in agent_docs}
    assert len(routers) == 30 and len(vrids) == 30
    assert len(set(vrids.values())) == 30, "a VRID was handed out twice"
    places = Counter(doc["id"] for agent_docs in docs for doc in agent_docs)
    assert set(places.values()) == {3}  # each router on exactly max_l3_agents agents
