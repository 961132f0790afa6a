"""hanet-server at scale, with simulated agents (issue 4's benchmark).

    .venv/bin/python -m bench.server [--routers 1000] [--agents 3]
                                     [--backends sqlite,postgresql] [--out FILE]

Per backend, on a fresh database: three simulated L3 agents register, heartbeat, follow
their state with the long-poll and report HA states the way VRRP would settle them (equal
priorities: the highest HA address is active). Then
- N HA routers are made through the API, each with a network, a subnet, an interface and
  a gateway on one external network, until every router has exactly one active agent;
- one agent stops: the time until every router again has its three places, none on the
  dead agent, counted from its last heartbeat;
- the latency of GET /v2.0/routers?ha=True with the N routers (p50 and p99 of 100).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bench.failover import write_section
from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig, Token
from hanet.server.database import make_engine
from hanet.server.models import RouterBinding
from hanet.server.postgres import TemporaryPostgres
from hanet.server.testing import ServerProcess

BEGIN, END = "<!-- bench:server:begin -->", "<!-- bench:server:end -->"
TOKENS = {"admin": Token("admin", "admin")}


class Vrrp:
    """What VRRP would settle between the agents of each router: all share one priority,
    so the highest HA address is master."""

    def __init__(self, places: int) -> None:
        self.places, self.lock = places, threading.Lock()
        self.seen: dict[str, dict[str, int]] = {}

    def state(self, router: str, agent: str, address: str) -> str | None:
        with self.lock:
            members = self.seen.setdefault(router, {})
            members[agent] = int(ipaddress.ip_address(address))
            if len(members) < self.places:
                return None  # not all instances are up yet: no election to report
            return "active" if members[agent] == max(members.values()) else "standby"

    def forget(self, agent: str) -> None:
        with self.lock:
            for members in self.seen.values():
                members.pop(agent, None)


class SimulatedAgent(threading.Thread):
    def __init__(self, url: str, host: str, vrrp: Vrrp) -> None:
        super().__init__(daemon=True)
        self.api, self.host, self.vrrp = ApiClient(url, "admin"), host, vrrp
        reply = self.api.post(
            "/hanet/v1/agents", {"agent": {"host": host, "agent_type": "L3 agent"}}
        )
        self.id = reply.body["agent"]["id"]
        self.stopped = threading.Event()
        self.last_beat = time.monotonic()
        self.reported: dict[str, str] = {}
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        while not self.stopped.wait(0.5):
            self.api.put(f"/hanet/v1/agents/{self.id}/heartbeat", None)
            self.last_beat = time.monotonic()

    def run(self) -> None:
        state = self.api.get(f"/hanet/v1/agents/{self.id}/state").body
        pending: dict[str, str] = {}  # router -> its HA address, waiting for the election
        while not self.stopped.is_set():
            for router in state["routers"]:
                if router["ha_port"]:
                    pending[router["id"]] = router["ha_port"]["fixed_ips"][0]["ip_address"]
            for gone in state["removed"]:
                pending.pop(gone, None)
            self._report(pending)
            state = self.api.get(
                f"/hanet/v1/agents/{self.id}/state?since={state['revision']}&wait=1"
            ).body

    def _report(self, pending: dict[str, str]) -> None:
        states = {}
        for router, address in pending.items():
            decided = self.vrrp.state(router, self.id, address)
            if decided is not None and self.reported.get(router) != decided:
                states[router] = decided
        if states:
            self.api.post(f"/hanet/v1/agents/{self.id}/ha_states", {"routers": states})
            self.reported.update(states)

    def stop(self) -> None:
        self.stopped.set()


def one_active_each(db: Engine, count: int) -> bool:
    with Session(db) as session:
        actives = (
            select(RouterBinding.router_id)
            .where(RouterBinding.ha_state == "active")
            .group_by(RouterBinding.router_id)
            .having(func.count() == 1)
        )
        return session.scalar(select(func.count()).select_from(actives.subquery())) == count


def protected_without(db: Engine, dead: str, count: int, places: int) -> bool:
    with Session(db) as session:
        on_dead = session.scalar(select(func.count()).where(RouterBinding.agent_id == dead))
        full = (
            select(RouterBinding.router_id)
            .group_by(RouterBinding.router_id)
            .having(func.count() == places)
        )
        return (
            on_dead == 0
            and session.scalar(select(func.count()).select_from(full.subquery())) == count
        )


def make_router(api: ApiClient, index: int, public: str) -> None:
    net = api.post("/v2.0/networks", {"network": {"name": f"n{index}"}}).body["network"]["id"]
    cidr = f"10.{index // 256}.{index % 256}.0/24"
    subnet = api.post(
        "/v2.0/subnets", {"subnet": {"network_id": net, "ip_version": 4, "cidr": cidr}}
    ).body["subnet"]["id"]
    router = api.post(
        "/v2.0/routers",
        {
            "router": {
                "name": f"r{index}",
                "ha": True,
                "external_gateway_info": {"network_id": public},
            }
        },
    )
    assert router.status == 201, router.body
    reply = api.put(
        f"/v2.0/routers/{router.body['router']['id']}/add_router_interface", {"subnet_id": subnet}
    )
    assert reply.status == 200, reply.body


def wait(condition: Any, limit: float, what: str) -> None:
    end = time.monotonic() + limit
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.2)


def run(backend: str, routers: int, agents: int, log: Any) -> dict[str, float]:
    with (
        TemporaryPostgres() if backend == "postgresql" else _Nothing() as postgres,
        tempfile.TemporaryDirectory(prefix="hanet-bench-") as scratch,
    ):
        db = postgres.database() if postgres else f"sqlite:///{scratch}/hanet.db"
        config = ServerConfig(
            db=db, auth="token", tokens=TOKENS, report_interval=1.0, agent_down_time=3.0
        )
        with ServerProcess(config, Path(scratch)) as server, _engine(db) as engine:
            api = server.client("admin")
            vrrp = Vrrp(places=config.max_l3_agents_per_router)
            sims = [SimulatedAgent(server.url, f"net{i}", vrrp) for i in range(agents)]
            for sim in sims:
                sim.start()
            public = api.post(
                "/v2.0/networks", {"network": {"name": "public", "router:external": True}}
            )
            public_id = public.body["network"]["id"]
            api.post(
                "/v2.0/subnets",
                {"subnet": {"network_id": public_id, "ip_version": 4, "cidr": "100.64.0.0/16"}},
            )
            start = time.monotonic()
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda i: make_router(api, i, public_id), range(routers)))
            created = time.monotonic() - start
            wait(lambda: one_active_each(engine, routers), 600, "one active agent per router")
            settled = time.monotonic() - start
            log(f"{backend}: {routers} routers made in {created:.1f} s, settled {settled:.1f} s")
            victim = sims[0]
            victim.stop()
            vrrp.forget(victim.id)
            stopped_beating = victim.last_beat
            extra = SimulatedAgent(server.url, "net-spare", vrrp)
            extra.start()
            sims.append(extra)
            places = config.max_l3_agents_per_router
            wait(
                lambda: protected_without(engine, victim.id, routers, places), 600, "re-protection"
            )
            reprotected = time.monotonic() - stopped_beating
            log(f"{backend}: re-protected {reprotected:.1f} s after the last heartbeat")
            latencies = []
            for _ in range(100):
                began = time.perf_counter()
                reply = api.get("/v2.0/routers?ha=True")
                latencies.append(time.perf_counter() - began)
                assert len(reply.body["routers"]) == routers
            latencies.sort()
            for sim in sims:
                sim.stop()
            return {
                "created_s": created,
                "settled_s": settled,
                "reprotected_s": reprotected,
                "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[98] * 1000,
            }


@contextmanager
def _engine(url: str) -> Iterator[Engine]:
    """The bench's own connection to the server's database, to see when it is done."""
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def render(results: dict[str, dict[str, float]], routers: int, agents: int, command: str) -> str:
    lines = [
        BEGIN,
        "## hanet-server: HA routers through the API (issue 4)",
        "",
        f"Command: `{command}`. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
        f"{os.cpu_count()} cores; `hanet-server` in a process of its own, the API clients "
        f"(8 at once) and {agents} simulated L3 agents (register, heartbeat every 0.5 s, "
        "long-poll their state, report the HA state VRRP would settle on) in threads of "
        "the bench's process, report_interval 1 s, "
        "agent_down_time 3 s.",
        "",
        "| figure | " + " | ".join(results) + " | target |",
        "|---|" + "---|" * len(results) + "---|",
    ]
    rows = [
        (
            f"{routers} HA routers made (network, subnet, router with gateway, interface)",
            "created_s",
            "s",
            "",
        ),
        (
            "... until every router has exactly one active agent reported",
            "settled_s",
            "s",
            "≤ 60 s",
        ),
        (
            "an agent dies: every router back on 3 live agents, after its last heartbeat",
            "reprotected_s",
            "s",
            "≤ 30 s",
        ),
        (f"GET /v2.0/routers?ha=True with {routers} routers, p50", "p50_ms", "ms", ""),
        ("... p99", "p99_ms", "ms", "recorded"),
    ]
    for label, key, unit, target in rows:
        cells = " | ".join(f"{r[key]:.1f} {unit}" for r in results.values())
        lines.append(f"| {label} | {cells} | {target} |")
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {
        backend: run(backend, args.routers, args.agents, lambda m: print(m, flush=True))
        for backend in args.backends.split(",")
    }
    command = (
        "make bench"
        if os.environ.get("MAKELEVEL")
        else " ".join(["python -m bench.server", *sys.argv[1:]])
    )
    section = render(results, args.routers, args.agents, command)
    print(section)
    if args.out:
        write_section(args.out, section, BEGIN, END)


if __name__ == "__main__":
    main()
