"""Make before break: what becomes of the places of an L3 agent that stops reporting.

An agent silent for ``agent_down_time`` is dead to the server, but not necessarily to the
data plane: a cut of the management network silences its heartbeats while its VRRP
instances go on forwarding. So an HA router's place on a dead agent is kept, with its HA
port (the router's other instances keep it as a VRRP peer), and the router gets a
replacement place beside it on a live agent, if one is free: redundancy is restored
first, nothing is taken away. Only when the agent has been silent for ``agent_gone_time``
is its place released, HA port and all. A dead agent that reports again before that keeps
its places; its routers then have more live places than ``max_l3_agents_per_router``, and
the extra one goes: from an agent not reporting ``active`` for the router, the place added
last first (the replacement, usually). A legacy router cannot have two places: it moves at
``agent_down_time`` (the agent fences itself and stops it), as before.

Each step is a router event: ``agent_dead`` (place kept until gone, or released for a
legacy router), ``scheduled`` (the replacement), ``agent_gone``, ``agent_back`` and
``trimmed``. The server's watch (hanet.server.api.l3_routes.watch_agents) drives both
steps every ``report_interval``; each is one transaction of a fixed number of statements
however many routers it touches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload

from hanet.server.l3store import HA_INTERFACE, L3_AGENT
from hanet.server.models import Agent, Port, Router, RouterBinding, utcnow

if TYPE_CHECKING:
    from hanet.server.agents import AgentStore

AGENT_GONE_TIME = 60.0  # seconds: the default of the setting


class Failover:
    """Dead and returning L3 agents' places, composed into the store (``store.failover``)."""

    def __init__(self, store: AgentStore) -> None:
        self.store = store

    @property
    def gone_after(self) -> float:
        """Seconds of silence after which an agent's places go. The settings require more
        than agent_down_time; a store made by hand with less gets agent_down_time, which
        is the old behaviour (everything moves at once)."""
        return max(self.store.agent_gone_time, self.store.agent_down_time)

    def reschedule_dead(self) -> list[str]:
        """Dead agents' places: legacy routers move; HA places are kept (once noted as
        such) and get replacements beside them; gone agents' HA places are released.
        Returns the agents something was done for in this round."""
        store = self.store
        with store.writes.begin() as session:
            now = utcnow()
            down = now - timedelta(seconds=store.agent_down_time)
            gone_horizon = now - timedelta(seconds=self.gone_after)
            # Locked, so that two servers on one database do not both note a death.
            dead = session.scalars(
                select(Agent)
                .where(Agent.agent_type == L3_AGENT, Agent.heartbeat_at <= down)
                .order_by(Agent.id)
                .with_for_update()
            ).all()
            if not dead:
                return []
            gone = {a.id for a in dead if a.heartbeat_at <= gone_horizon}
            newly = {a.id for a in dead if a.dead_at is None}
            for agent in dead:
                agent.dead_at = agent.dead_at or now
            bindings = session.scalars(
                select(RouterBinding).where(RouterBinding.agent_id.in_([a.id for a in dead]))
            ).all()
            if not bindings:
                return []
            routers = {
                r.id: r
                for r in session.scalars(
                    select(Router).where(Router.id.in_({b.router_id for b in bindings}))
                )
            }
            acted: set[str] = set()
            released_ha: set[str] = set()
            for binding in bindings:
                router = routers[binding.router_id]
                if not router.ha:
                    kind, detail = "agent_dead", "its agent stopped reporting; place released"
                elif binding.agent_id in gone:
                    kind = "agent_gone"
                    detail = (
                        f"its agent has been silent for {self.gone_after:g} s "
                        "(agent_gone_time); place and HA port released"
                    )
                    released_ha.add(router.id)
                elif binding.agent_id in newly:
                    self.store._event(
                        session,
                        router.id,
                        "agent_dead",
                        binding.agent_id,
                        "its agent stopped reporting; place kept until gone "
                        f"(agent_gone_time {self.gone_after:g} s): it may still forward",
                    )
                    acted.add(binding.agent_id)
                    continue
                else:
                    continue  # kept, and noted as such in an earlier round
                session.delete(binding)
                store._event(session, router.id, kind, binding.agent_id, detail)
                acted.add(binding.agent_id)
            if released_ha:
                # The gone agents' HA ports (one agent per host), with their addresses.
                for port in session.scalars(
                    select(Port)
                    .where(
                        Port.device_id.in_(released_ha),
                        Port.device_owner == HA_INTERFACE,
                        Port.host_id.in_([a.host for a in dead if a.id in gone]),
                    )
                    .options(selectinload(Port.fixed_ips))
                ):
                    session.delete(port)
            session.flush()
            store._place_all(
                session,
                list(routers.values()),
                "replacement for a dead agent",
                dead={a.id for a in dead},
            )
            return sorted(acted)

    def trim_places(self) -> list[str]:
        """Agents that report again are no longer dead; routers that have more live places
        than they should (a dead agent came back before it was gone) lose the extra ones.
        Returns the routers trimmed."""
        store = self.store
        with store.writes.begin() as session:
            now = utcnow()
            down = now - timedelta(seconds=store.agent_down_time)
            back = session.scalars(
                select(Agent).where(Agent.dead_at.is_not(None), Agent.heartbeat_at > down)
            ).all()
            if back:
                self._welcome(session, back)
            live = func.count(RouterBinding.agent_id)
            over = session.scalars(
                select(Router)
                .join(RouterBinding, RouterBinding.router_id == Router.id)
                .join(Agent, Agent.id == RouterBinding.agent_id)
                .where(Agent.heartbeat_at > down)
                .group_by(Router.id)
                .having(live > case((Router.ha.is_(True), store.max_l3_agents), else_=1))
            ).all()
            if not over:
                return []
            pairs = session.execute(
                select(RouterBinding, Agent)
                .join(Agent, Agent.id == RouterBinding.agent_id)
                .where(RouterBinding.router_id.in_([r.id for r in over]), Agent.heartbeat_at > down)
            ).all()
            by_router: dict[str, list[tuple[RouterBinding, Agent]]] = {}
            for binding, agent in pairs:
                by_router.setdefault(binding.router_id, []).append((binding, agent))
            trimmed: dict[str, list[tuple[RouterBinding, Agent]]] = {}
            for router in over:
                places = store._places(router)
                live_places = by_router.get(router.id, [])
                # Never one that forwards: the others, the place added last first.
                candidates = sorted(
                    (p for p in live_places if p[0].ha_state != "active"),
                    key=lambda p: (p[0].placed_at, p[0].binding_index),
                    reverse=True,
                )
                for binding, agent in candidates[: len(live_places) - places]:
                    trimmed.setdefault(router.id, []).append((binding, agent))
                    session.delete(binding)
                    self.store._event(
                        session,
                        router.id,
                        "trimmed",
                        agent.id,
                        f"{len(live_places)} live places, {places} wanted "
                        "(max_l3_agents_per_router) once a dead agent reported again; "
                        f"the place on {agent.host} ({binding.ha_state}) released",
                    )
            ha = {r.id for r in over if r.ha}
            ha_pairs = {
                (router_id, agent.host)
                for router_id, of in trimmed.items()
                if router_id in ha
                for _, agent in of
            }
            if ha_pairs:
                for port in session.scalars(
                    select(Port)
                    .where(
                        Port.device_id.in_({r for r, _ in ha_pairs}),
                        Port.device_owner == HA_INTERFACE,
                        Port.host_id.in_({h for _, h in ha_pairs}),
                    )
                    .options(selectinload(Port.fixed_ips))
                ):
                    if (port.device_id, port.host_id) in ha_pairs:
                        session.delete(port)
            return sorted(trimmed)

    def _welcome(self, session: Session, back: Sequence[Agent]) -> None:
        """Agents heard from again: alive, and their kept places theirs as before."""
        hosts = {a.id: a.host for a in back}
        kept = session.scalars(
            select(RouterBinding).where(RouterBinding.agent_id.in_(list(hosts)))
        ).all()
        for binding in kept:
            self.store._event(
                session,
                binding.router_id,
                "agent_back",
                binding.agent_id,
                f"{hosts[binding.agent_id]} reports again before it was gone; keeps its place",
            )
        for agent in back:
            agent.dead_at = None
