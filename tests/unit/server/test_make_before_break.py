"""Make before break (docs/server.md, hanet.server.failover): an HA router's place on an
L3 agent silent for agent_down_time is kept, with its HA port, beside a replacement on a
live agent; it is released only once the agent has been silent for agent_gone_time. An
agent back before that keeps its places and the extra one goes, never from an active
agent. Legacy routers still move at agent_down_time. The server's own watch drives it
all; the tests decide when an agent died (ServerThread.silence), never a clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from hanet.lab.daemons import wait_until
from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig, ServerConfigError, load_config
from hanet.server.models import RouterBinding, utcnow
from hanet.server.testing import ServerThread
from tests.unit.server.conftest import TOKENS
from tests.unit.server.test_api_routers import register
from tests.unit.server.test_query_counts import counting_writes

DOWN, GONE = 600.0, 1200.0  # longer than any test: agents die when the test says
DEAD, GONE_BY = DOWN + 1, GONE + 1  # seconds of silence that make an agent dead, gone


@pytest.fixture
def watched(db_url: str) -> Iterator[ServerThread]:
    """A server whose watch runs five times a second."""
    config = ServerConfig(
        db=db_url,
        auth="token",
        tokens=TOKENS,
        report_interval=0.2,
        agent_down_time=DOWN,
        agent_gone_time=GONE,
    )
    with ServerThread(config) as running:
        yield running


def places(admin: ApiClient, router: str) -> dict[str, dict[str, Any]]:
    """The router's agents by host, as GET /routers/{id}/l3-agents shows them."""
    agents = admin.get(f"/v2.0/routers/{router}/l3-agents").body["agents"]
    return {a["host"]: a for a in agents}


def ha_port_hosts(admin: ApiClient, router: str) -> list[str]:
    query = f"/v2.0/ports?device_id={router}&device_owner=network:router_ha_interface"
    return sorted(p["binding:host_id"] for p in admin.get(query).body["ports"])


def events(admin: ApiClient, router: str) -> list[tuple[str, str, str]]:
    reply = admin.get(f"/hanet/v1/routers/{router}/events").body["events"]
    return [(e["kind"], e["host"], e["detail"]) for e in reply]


def kinds(admin: ApiClient, router: str, host: str) -> list[str]:
    return [k for k, h, _ in events(admin, router) if h == host]


def ha_router(admin: ApiClient) -> str:
    return str(admin.post("/v2.0/routers", {"router": {"ha": True}}).body["router"]["id"])


def peers(admin: ApiClient, agent: str) -> list[str]:
    (doc,) = admin.get(f"/hanet/v1/agents/{agent}/state").body["routers"]
    return [p["host"] for p in doc["ha_peers"]]


def test_a_dead_agents_place_is_kept_beside_a_replacement_until_it_is_gone(
    watched: ServerThread,
) -> None:
    admin = watched.client("admin-token")
    agents = {f"net{i}": register(admin, f"net{i}") for i in range(3)}
    router = ha_router(admin)
    assert set(places(admin, router)) == {"net0", "net1", "net2"}
    agents["net3"] = register(admin, "net3")  # free, for the replacement
    admin.post(f"/hanet/v1/agents/{agents['net0']}/ha_states", {"routers": {router: "active"}})

    watched.silence(agents["net0"], DEAD)
    wait_until(lambda: "net3" in places(admin, router), 10, "a replacement place on net3")
    shown = places(admin, router)
    # The dead agent keeps its place and HA port: its VRRP instance may still forward.
    assert set(shown) == {"net0", "net1", "net2", "net3"}
    assert shown["net0"]["alive"] is False and shown["net0"]["ha_state"] == "unknown"
    assert shown["net3"]["alive"] is True and shown["net3"]["ha_state"] == "standby"
    assert ha_port_hosts(admin, router) == ["net0", "net1", "net2", "net3"]
    assert peers(admin, agents["net1"]) == ["net0", "net2", "net3"]
    (dead,) = [e for e in events(admin, router) if e[0] == "agent_dead"]
    assert dead[1] == "net0" and "place kept until gone (agent_gone_time 1200 s)" in dead[2]
    assert ("scheduled", "net3", "replacement for a dead agent") in events(admin, router)
    # Later rounds note nothing more (the watch runs; so does a direct call).
    assert watched.store.reschedule_dead() == []
    assert kinds(admin, router, "net0") == ["became_active", "agent_dead"]

    watched.silence(agents["net0"], GONE_BY)
    wait_until(lambda: "net0" not in places(admin, router), 10, "net0's place to go")
    assert set(places(admin, router)) == {"net1", "net2", "net3"}
    assert ha_port_hosts(admin, router) == ["net1", "net2", "net3"]
    assert peers(admin, agents["net1"]) == ["net2", "net3"]
    gone = [e for e in events(admin, router) if e[0] == "agent_gone"]
    assert gone == [
        (
            "agent_gone",
            "net0",
            "its agent has been silent for 1200 s (agent_gone_time); place and HA port released",
        )
    ]


