"""What agents fetch and report: each agent's routers as a document, the changes since a
sequence number, their HA states, and the server's split-brain arbitration.

Split brain: when two agents report one HA router active for longer than SPLIT_BRAIN_AFTER,
the server keeps the one VRRP itself would keep (the higher HA address, as all of a
router's instances share one priority) and tells the others to stay backup. The order
lasts while another agent of the router is active, and is recorded as router events."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, selectinload

from hanet.server import changelog, compute, segments
from hanet.server.api.errors import BadRequest, not_found
from hanet.server.compute import agent_port
from hanet.server.dhcp import DHCP_AGENT, DhcpStore
from hanet.server.l3store import GATEWAY, HA_INTERFACE, INTERFACE, _admin_only
from hanet.server.models import (
    Agent,
    Change,
    Network,
    NetworkDhcpBinding,
    Port,
    Router,
    RouterBinding,
    RouterEvent,
    Subnet,
    utcnow,
)
from hanet.server.store import Context, network_view, port_view, subnet_view

SPLIT_BRAIN_AFTER = timedelta(seconds=2)
# The documents' schema. Fields are added within a version and agents ignore fields they
# do not know; removing a field or changing its meaning raises the version.
SCHEMA_VERSION = 1
HA_STATES = ("active", "standby", "fault")
AGENT_KINDS = {DHCP_AGENT: changelog.NETWORK, compute.L2_AGENT: changelog.PORT}


class Store(DhcpStore):
    report_interval = 30.0  # the agents' heartbeat period (ServerConfig.report_interval)
    # The change log ---------------------------------------------------------------------

    def latest_change(self, kind: str | None = None, host: str | None = None) -> int:
        """The newest change number, of one kind (router, network) or of any; of instance
        ports (kind port), those of one host."""
        with self.sessions() as session:
            if kind == changelog.PORT:
                return compute.latest_change(session, host or "")
            query = select(func.max(Change.seq))
            if kind is not None:
                query = query.where(Change.kind == kind)
            return int(session.scalar(query) or 0)

    def agent_kind(self, agent_id: str) -> str:
        """Which changes the agent follows: an L3 agent routers, a DHCP agent networks, a
        compute agent its host's instance ports."""
        with self.sessions() as session:
            agent = session.get(Agent, agent_id)
            if agent is None:
                raise not_found("agent", agent_id)
            return AGENT_KINDS.get(agent.agent_type, changelog.ROUTER)

    def agent_host(self, agent_id: str) -> str:
        with self.sessions() as session:
            agent = session.get(Agent, agent_id)
            if agent is None:
                raise not_found("agent", agent_id)
            return agent.host

    def agent_state(self, agent_id: str, since: int | None) -> dict[str, Any]:
        """The agent's routers (an L3 agent) or networks (a DHCP agent) changed after
        change ``since`` (all of them when None), and the ids of those it no longer hosts."""
        with self.sessions() as session:
            agent = session.get(Agent, agent_id)
            if agent is None:
                raise not_found("agent", agent_id)
            latest = int(session.scalar(select(func.max(Change.seq))) or 0)
            if agent.agent_type == compute.L2_AGENT:
                ports, gone = compute.compute_state(session, agent, since, latest)
                return {
                    "schema_version": SCHEMA_VERSION,
                    "revision": latest,
                    "ports": ports,
                    "removed": gone,
                    "full": since is None,
                }
            if agent.agent_type == DHCP_AGENT:
                kind, key, binding = changelog.NETWORK, "networks", NetworkDhcpBinding
                hosted_ids = select(binding.network_id).where(binding.agent_id == agent_id)
            else:
                kind, key = changelog.ROUTER, "routers"
                hosted_ids = select(RouterBinding.router_id).where(
                    RouterBinding.agent_id == agent_id
                )
            hosted = set(session.scalars(hosted_ids))
            if since is None:
                changed, removed = hosted, set()
            else:
                touched = set(
                    session.scalars(
                        select(Change.resource_id).where(
                            Change.kind == kind, Change.seq > since, Change.seq <= latest
                        )
                    )
                )
                changed, removed = touched & hosted, touched - hosted
            if kind == changelog.NETWORK:
                documents = self._agent_networks(session, sorted(changed))
            else:
                documents = self._agent_routers(session, agent, sorted(changed))
            return {
                "schema_version": SCHEMA_VERSION,
                "revision": latest,
                key: documents,
                "removed": sorted(removed),
                "full": since is None,
            }

    @staticmethod
    def _agent_networks(session: Session, network_ids: list[str]) -> list[dict[str, Any]]:
        """The networks as the API shows them, with their subnets and ports in full (what a
        DHCP server needs to answer every port), in three queries however many."""
        if not network_ids:
            return []
        networks = session.scalars(
            select(Network)
            .where(Network.id.in_(network_ids))
            .options(selectinload(Network.subnets))
            .order_by(Network.id)
        ).all()
        ports = _ports_by(session, Port.network_id, network_ids)
        return [
            {
                **network_view(row),
                "subnets": [subnet_view(s) for s in row.subnets],
                "ports": [port_view(p) for p in ports.get(row.id, [])],
            }
            for row in networks
        ]

    def _agent_routers(
        self, session: Session, agent: Agent, router_ids: list[str]
    ) -> list[dict[str, Any]]:
        """The routers' documents for the agent, in a fixed handful of queries however
        many routers there are (an agent's full state may hold thousands)."""
        if not router_ids:
            return []
        routers = session.scalars(
            select(Router).where(Router.id.in_(router_ids)).order_by(Router.id)
        ).all()
        bindings = {
            b.router_id: b
            for b in session.scalars(
                select(RouterBinding).where(
                    RouterBinding.agent_id == agent.id, RouterBinding.router_id.in_(router_ids)
                )
            )
        }
        ports = _ports_by(session, Port.device_id, router_ids)
        subnet_ids = {a.subnet_id for of in ports.values() for p in of for a in p.fixed_ips}
        subnets = {
            s.id: s for s in session.scalars(select(Subnet).where(Subnet.id.in_(subnet_ids)))
        }
        floating = self.routers_floatingips(session, router_ids)
        network_ids = {p.network_id for of in ports.values() for p in of}
        networks = {
            n.id: segments.wiring(n)
            for n in session.scalars(select(Network).where(Network.id.in_(network_ids)))
        }
        return [
            _wired(
                _router_document(row, agent, ports.get(row.id, []), bindings.get(row.id), subnets)
                | {"floating_ips": floating[row.id]},
                agent,
                ports.get(row.id, []),
                networks,
            )
            for row in routers
        ]

    # HA states --------------------------------------------------------------------------

    def report_ha_states(self, agent_id: str, states: dict[str, str]) -> int:
        """An agent's routers' states as its VRRP instances see them. Unknown routers (just
        moved away) are ignored. Returns how many changed."""
        for router_id, state in states.items():
            if state not in HA_STATES:
                raise BadRequest(
                    f"Invalid input for ha_state of {router_id}: {state!r} is "
                    f"not in {list(HA_STATES)}"
                )
        changed = 0
        with self.writes.begin() as session:
            agent = session.get(Agent, agent_id)
            if agent is None:
                raise not_found("agent", agent_id)
            bindings = session.scalars(
                select(RouterBinding).where(
                    RouterBinding.agent_id == agent_id, RouterBinding.router_id.in_(list(states))
                )
            ).all()
            now = utcnow()
            for binding in bindings:
                state = states[binding.router_id]
                if state == binding.ha_state:
                    continue
                changed += 1
                binding.ha_state, binding.ha_state_at = state, now
                self._event(
                    session,
                    binding.router_id,
                    f"became_{state}",
                    agent_id,
                    f"{agent.host} reports {state}",
                )
        return changed

    # Split brain ------------------------------------------------------------------------

    def resolve_split_brain(self) -> list[str]:
        """Order all but one of two or more long-active agents of a router to stand by, and
        lift orders that are no longer needed. Returns the routers acted on."""
        acted: list[str] = []
        with self.writes.begin() as session:
            now = utcnow()
            # Only agents heartbeating now take part. A dead agent's "active" is stale (its
            # place may be kept until it is gone, hanet.server.failover), and so is that of
            # an agent that missed two heartbeats: a node that crashed while active still
            # shows "active" until agent_down_time, and holding its successor for being
            # active beside it stopped the fail-over until then (5.4 s in bench.cloud).
            # Two masters that both still heartbeat are a real split brain.
            fresh = min(self.agent_down_time, 2 * self.report_interval)
            alive = Agent.heartbeat_at > now - timedelta(seconds=fresh)
            active = session.scalars(
                select(RouterBinding)
                .join(Agent, Agent.id == RouterBinding.agent_id)
                .where(RouterBinding.ha_state == "active", alive)
            ).all()
            by_router: dict[str, list[RouterBinding]] = {}
            for binding in active:
                by_router.setdefault(binding.router_id, []).append(binding)
            for router_id, bindings in by_router.items():
                settled = [
                    b
                    for b in bindings
                    if not b.forced_standby
                    and b.ha_state_at
                    and now - b.ha_state_at >= SPLIT_BRAIN_AFTER
                ]
                if len(settled) < 2:
                    continue
                keep = max(settled, key=lambda b: self._ha_address(session, b))
                for binding in settled:
                    if binding is keep:
                        continue
                    binding.forced_standby = True
                    self._event(
                        session,
                        router_id,
                        "split_brain_step_down",
                        binding.agent_id,
                        f"active with {keep.agent_id} for more than "
                        f"{SPLIT_BRAIN_AFTER.seconds} s; told to stand by",
                    )
                    self._changed(session, router_id)
                    acted.append(router_id)
            forced = session.scalars(
                select(RouterBinding).where(RouterBinding.forced_standby.is_(True))
            ).all()
            for binding in forced:
                others_active = any(
                    b.agent_id != binding.agent_id for b in by_router.get(binding.router_id, [])
                )
                if not others_active:
                    binding.forced_standby = False
                    self._event(
                        session,
                        binding.router_id,
                        "step_down_lifted",
                        binding.agent_id,
                        "no other agent is active",
                    )
                    self._changed(session, binding.router_id)
                    acted.append(binding.router_id)
        return acted

    @staticmethod
    def _ha_address(session: Session, binding: RouterBinding) -> int:
        """What VRRP compares on equal priority: the HA port's address (RFC 5798 §6.4.3)."""
        agent = session.get(Agent, binding.agent_id)
        port = session.scalars(
            select(Port).where(
                Port.device_id == binding.router_id,
                Port.device_owner == HA_INTERFACE,
                Port.host_id == (agent.host if agent else ""),
            )
        ).first()
        if port is None or not port.fixed_ips:
            return 0
        return int(ipaddress.ip_address(port.fixed_ips[0].ip_address))

    # Events -----------------------------------------------------------------------------

    def router_events(self, ctx: Context, router_id: str) -> list[dict[str, Any]]:
        _admin_only(ctx)
        with self.sessions() as session:
            self._router(session, ctx, router_id)
            hosts = dict(session.execute(select(Agent.id, Agent.host)).all())
            rows = session.scalars(
                select(RouterEvent)
                .where(RouterEvent.router_id == router_id)
                .order_by(RouterEvent.id)
            )
            return [
                {
                    "at": str(e.at.replace(microsecond=0)),
                    "kind": e.kind,
                    "agent_id": e.agent_id,
                    "host": hosts.get(e.agent_id or ""),
                    "detail": e.detail,
                }
                for e in rows
            ]


