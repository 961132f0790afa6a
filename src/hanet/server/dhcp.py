"""DHCP agents: which of them serve each network that has a DHCP subnet. Same transaction
contract as hanet.server.store; placement as for routers (least-loaded first)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hanet.server import placement
from hanet.server.api.errors import Conflict, not_found
from hanet.server.floatingips import FloatingIPStore
from hanet.server.l3store import _admin_only
from hanet.server.models import Agent, Network, NetworkDhcpBinding, Subnet, utcnow
from hanet.server.store import Context, network_view

DHCP_AGENT = "DHCP agent"


class DhcpStore(FloatingIPStore):
    dhcp_agents_per_network = 2

    def _alive_dhcp_agents(self, session: Session) -> list[Agent]:
        return self._alive_agents(session, DHCP_AGENT)

    def _dhcp_loads(self, session: Session) -> dict[str, int]:
        counted = select(NetworkDhcpBinding.agent_id, func.count()).group_by(
            NetworkDhcpBinding.agent_id
        )
        return {agent_id: count for agent_id, count in session.execute(counted).all()}

    def schedule_dhcp(self) -> int:
        """Release places on dead DHCP agents, then give every network with a DHCP subnet
        its dhcp_agents_per_network places. One transaction; returns places made."""
        with self.writes.begin() as session:
            horizon = utcnow() - timedelta(seconds=self.agent_down_time)
            dead = select(Agent.id).where(
                Agent.agent_type == DHCP_AGENT, Agent.heartbeat_at <= horizon
            )
            for binding in session.scalars(
                select(NetworkDhcpBinding).where(NetworkDhcpBinding.agent_id.in_(dead))
            ):
                session.delete(binding)
            session.flush()
            served = select(Subnet.network_id).where(Subnet.enable_dhcp.is_(True)).distinct()
            networks = session.scalars(select(Network).where(Network.id.in_(served))).all()
            if not networks:
                return 0
            agents = self._alive_dhcp_agents(session)
            if not agents:
                return 0
            loads = self._dhcp_loads(session)
            bound: dict[str, list[NetworkDhcpBinding]] = {}
            for binding in session.scalars(select(NetworkDhcpBinding)):
                bound.setdefault(binding.network_id, []).append(binding)
            placed = 0
            for network in networks:
                have = bound.get(network.id, [])
                missing = self.dhcp_agents_per_network - len(have)
                if missing <= 0:
                    continue
                chosen = placement.choose(
                    [
                        placement.Candidate(a.id, loads.get(a.id, 0), a.availability_zone)
                        for a in agents
                    ],
                    missing,
                    exclude=[b.agent_id for b in have],
                )
                taken = {b.binding_index for b in have}
                indexes = (i for i in range(1, self.dhcp_agents_per_network + 1) if i not in taken)
                for agent_id, index in zip(chosen, indexes, strict=False):
                    session.add(
                        NetworkDhcpBinding(
                            network_id=network.id, agent_id=agent_id, binding_index=index
                        )
                    )
                    loads[agent_id] = loads.get(agent_id, 0) + 1
                    placed += 1
            return placed

    def network_dhcp_agents(self, ctx: Context, network_id: str) -> list[dict[str, Any]]:
        _admin_only(ctx)
        with self.sessions() as session:
            self._network(session, ctx, network_id)
            rows = session.scalars(
                select(Agent)
                .join(NetworkDhcpBinding, NetworkDhcpBinding.agent_id == Agent.id)
                .where(NetworkDhcpBinding.network_id == network_id)
                .order_by(NetworkDhcpBinding.binding_index)
            )
            return [self._agent_view(a) for a in rows]

    def agent_dhcp_networks(self, ctx: Context, agent_id: str) -> list[dict[str, Any]]:
        _admin_only(ctx)
        with self.sessions() as session:
            if session.get(Agent, agent_id) is None:
                raise not_found("agent", agent_id)
            rows = session.scalars(
                select(Network)
                .join(NetworkDhcpBinding, NetworkDhcpBinding.network_id == Network.id)
                .where(NetworkDhcpBinding.agent_id == agent_id)
                .order_by(Network.created_at)
            )
            return [network_view(n) for n in rows]

    def bind_network(self, ctx: Context, agent_id: str, network_id: str) -> None:
        _admin_only(ctx)
        try:
            with self.writes.begin() as session:
                self._network(session, ctx, network_id)
                agent = session.get(Agent, agent_id)
                if agent is None or agent.agent_type != DHCP_AGENT:
                    raise not_found("agent", agent_id)
                have = session.scalars(
                    select(NetworkDhcpBinding).where(NetworkDhcpBinding.network_id == network_id)
                ).all()
                if any(b.agent_id == agent_id for b in have):
                    raise Conflict(
                        f"The network {network_id} has been already hosted by the "
                        f"DHCP Agent {agent_id}.",
                        "NetworkHostedByDHCPAgent",
                    )
                index = max((b.binding_index for b in have), default=0) + 1
                session.add(
                    NetworkDhcpBinding(
                        network_id=network_id, agent_id=agent_id, binding_index=index
                    )
                )
        except IntegrityError:
            raise Conflict(
                f"The network {network_id} was placed concurrently; try again",
                "NetworkHostedByDHCPAgent",
            ) from None

    def unbind_network(self, ctx: Context, agent_id: str, network_id: str) -> None:
        _admin_only(ctx)
        with self.writes.begin() as session:
            binding = session.get(NetworkDhcpBinding, (network_id, agent_id))
            if binding is None:
                raise Conflict(
                    f"The network {network_id} is not hosted by the DHCP agent {agent_id}.",
                    "NetworkNotHostedByDhcpAgent",
                )
            session.delete(binding)
