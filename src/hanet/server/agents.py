"""L3 agents: registration and heartbeats, their routers, placing routers by hand, and
moving routers off agents that died. Same transaction contract as hanet.server.store."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Collection
from functools import cached_property
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hanet.server import ipam
from hanet.server.api.errors import Conflict, not_found
from hanet.server.failover import AGENT_GONE_TIME, Failover
from hanet.server.l3store import HA_INTERFACE, L3_AGENT, L3Store, _admin_only, ha_port_fields
from hanet.server.models import (
    Agent,
    IPAllocation,
    Port,
    Router,
    RouterBinding,
    RouterEvent,
    Subnet,
    utcnow,
)
from hanet.server.router_errors import RouterErrors
from hanet.server.store import RETRIES, Context

# Neutron's agents' topics; its linuxbridge agent's is "N/A".
TOPICS = {L3_AGENT: "l3_agent", "DHCP agent": "dhcp_agent"}


class AgentStore(L3Store):
    # Seconds of silence after which a dead L3 agent's HA places are released (the
    # setting of that name; hanet.server.testing.store_for sets it).
    agent_gone_time = AGENT_GONE_TIME

    @cached_property
    def router_errors(self) -> RouterErrors:
        """The agents' error reports on their routers (hanet.server.router_errors)."""
        return RouterErrors(self)

    @cached_property
    def failover(self) -> Failover:
        """Dead, gone and returning L3 agents' places (hanet.server.failover)."""
        return Failover(self)

    # Agents -------------------------------------------------------------------------------

    def register_agent(
        self,
        host: str,
        agent_type: str,
        availability_zone: str | None,
        configurations: dict[str, Any],
    ) -> dict[str, Any]:
        """An agent (re)starts: one row per (type, host), kept across restarts."""
        for _ in range(RETRIES):
            try:
                with self.writes.begin() as session:
                    row = session.scalars(
                        select(Agent).where(Agent.agent_type == agent_type, Agent.host == host)
                    ).first()
                    now = utcnow()
                    if row is None:
                        binary = "hanet-agent"
                        row = Agent(
                            id=str(uuid.uuid4()),
                            agent_type=agent_type,
                            binary=binary,
                            host=host,
                            topic=TOPICS.get(agent_type, "N/A"),
                        )
                        session.add(row)
                    row.availability_zone, row.configurations = availability_zone, configurations
                    row.started_at = row.heartbeat_at = now
                    RouterErrors.forget(session, row)
                    session.flush()
                    return self._agent_view(row)
            except IntegrityError:
                continue  # the same agent registered twice at once: the second finds the row
        raise Conflict(f"agent {agent_type} on {host} could not register")

    def heartbeat(self, agent_id: str) -> dict[str, Any]:
        with self.writes.begin() as session:
            row = session.get(Agent, agent_id)
            if row is None:
                raise not_found("agent", agent_id)
            row.heartbeat_at = utcnow()
            return self._agent_view(row)

    def list_agents(self, ctx: Context) -> list[dict[str, Any]]:
        _admin_only(ctx)
        with self.sessions() as session:
            rows = session.scalars(select(Agent).order_by(Agent.created_at, Agent.id))
            return [self._agent_view(r) for r in rows]

    def get_agent(self, ctx: Context, agent_id: str) -> dict[str, Any]:
        _admin_only(ctx)
        with self.sessions() as session:
            row = session.get(Agent, agent_id)
            if row is None:
                raise not_found("agent", agent_id)
            return self._agent_view(row)

    def update_agent(self, ctx: Context, agent_id: str, values: dict[str, Any]) -> dict[str, Any]:
        _admin_only(ctx)
        with self.writes.begin() as session:
            row = session.get(Agent, agent_id)
            if row is None:
                raise not_found("agent", agent_id)
            for key in ("admin_state_up", "description"):
                if key in values:
                    setattr(row, key, values[key])
            return self._agent_view(row)

    def delete_agent(self, ctx: Context, agent_id: str) -> None:
        _admin_only(ctx)
        with self.writes.begin() as session:
            row = session.get(Agent, agent_id)
            if row is None:
                raise not_found("agent", agent_id)
            session.delete(row)

    def router_agents(self, ctx: Context, router_id: str) -> list[dict[str, Any]]:
        """GET /routers/{id}/l3-agents: the hosting agents, with ha_state for HA routers
        ("unknown" for an agent that is not alive)."""
        _admin_only(ctx)
        with self.sessions() as session:
            row = self._router(session, ctx, router_id)
            pairs = session.execute(
                select(Agent, RouterBinding)
                .join(RouterBinding, RouterBinding.agent_id == Agent.id)
                .where(RouterBinding.router_id == row.id)
                .order_by(RouterBinding.binding_index)
            ).all()
            views = [(self._agent_view(agent), binding) for agent, binding in pairs]
            # A dead agent's last report may be stale: Neutron shows "unknown" for it too.
            return [
                view | ({"ha_state": binding.ha_state if view["alive"] else "unknown"})
                if row.ha
                else view
                for view, binding in views
            ]

    def agent_routers(self, ctx: Context, agent_id: str) -> list[dict[str, Any]]:
        _admin_only(ctx)
        with self.sessions() as session:
            if session.get(Agent, agent_id) is None:
                raise not_found("agent", agent_id)
            rows = session.scalars(
                select(Router)
                .join(RouterBinding, RouterBinding.router_id == Router.id)
                .where(RouterBinding.agent_id == agent_id)
                .order_by(Router.created_at)
            )
            return self._router_views(session, list(rows))

    def bind_router(self, ctx: Context, agent_id: str, router_id: str) -> None:
        """POST /agents/{id}/l3-routers: place a router on this agent by hand."""
        _admin_only(ctx)
        try:
            with self.writes.begin() as session:
                row = self._router(session, ctx, router_id)
                agent = session.get(Agent, agent_id)
                if agent is None or agent.agent_type != L3_AGENT:
                    raise not_found("agent", agent_id)
                bound = session.scalars(
                    select(RouterBinding).where(RouterBinding.router_id == row.id)
                ).all()
                limit = self.max_l3_agents if row.ha else 1
                if any(b.agent_id == agent_id for b in bound) or len(bound) >= limit:
                    raise Conflict(
                        f"The router {router_id} has been already hosted by the L3 "
                        f"Agent {agent_id}.",
                        "RouterHostedByL3Agent",
                    )
                index = min(set(range(1, limit + 1)) - {b.binding_index for b in bound})
                session.add(RouterBinding(router_id=row.id, agent_id=agent_id, binding_index=index))
                if row.ha:
                    self._add_ha_port(session, row, agent.host)
                self._event(session, row.id, "scheduled", agent_id, "placed by an admin")
        except IntegrityError:
            raise Conflict(
                f"The router {router_id} was placed concurrently; try again",
                "RouterHostedByL3Agent",
            ) from None

    def unbind_router(self, ctx: Context, agent_id: str, router_id: str) -> None:
        _admin_only(ctx)
        with self.writes.begin() as session:
            row = self._router(session, ctx, router_id)
            binding = session.get(RouterBinding, (row.id, agent_id))
            if binding is None:
                raise Conflict(
                    f"The router {router_id} is not hosted by L3 agent {agent_id}.",
                    "RouterNotHostedByL3Agent",
                )
            self._drop_binding(session, row, binding)
            self._event(session, row.id, "unscheduled", agent_id, "removed by an admin")

    def _drop_binding(self, session: Session, row: Router, binding: RouterBinding) -> None:
        agent = session.get(Agent, binding.agent_id)
        if row.ha and agent is not None:
            for port in session.scalars(
                select(Port).where(
                    Port.device_id == row.id,
                    Port.device_owner == HA_INTERFACE,
                    Port.host_id == agent.host,
                )
            ):
                session.delete(port)
        session.delete(binding)

    @staticmethod
    def _event(
        session: Session, router_id: str, kind: str, agent_id: str | None, detail: str
    ) -> None:
        session.add(RouterEvent(router_id=router_id, kind=kind, agent_id=agent_id, detail=detail))

    # Dead agents --------------------------------------------------------------------------

    def reschedule_dead(self) -> list[str]:
        """Dead L3 agents' places: legacy routers move, HA places are kept beside a
        replacement until their agent is gone (make before break, hanet.server.failover).
        Returns the agents acted for."""
        return self.failover.reschedule_dead()

    def trim_places(self) -> list[str]:
        """Agents back before they were gone: their routers' extra places go."""
        return self.failover.trim_places()

    def fill_places(self) -> int:
        """Routers with fewer places than they should have (created while too few agents
        were alive, or whose agents died with no replacement then) get them now."""
        with self.writes.begin() as session:
            count = func.count(RouterBinding.agent_id)
            short = (
                select(Router)
                .outerjoin(RouterBinding, RouterBinding.router_id == Router.id)
                .group_by(Router.id)
                .having(count < case((Router.ha.is_(True), self.max_l3_agents), else_=1))
            )
            routers = list(session.scalars(short))
            if not routers:
                return 0
            return self._place_all(session, routers, "agents became available")

    def _place_all(
        self, session: Session, routers: list[Router], why: str, dead: Collection[str] = ()
    ) -> int:
        """Schedule many routers in this one transaction, in a fixed number of statements
        however many: agents, loads and places are read once, and every new row is written
        in one flush (batched INSERTs). Places on ``dead`` agents (kept until they are
        gone) do not count: such a router gets a replacement beside them."""
        agents = self._alive_l3_agents(session)
        if not agents:
            return 0
        loads = self._l3_loads(session)
        hosts = {a.id: a.host for a in agents}
        bound: dict[str, list[RouterBinding]] = {r.id: [] for r in routers}
        for binding in session.scalars(
            select(RouterBinding).where(RouterBinding.router_id.in_(bound))
        ):
            bound[binding.router_id].append(binding)
        ha_ports: list[tuple[Router, str]] = []
        placed = 0
        for router in routers:
            kept = sum(1 for b in bound[router.id] if b.agent_id in dead)
            if len(bound[router.id]) - kept >= self._places(router):
                continue
            chosen = self._bind(session, router, bound[router.id], agents, loads, kept)
            for agent_id in chosen:
                if router.ha:
                    ha_ports.append((router, hosts[agent_id]))
                self._event(session, router.id, "scheduled", agent_id, why)
                placed += 1
        session.flush()
        for _ in range(RETRIES):
            try:
                with session.begin_nested():
                    self._add_ha_ports(session, ha_ports)
                return placed
            except IntegrityError:
                # Another writer took an address or MAC drawn here after it was read: draw
                # again from what is used now; the places above stand.
                continue
        raise Conflict("could not draw free HA addresses and MACs", "IpAddressGenerationFailure")

    def _add_ha_ports(self, session: Session, wanted: list[tuple[Router, str]]) -> None:
        """HA ports for many (router, host) pairs at once, flushed: each HA network's
        addresses and MACs in use are read once and fresh ones drawn here. A writer taking
        the same address or MAC meanwhile makes the flush fail on a unique key (the caller
        draws again)."""
        by_network: dict[str, list[tuple[Router, str]]] = {}
        for router, host in wanted:
            assert router.ha_network_id is not None
            by_network.setdefault(router.ha_network_id, []).append((router, host))
        if not by_network:
            return
        subnets = session.scalars(select(Subnet).where(Subnet.network_id.in_(by_network)))
        for subnet in subnets:
            pairs = by_network[subnet.network_id]
            used = set(
                session.scalars(
                    select(IPAllocation.ip_address).where(IPAllocation.subnet_id == subnet.id)
                )
            )
            macs = set(
                session.scalars(
                    select(Port.mac_address).where(Port.network_id == subnet.network_id)
                )
            )
            pools = [
                (ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"]))
                for p in subnet.allocation_pools
            ]
            addresses = ipam.free_sample(pools, used, len(pairs))
            if len(addresses) < len(pairs):
                raise Conflict(
                    f"No more IP addresses available on network {subnet.network_id}.",
                    "IpAddressGenerationFailure",
                )
            for (router, host), address in zip(pairs, addresses, strict=True):
                mac = ipam.random_mac()
                while mac in macs:
                    mac = ipam.random_mac()
                macs.add(mac)
                port = Port(id=str(uuid.uuid4()), mac_address=mac, **ha_port_fields(router, host))
                port.fixed_ips.append(
                    IPAllocation(
                        subnet_id=subnet.id,
                        ip_address=str(address),
                        network_id=subnet.network_id,
                        position=0,
                    )
                )
                session.add(port)
        session.flush()