def _router_document(
    row: Router,
    agent: Agent,
    ports: list[Port],
    binding: RouterBinding | None,
    subnets: dict[str, Subnet],
) -> dict[str, Any]:
    def port(owner: str) -> list[dict[str, Any]]:
        return [
            agent_port(p, subnets)
            for p in ports
            if p.device_owner == owner and (owner != HA_INTERFACE or p.host_id == agent.host)
        ]

    return {
        "id": row.id,
        "name": row.name,
        "project_id": row.project_id,
        "admin_state_up": row.admin_state_up,
        "ha": row.ha,
        "vrid": row.vrid,
        "enable_snat": row.enable_snat,
        "routes": row.routes,
        "interfaces": port(INTERFACE),
        "gateway": next(iter(port(GATEWAY)), None),
        "ha_port": next(iter(port(HA_INTERFACE)), None),
        "ha_state": binding.ha_state if binding else None,
        "forced_standby": bool(binding and binding.forced_standby),
    }


def _wired(
    document: dict[str, Any],
    agent: Agent,
    ports: list[Port],
    networks: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The router's document with what the agent needs to wire each port (its network's
    segment and MTU) and, for an HA router, its peers: the other agents' HA addresses on
    the router's HA network, for VRRP unicast or checks."""

    def wired(port: dict[str, Any] | None) -> dict[str, Any] | None:
        if port is None:
            return None
        return port | networks.get(port["network_id"], segments.wiring(None))

    peers = [
        {"host": p.host_id, "ip_address": p.fixed_ips[0].ip_address}
        for p in ports
        if p.device_owner == HA_INTERFACE and p.host_id != agent.host and p.fixed_ips
    ]
    return document | {
        "interfaces": [wired(p) for p in document["interfaces"]],
        "gateway": wired(document["gateway"]),
        "ha_port": wired(document["ha_port"]),
        "ha_peers": sorted(peers, key=lambda peer: peer["host"]),
    }


def _ports_by(
    session: Session, column: InstrumentedAttribute[str], values: list[str]
) -> dict[str, list[Port]]:
    """The ports whose ``column`` is one of ``values``, with their addresses, grouped by
    it, in creation order: one query (and one for the addresses)."""
    grouped: dict[str, list[Port]] = {}
    for port in session.scalars(
        select(Port)
        .where(column.in_(values))
        .options(selectinload(Port.fixed_ips))
        .order_by(Port.created_at, Port.id)
    ):
        grouped.setdefault(getattr(port, column.key), []).append(port)
    return grouped
