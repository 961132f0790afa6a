"""The agent of a compute node: wires instance ports as Neutron's linuxbridge agent does.
The hypervisor (Nova with libvirt; in the lab, ``hanet lab vm create``) makes each port's
``tap`` device; the agent ensures the port's network bridge (with its VXLAN device or flat
interface) and puts the tap on it. A port whose tap is not there yet waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hanet.agent.errors import RouterError
from hanet.agent.layout import PortWiring, port_wiring
from hanet.agent.metrics import AgentMetrics
from hanet.agent.routers import RouterBuilder
from hanet.agent.server_api import ServerApi, StateAnswer
from hanet.agent.session import ServerSession
from hanet.agent.settings import AgentSettings
from hanet.agent.status import StatusFile
from hanet.linux import l2

log = logging.getLogger(__name__)

WAIT_FOR_TAPS = 0.25  # how often a port whose tap is missing is looked at again


class ComputeAgent:
    def __init__(
        self, settings: AgentSettings, api: ServerApi, builder: RouterBuilder, metrics: AgentMetrics
    ) -> None:
        self.settings, self.api, self.builder, self.metrics = settings, api, builder, metrics
        configurations = {
            "tunneling_ip": settings.tunnel_address,
            "interface_mappings": settings.physical_interfaces,
        }
        self.session = ServerSession(
            api, settings.host, settings.agent_type, configurations, self._on_state
        )
        self.documents: dict[str, dict[str, Any]] = {}
        self.states: dict[str, str] = {}  # port: plugged, waiting, error
        self.errors: dict[str, str] = {}
        self.lock = asyncio.Lock()
        self.status = StatusFile(settings.run_dir / "status.json", settings.host, settings.mode)

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self.session.register()),
            asyncio.create_task(self.session.heartbeat_loop()),
            asyncio.create_task(self.session.poll_loop()),
            asyncio.create_task(self._wait_for_taps()),
        ]
        try:
            done, _ = await asyncio.wait(tasks[1:], return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _on_state(self, answer: StateAnswer) -> None:
        dirty = set()
        if answer.full:
            dirty |= set(self.documents)
            self.documents = {}
        for document in answer.items:
            self.documents[document["id"]] = document
            dirty.add(document["id"])
        for port in answer.removed:
            self.documents.pop(port, None)
            dirty.add(port)
        await self.converge(dirty)

    async def _wait_for_taps(self) -> None:
        while True:
            await asyncio.sleep(WAIT_FOR_TAPS)
            waiting = {p for p, s in self.states.items() if s == "waiting"}
            if waiting:
                await self.converge(waiting)

    async def converge(self, ports: set[str]) -> None:
        async with self.lock:
            started = time.monotonic()
            left = False
            for port in sorted(ports):
                document = self.documents.get(port)
                if document is None:
                    left |= self.states.pop(port, None) is not None
                    self.errors.pop(port, None)
                    continue
                await self._plug(port, document)
            if left:
                used = {d.get("network_id") for d in self.documents.values()}
                try:
                    await self.builder.remove_unused_networks(n for n in used if n)
                except l2.L2Error as exc:
                    log.warning("removing unused networks: %s", exc)
            self.metrics.convergence.observe(time.monotonic() - started)
            for state in ("plugged", "waiting", "error"):
                self.metrics.ports.labels(state).set(
                    sum(1 for s in self.states.values() if s == state)
                )
            self.status.write(
                agent_id=self.session.agent_id,
                registered=self.session.registered.is_set(),
                revision=self.session.revision,
                server_reachable=self.session.reachable,
                ports=dict(self.states),
                errors=dict(self.errors),
            )

    async def _plug(self, port: str, document: dict[str, Any]) -> None:
        try:
            wiring: PortWiring = port_wiring(port, document, "port", "tap", own=False)
            await self.builder.ensure_network(wiring)
            changes = await l2.attach_tap(None, wiring.network_id, port, wiring.mtu)
        except (RouterError, l2.L2Error) as exc:
            if self.errors.get(port) != str(exc):
                log.error("port %s: %s", port, exc)
            self.states[port], self.errors[port] = "error", str(exc)
            return
        self.errors.pop(port, None)
        if changes is None:
            if self.states.get(port) != "waiting":
                log.info("port %s: waiting for its tap", port)
            self.states[port] = "waiting"
            return
        if changes:
            log.info("port %s: %s", port, "; ".join(changes))
        self.states[port] = "plugged"
