"""Routers an agent could not set up: the agents report them, the API shows them.

An agent that fails to build or update one of its routers (a namespace it cannot make, a
keepalived or NAT table the kernel refuses) reports it with a reason; the router's
``status`` in the Neutron API is then ``ERROR`` for as long as a live agent hosting it says
so (Neutron's l3 agent sets the same status through update_router_state). The reason is
kept on the agent's place (router_agent_bindings.error), so it goes with the place, and is
recorded as a router event whenever it appears, changes or is cleared.

Like an HA state report, an error report changes nothing in any agent's router document:
it wakes no agent (hanet.server.changelog ignores the column)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hanet.server.api.errors import InvalidInput, NotFound, not_found
from hanet.server.api.validate import short, uuid_string
from hanet.server.models import Agent, Router, RouterBinding, RouterEvent, utcnow

if TYPE_CHECKING:
    from hanet.server.agents import AgentStore

MAX_REASON = 255  # characters, as the column


def parse_report(body: Any) -> dict[str, str | None]:
    """``{"routers": {router_id: reason or null}}``, checked whole: a bad entry is named by
    its place (``routers.<id>``) and why, and nothing of the report is applied."""
    if not isinstance(body, dict) or set(body) != {"routers"}:
        raise InvalidInput("body", "expected {'routers': {router_id: reason or null}}")
    routers = body["routers"]
    if not isinstance(routers, dict):
        raise InvalidInput("routers", f"'{short(routers)}' is not an object of router_id: reason")
    report: dict[str, str | None] = {}
    for key, reason in routers.items():
        router_id = uuid_string("routers", key)
        place = f"routers.{router_id}"
        if reason is not None:
            if not isinstance(reason, str):
                raise InvalidInput(place, f"'{short(reason)}' is not a reason (a string) or null")
            if not reason.strip():
                raise InvalidInput(place, "an empty reason; null clears the error")
            if len(reason) > MAX_REASON:
                raise InvalidInput(place, f"the reason is longer than {MAX_REASON} characters")
        report[router_id] = reason
    return report


def erring(session: Session, router_ids: Collection[str], down_time: float) -> set[str]:
    """Which of the routers a live agent hosting them reports in error: one query however
    many routers (a dead agent's report no longer counts; it may be stale)."""
    if not router_ids:
        return set()
    horizon = utcnow() - timedelta(seconds=down_time)
    query = (
        select(RouterBinding.router_id)
        .join(Agent, Agent.id == RouterBinding.agent_id)
        .where(
            RouterBinding.router_id.in_(list(router_ids)),
            RouterBinding.error.is_not(None),
            Agent.heartbeat_at > horizon,
        )
        .distinct()
    )
    return set(session.scalars(query))


class RouterErrors:
    """The agents' error reports, composed into the store (``store.router_errors``)."""

    def __init__(self, store: AgentStore) -> None:
        self.store = store

    def report(self, agent_id: str, report: dict[str, str | None]) -> int:
        """Set (a reason) or clear (None) the agent's error on each router; only routers
        the agent hosts. Returns how many changed. One transaction: a router that does
        not exist (404) or that the agent does not host (400) refuses the whole report."""
        changed = 0
        with self.store.writes.begin() as session:
            agent = session.get(Agent, agent_id)
            if agent is None:
                raise not_found("agent", agent_id)
            bindings = {
                b.router_id: b
                for b in session.scalars(
                    select(RouterBinding).where(
                        RouterBinding.agent_id == agent_id,
                        RouterBinding.router_id.in_(list(report)),
                    )
                )
            }
            missing = [r for r in report if r not in bindings]
            if missing:
                existing = set(session.scalars(select(Router.id).where(Router.id.in_(missing))))
                for router_id in missing:
                    place = f"routers.{router_id}"
                    if router_id not in existing:
                        raise NotFound(
                            f"Invalid input for {place}. Reason: router {router_id} could "
                            "not be found.",
                            "RouterNotFound",
                        )
                    raise InvalidInput(
                        place, f"router {router_id} is not hosted by agent {agent_id}"
                    )
            for router_id, reason in report.items():
                binding = bindings[router_id]
                if binding.error == reason:
                    continue
                changed += 1
                binding.error = reason
                if reason is None:
                    kind, detail = "agent_error_cleared", f"{agent.host} reports no error"
                else:
                    kind, detail = "agent_error", f"{agent.host}: {reason}"
                session.add(
                    RouterEvent(router_id=router_id, kind=kind, agent_id=agent_id, detail=detail)
                )
        return changed

    @staticmethod
    def forget(session: Session, agent: Agent) -> None:
        """A (re)starting agent's errors are cleared: they were the claims of a process
        that is gone, and the new one reports what it finds anew."""
        for binding in session.scalars(
            select(RouterBinding).where(
                RouterBinding.agent_id == agent.id, RouterBinding.error.is_not(None)
            )
        ):
            binding.error = None
            session.add(
                RouterEvent(
                    router_id=binding.router_id,
                    kind="agent_error_cleared",
                    agent_id=agent.id,
                    detail=f"{agent.host}'s agent restarted",
                )
            )