def test_an_agent_back_before_it_is_gone_keeps_its_place_and_the_extra_one_goes(
    watched: ServerThread,
) -> None:
    admin = watched.client("admin-token")
    agents = {f"net{i}": register(admin, f"net{i}") for i in range(3)}
    router = ha_router(admin)
    agents["net3"] = register(admin, "net3")
    # net0 forwards; a management cut silences it.
    admin.post(f"/hanet/v1/agents/{agents['net0']}/ha_states", {"routers": {router: "active"}})
    watched.silence(agents["net0"], DEAD)
    wait_until(lambda: "net3" in places(admin, router), 10, "a replacement place on net3")

    beat = admin.put(f"/hanet/v1/agents/{agents['net0']}/heartbeat", None)  # the cut heals
    assert beat.status == 200
    wait_until(lambda: "net3" not in places(admin, router), 10, "the extra place to go")
    shown = places(admin, router)
    assert set(shown) == {"net0", "net1", "net2"}
    assert shown["net0"]["ha_state"] == "active" and shown["net0"]["alive"] is True
    assert ha_port_hosts(admin, router) == ["net0", "net1", "net2"]
    assert kinds(admin, router, "net0") == ["became_active", "agent_dead", "agent_back"]
    (trimmed,) = [e for e in events(admin, router) if e[0] == "trimmed"]
    assert trimmed[1] == "net3" and "4 live places, 3 wanted" in trimmed[2]
    # It stays so: no further places come and go.
    assert watched.store.reschedule_dead() == [] and watched.store.trim_places() == []
    assert watched.store.fill_places() == 0


def test_the_trimmed_place_is_never_an_active_one(watched: ServerThread) -> None:
    admin = watched.client("admin-token")
    agents = {f"net{i}": register(admin, f"net{i}") for i in range(3)}
    router = ha_router(admin)
    agents["net3"] = register(admin, "net3")
    watched.silence(agents["net0"], DEAD)
    wait_until(lambda: "net3" in places(admin, router), 10, "a replacement place on net3")
    # The replacement took over (net0 really was down), then net0 comes back as backup.
    admin.post(f"/hanet/v1/agents/{agents['net3']}/ha_states", {"routers": {router: "active"}})
    admin.put(f"/hanet/v1/agents/{agents['net0']}/heartbeat", None)
    wait_until(lambda: len(places(admin, router)) == 3, 10, "the extra place to go")
    shown = places(admin, router)
    assert "net3" in shown and shown["net3"]["ha_state"] == "active"
    (trimmed,) = [e for e in events(admin, router) if e[0] == "trimmed"]
    assert trimmed[1] != "net3" and "(standby) released" in trimmed[2]
    assert ha_port_hosts(admin, router) == sorted(shown)


def test_a_legacy_router_moves_when_its_agent_dies(watched: ServerThread) -> None:
    admin = watched.client("admin-token")
    first = register(admin, "net0")
    router = admin.post("/v2.0/routers", {"router": {"name": "legacy"}}).body["router"]["id"]
    assert set(places(admin, router)) == {"net0"}
    register(admin, "net1")
    watched.silence(first, DEAD)
    wait_until(lambda: set(places(admin, router)) == {"net1"}, 10, "the router to move")
    assert ("agent_dead", "net0", "its agent stopped reporting; place released") in events(
        admin, router
    )
    # Back, it gets nothing again: its router is elsewhere (the agent fenced it meanwhile).
    admin.put(f"/hanet/v1/agents/{first}/heartbeat", None)
    assert watched.store.trim_places() == [] and set(places(admin, router)) == {"net1"}


def test_the_replacement_comes_when_an_agent_is_free(watched: ServerThread) -> None:
    admin = watched.client("admin-token")
    agents = {f"net{i}": register(admin, f"net{i}") for i in range(3)}
    router = ha_router(admin)
    watched.silence(agents["net0"], DEAD)
    wait_until(lambda: "agent_dead" in kinds(admin, router, "net0"), 10, "net0 noted dead")
    assert set(places(admin, router)) == {"net0", "net1", "net2"}  # nowhere to go: kept
    register(admin, "net3")
    wait_until(lambda: "net3" in places(admin, router), 10, "a replacement once net3 is up")
    assert set(places(admin, router)) == {"net0", "net1", "net2", "net3"}


