"""The agent's Prometheus metrics, in a registry of its own, served at ``/metrics`` on
``metrics: HOST:PORT`` by the agent's event loop (no thread)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

VRRP_STATES = ("MASTER", "BACKUP", "FAULT")


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.routers = Gauge(
            "hanet_agent_routers", "Routers built on this node", registry=self.registry
        )
        self.routers_in_error = Gauge(
            "hanet_agent_routers_in_error",
            "Routers that could not be built (status ERROR)",
            registry=self.registry,
        )
        self.routers_by_state = Gauge(
            "hanet_agent_router_vrrp_state",
            "HA routers on this node by VRRP state",
            ["state"],
            registry=self.registry,
        )
        self.convergence = Histogram(
            "hanet_agent_convergence_seconds",
            "Time to converge the node after a change",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.sync_errors = Counter(
            "hanet_agent_sync_errors",
            "vrrpd sync requests refused or failed",
            registry=self.registry,
        )
        self.router_errors = Counter(
            "hanet_agent_router_errors", "Router builds that failed", registry=self.registry
        )
        self.ports = Gauge(
            "hanet_agent_ports",
            "Instance ports by state (compute agents)",
            ["state"],
            registry=self.registry,
        )

    def set_states(self, states: dict[str, str]) -> None:
        for state in VRRP_STATES:
            self.routers_by_state.labels(state).set(sum(1 for s in states.values() if s == state))

    def set_routers(self, built: int, errors: int) -> None:
        self.routers.set(built)
        self.routers_in_error.set(errors)

    async def serve(self, bind: str) -> web.AppRunner:
        async def handler(_request: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app = web.Application()
        app.router.add_get("/metrics", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, _, port = bind.rpartition(":")
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
        return runner
