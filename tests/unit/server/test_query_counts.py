"""Lists and agents' documents (routers, DHCP networks) take a fixed number of queries,
however many routers there are: a thousand routers must not mean a thousand round trips
to PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, update

from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig
from hanet.server.models import Agent, utcnow
from hanet.server.store import Context
from hanet.server.testing import ServerThread
from tests.unit.server.test_api_core import make_net
from tests.unit.server.test_api_dhcp import register_dhcp
from tests.unit.server.test_api_routers import register


@contextmanager
def counting(server: ServerThread) -> Iterator[list[str]]:
    statements: list[str] = []
    caller = threading.get_ident()

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Only the measured call's: on PostgreSQL the server's watch loop shares the
        # engine, and its statements would be counted whenever it ran meanwhile.
        if threading.get_ident() == caller:
            statements.append(statement)

    engine = server.store.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


def make_routers(admin: ApiClient, public: str, first: int, count: int) -> None:
    for i in range(first, first + count):
        _, subnet = make_net(admin, f"10.{i}.0.0/24")
        gateway = {"network_id": public}
        body = {"router": {"name": f"r{i}", "ha": True, "external_gateway_info": gateway}}
        router = admin.post("/v2.0/routers", body).body["router"]
        admin.put(f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": subnet})


def queries(server: ServerThread, call: Callable[[], object]) -> int:
    with counting(server) as statements:
        call()
    return len(statements)


def test_router_list_and_agent_state_do_not_grow_with_routers(
    server: ServerThread, admin: ApiClient
) -> None:
    agent = register(admin, "net0")
    dhcp = register_dhcp(admin, "dhcp0")
    public, _ = make_net(admin, "100.64.0.0/16")
    admin.put(f"/v2.0/networks/{public}", {"network": {"router:external": True}})
    ctx = Context("admin-project", True)

    def all_four() -> tuple[int, int, int, int]:
        for network in admin.get("/v2.0/networks").body["networks"]:
            # By hand (the server's watch may have placed some already: 409 then).
            admin.post(f"/v2.0/agents/{dhcp}/dhcp-networks", {"network_id": network["id"]})
        return (
            queries(server, lambda: server.store.list_routers(ctx)),
            queries(server, lambda: server.store.agent_routers(ctx, agent)),
            queries(server, lambda: server.store.agent_state(agent, None)),
            queries(server, lambda: server.store.agent_state(dhcp, None)),
        )

    make_routers(admin, public, 0, 2)
    few = all_four()
    make_routers(admin, public, 2, 8)
    assert len(server.store.agent_state(agent, None)["routers"]) == 10
    assert all_four() == few
    assert len(server.store.agent_state(dhcp, None)["networks"]) >= 10


def test_moving_routers_off_a_dead_agent_takes_the_same_statements_for_more(
    db_url: str,
) -> None:
    """Issue 4 §5: rescheduling is batched. The watch loop is slowed down so that only the
    test decides when an agent is dead."""
    config = ServerConfig(db=db_url, report_interval=100.0, agent_down_time=1000.0)
    with ServerThread(config) as server:
        admin = server.client()
        agents = [register(admin, f"net{i}") for i in range(5)]  # a spare after two deaths

        def kill_and_count(routers: int) -> tuple[int, int]:
            for _ in range(routers):
                admin.post("/v2.0/routers", {"router": {"ha": True}})
            victim = max(agents, key=lambda a: len(hosted(admin, a)))
            moved = len(hosted(admin, victim))
            with server.store.writes.begin() as session:
                session.execute(
                    update(Agent)
                    .where(Agent.id == victim)
                    .values(heartbeat_at=utcnow() - timedelta(hours=1))
                )
            with counting_writes(server) as statements:
                assert victim in server.store.reschedule_dead()
            agents.remove(victim)
            assert hosted(admin, victim) == []
            # Row-at-a-time inserts of autoincrement rows (events, the change log) are local
            # calls on SQLite; everything else, and all of it on PostgreSQL, is batched.
            batched = [s for s in statements if server.store.engine.dialect.name == "postgresql"
                       or not s.startswith("INSERT")]  # fmt: skip
            return moved, len(batched)

        few_moved, few = kill_and_count(3)
        many_moved, many = kill_and_count(30)
        assert many_moved > few_moved and many == few
        for router in admin.get("/v2.0/routers").body["routers"]:
            agents_of = admin.get(f"/v2.0/routers/{router['id']}/l3-agents").body["agents"]
            assert len(agents_of) == min(3, len(agents))


def hosted(admin: ApiClient, agent: str) -> list[dict[str, Any]]:
    return list(admin.get(f"/v2.0/agents/{agent}/l3-routers").body["routers"])


@contextmanager
def counting_writes(server: ServerThread) -> Iterator[list[str]]:
    statements: list[str] = []
    caller = threading.get_ident()

    def note(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # Only the measured call's: on PostgreSQL the server's watch loop shares the
        # engine, and its statements would be counted whenever it ran meanwhile.
        if threading.get_ident() == caller:
            statements.append(statement)

    event.listen(server.store.writer, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(server.store.writer, "before_cursor_execute", note)