def test_split_brain_arbitration_ignores_dead_agents(db_url: str) -> None:
    config = ServerConfig(
        db=db_url, report_interval=100.0, agent_down_time=DOWN, agent_gone_time=GONE
    )
    with ServerThread(config) as server:  # its watch never runs: the test calls it
        admin = server.client()
        agents = [register(admin, f"net{i}") for i in range(2)]
        router = ha_router(admin)
        for agent in agents:
            admin.post(f"/hanet/v1/agents/{agent}/ha_states", {"routers": {router: "active"}})
        with server.store.writes.begin() as session:  # both active for a minute
            session.execute(
                update(RouterBinding).values(ha_state_at=utcnow() - timedelta(seconds=60))
            )
        server.silence(agents[0], DEAD)
        assert server.store.resolve_split_brain() == []  # a dead agent's "active" is stale
        docs = [admin.get(f"/hanet/v1/agents/{a}/state").body["routers"][0] for a in agents]
        assert [d["forced_standby"] for d in docs] == [False, False]
        admin.put(f"/hanet/v1/agents/{agents[0]}/heartbeat", None)  # alive: both count
        assert server.store.resolve_split_brain() == [router]


def test_keeping_places_takes_the_same_statements_for_more_routers(db_url: str) -> None:
    config = ServerConfig(
        db=db_url, report_interval=100.0, agent_down_time=DOWN, agent_gone_time=GONE
    )
    with ServerThread(config) as server:
        admin = server.client()
        agents = [register(admin, f"net{i}") for i in range(6)]  # spares for two deaths

        def kill_and_count(routers: int) -> tuple[int, int]:
            for _ in range(routers):
                ha_router(admin)
            loads = {a: len(admin.get(f"/v2.0/agents/{a}/l3-routers").body["routers"])
                     for a in agents}  # fmt: skip
            victim = max(agents, key=lambda a: loads[a])
            server.silence(victim, DEAD)
            with counting_writes(server) as statements:
                assert server.store.reschedule_dead() == [victim]
            agents.remove(victim)
            batched = [s for s in statements if server.store.engine.dialect.name == "postgresql"
                       or not s.startswith("INSERT")]  # fmt: skip
            return loads[victim], len(batched)

        few_kept, few = kill_and_count(3)
        many_kept, many = kill_and_count(30)
        assert many_kept > few_kept and many == few
        for router in admin.get("/v2.0/routers").body["routers"]:
            shown = admin.get(f"/v2.0/routers/{router['id']}/l3-agents").body["agents"]
            assert sum(1 for a in shown if a["alive"]) == 3


def test_agent_gone_time_must_exceed_agent_down_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert ServerConfig().agent_gone_time == 60.0
    path = tmp_path / "server.yaml"
    path.write_text("agent_down_time: 30\nagent_gone_time: 30\n")
    with pytest.raises(ServerConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (f"{path}: agent_gone_time (30) must exceed agent_down_time (30)")
    path.write_text("agent_down_time: 30\nagent_gone_time: 31\n")
    assert load_config(path).agent_gone_time == 31.0
    path.write_text("agent_gone_time: soon\n")
    with pytest.raises(ServerConfigError, match="agent_gone_time: expected float"):
        load_config(path)


def test_a_master_that_stopped_heartbeating_is_not_arbitrated(db_url: str) -> None:
    """A node crashes while active: until agent_down_time it still shows "active", beside
    the node that took over. That is no split brain: the new master must not be told to
    stand by (it was, when the server arbitrated by agent_down_time, and the fail-over
    waited for the dead node to be declared dead)."""
    config = ServerConfig(
        db=db_url, report_interval=1.0, agent_down_time=DOWN, agent_gone_time=GONE
    )
    with ServerThread(config) as server:
        admin = server.client()
        agents = [register(admin, f"net{i}") for i in range(2)]
        router = ha_router(admin)
        for agent in agents:
            admin.post(f"/hanet/v1/agents/{agent}/ha_states", {"routers": {router: "active"}})
        with server.store.writes.begin() as session:
            session.execute(
                update(RouterBinding).values(ha_state_at=utcnow() - timedelta(seconds=60))
            )
        server.silence(agents[0], 3)  # three heartbeats missed: crashed, not yet dead
        server.silence(agents[1], 0)
        assert server.store.resolve_split_brain() == []
        docs = [admin.get(f"/hanet/v1/agents/{a}/state").body["routers"][0] for a in agents]
        assert [d["forced_standby"] for d in docs] == [False, False]
