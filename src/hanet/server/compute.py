"""Compute (L2) agents: what the agent of a compute node wires.

A compute node's agent (``agent_type`` ``Linux bridge agent``, as Neutron's linuxbridge
agent) follows the instance ports bound to its host: ``binding:host_id`` its host and
``device_owner`` ``compute:...`` (what Nova sets when it binds a port). Each port's
document carries what the agent plugs it with: its MAC, addresses, and its network's
segment and MTU. Changes come from the one change log (hanet.server.changelog), noted per
host the port was or is bound to, so that an agent reads only its own host's."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from hanet.server import changelog, segments
from hanet.server.models import Agent, Change, Network, Port, Subnet

L2_AGENT = "Linux bridge agent"


def latest_change(session: Session, host: str) -> int:
    """The newest change of an instance port of ``host`` (what its long-poll waits for)."""
    query = select(func.max(Change.seq)).where(Change.kind == changelog.PORT, Change.host == host)
    return int(session.scalar(query) or 0)


def compute_state(
    session: Session, agent: Agent, since: int | None, latest: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """The agent's port documents changed after change ``since`` (all when None), and the
    ids of ports that were bound to its host in that span and no longer are."""
    hosted = set(
        session.scalars(
            select(Port.id).where(
                Port.host_id == agent.host, Port.device_owner.startswith(changelog.COMPUTE)
            )
        )
    )
    if since is None:
        return port_documents(session, sorted(hosted)), []
    touched = set(
        session.scalars(
            select(Change.resource_id).where(
                Change.kind == changelog.PORT,
                Change.host == agent.host,
                Change.seq > since,
                Change.seq <= latest,
            )
        )
    )
    return port_documents(session, sorted(touched & hosted)), sorted(touched - hosted)


def port_documents(session: Session, port_ids: list[str]) -> list[dict[str, Any]]:
    """The ports' documents, in a fixed number of queries however many ports."""
    if not port_ids:
        return []
    ports = session.scalars(
        select(Port)
        .where(Port.id.in_(port_ids))
        .options(selectinload(Port.fixed_ips))
        .order_by(Port.id)
    ).all()
    subnet_ids = {a.subnet_id for p in ports for a in p.fixed_ips}
    subnets = {s.id: s for s in session.scalars(select(Subnet).where(Subnet.id.in_(subnet_ids)))}
    network_ids = {p.network_id for p in ports}
    networks = {
        n.id: segments.wiring(n)
        for n in session.scalars(select(Network).where(Network.id.in_(network_ids)))
    }
    return [
        agent_port(port, subnets)
        | {
            "admin_state_up": port.admin_state_up,
            "device_owner": port.device_owner,
            "device_id": port.device_id,
        }
        | networks.get(port.network_id, segments.wiring(None))
        for port in ports
    ]


def agent_port(port: Port, subnets: dict[str, Subnet]) -> dict[str, Any]:
    """A port as agents see it (routers' ports and instance ports alike): its addresses
    with their subnets' prefix length, CIDR and gateway."""
    addresses = []
    for allocation in port.fixed_ips:
        subnet = subnets[allocation.subnet_id]
        addresses.append(
            {
                "subnet_id": subnet.id,
                "ip_address": allocation.ip_address,
                "prefixlen": ipaddress.ip_network(subnet.cidr).prefixlen,
                "cidr": subnet.cidr,
                "gateway_ip": subnet.gateway_ip,
            }
        )
    return {
        "id": port.id,
        "network_id": port.network_id,
        "mac_address": port.mac_address,
        "fixed_ips": addresses,
    }
