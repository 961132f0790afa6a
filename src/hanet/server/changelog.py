"""The agents' change log, written as each write transaction commits.

Every kind is noted by the session itself, from the rows each flush writes, so that no
code path can forget one:
- a network when its row, or a subnet, port, address or DHCP place of it, is written;
- a router when its row, one of its places (binding), one of its ports (interface,
  gateway, HA) or an address of one, a floating IP it maps (before or after the change),
  or a subnet or network one of its ports is on is written: everything its document for
  the agents (hanet.server.agent_sync) is made of. A subnet or network counts only when
  more than its name, description or revision changed, so that adding a subnet to an
  external network does not resend every router with a gateway there; a place only when
  more than the HA state or error its agent reported changed.
- an instance port (device_owner ``compute:...``), for each host it is bound to before
  and after the change, when the port or an address of it is written, or a subnet or
  network it is on (as for routers: more than name, description or revision): what its
  host's compute agent wires it from.
note_router is for a change that no row of the router shows.

Agents read the log by sequence number ("what changed after N"), so a number must never
become visible after a higher one: an agent that had already read the higher one would
skip it for good. On PostgreSQL two transactions draw numbers in one order and may commit
in the other; so the rows are written last, just before COMMIT, under a table lock that
only log writers take (readers never wait). SQLite has one writer at a time already.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain
from typing import Any

from sqlalchemy import event, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from hanet.server.models import (
    Change,
    FloatingIP,
    IPAllocation,
    Network,
    NetworkDhcpBinding,
    Port,
    Router,
    RouterBinding,
    Subnet,
)

ROUTERS, NETWORKS = "hanet.changed_routers", "hanet.changed_networks"
PORTS = "hanet.changed_ports"
ROUTER, NETWORK, PORT = "router", "network", "port"
# Instance ports (Nova's device_owner compute:<zone>), whose compute agents follow them.
COMPUTE = "compute:"
OF_A_NETWORK = (Subnet, Port, IPAllocation, NetworkDhcpBinding)
# Neutron's device owners of the ports routers and floating IPs own.
INTERFACE = "network:router_interface"
GATEWAY = "network:router_gateway"
HA_INTERFACE = "network:router_ha_interface"
FLOATING = "network:floatingip"
ROUTER_PORTS = (INTERFACE, GATEWAY, HA_INTERFACE)
# What no router document shows of a subnet or a network.
NOT_IN_DOCUMENTS = {"name", "description", "revision_number", "updated_at", "subnets", "network"}
# A place's HA state is in its own agent's document only, and that agent reported it: a
# report resent to every agent of the router would only echo it (1,000 fail-overs would
# be 1,000 documents to each of them). So is an error it reports (router_errors).
REPORTED = {"ha_state", "ha_state_at", "error"}


def note_router(session: Session, router_id: str) -> None:
    session.info.setdefault(ROUTERS, set()).add(router_id)


def _note(session: Session, _context: Any, _instances: Any) -> None:
    modified = {row for row in session.dirty if session.is_modified(row)}
    written = list(chain(session.new, session.deleted, modified))
    _note_networks(session, written)
    _note_routers(session, written, modified)
    _note_ports(session, written, modified)


def _note_networks(session: Session, written: list[Any]) -> None:
    noted: set[str] = session.info.setdefault(NETWORKS, set())
    for row in written:
        if isinstance(row, Network):
            noted.add(row.id)
        elif isinstance(row, OF_A_NETWORK):
            noted.add(row.network_id)


def _note_routers(session: Session, written: list[Any], modified: set[Any]) -> None:
    noted: set[str] = session.info.setdefault(ROUTERS, set())
    ports = {row.id for row in written if isinstance(row, Port)}
    subnets: set[str] = set()
    networks: set[str] = set()
    for row in written:
        if isinstance(row, Router):
            noted.add(row.id)
        elif isinstance(row, RouterBinding):
            if row not in modified or _altered(row, REPORTED):
                noted.add(row.router_id)
        elif isinstance(row, FloatingIP):
            # A floating IP moved between routers changes both documents.
            noted.update(_values(row, "router_id"))
        elif isinstance(row, Port):
            noted.update(_router_of(row))
        elif isinstance(row, IPAllocation) and row.port_id and row.port_id not in ports:
            # An address added to or taken from a port this flush does not write otherwise.
            port = session.get(Port, row.port_id)
            if port is not None:
                noted.update(_router_of(port))
    for row in modified:
        if isinstance(row, Subnet) and _altered(row, NOT_IN_DOCUMENTS):
            subnets.add(row.id)
        elif isinstance(row, Network) and _altered(row, NOT_IN_DOCUMENTS):
            networks.add(row.id)
    if subnets:
        on_subnets = (
            select(Port.device_id)
            .join(IPAllocation, IPAllocation.port_id == Port.id)
            .where(IPAllocation.subnet_id.in_(subnets), Port.device_owner.in_(ROUTER_PORTS))
        )
        noted.update(session.scalars(on_subnets))
    if networks:
        on_networks = select(Port.device_id).where(
            Port.network_id.in_(networks), Port.device_owner.in_(ROUTER_PORTS)
        )
        noted.update(session.scalars(on_networks))


def _note_ports(session: Session, written: list[Any], modified: set[Any]) -> None:
    """Instance ports, each with the host(s) it is bound to before and after the flush:
    the compute agent of a host follows only its own (a port moved between hosts is
    noted for both; the old one sees it removed)."""
    noted: set[tuple[str, str]] = session.info.setdefault(PORTS, set())
    ports = {row.id for row in written if isinstance(row, Port)}
    subnets: set[str] = set()
    networks: set[str] = set()
    for row in written:
        if isinstance(row, Port):
            noted.update(_compute_port(row))
        elif isinstance(row, IPAllocation) and row.port_id and row.port_id not in ports:
            port = session.get(Port, row.port_id)
            if port is not None:
                noted.update(_compute_port(port))
    for row in modified:
        if isinstance(row, Subnet) and _altered(row, NOT_IN_DOCUMENTS):
            subnets.add(row.id)
        elif isinstance(row, Network) and _altered(row, NOT_IN_DOCUMENTS):
            networks.add(row.id)
    bound = (
        select(Port.id, Port.host_id)
        .where(Port.device_owner.startswith(COMPUTE), Port.host_id != "")
        .distinct()
    )
    if subnets:
        on_subnets = bound.join(IPAllocation, IPAllocation.port_id == Port.id).where(
            IPAllocation.subnet_id.in_(subnets)
        )
        noted.update((i, h) for i, h in session.execute(on_subnets).all())
    if networks:
        on_networks = bound.where(Port.network_id.in_(networks))
        noted.update((i, h) for i, h in session.execute(on_networks).all())


def _compute_port(port: Port) -> Iterable[tuple[str, str]]:
    """(port, host) for each host an instance port is bound to, before and after."""
    if any(owner.startswith(COMPUTE) for owner in _values(port, "device_owner")):
        return [(port.id, host) for host in _values(port, "host_id")]
    return ()


def _values(row: Any, key: str) -> Iterable[str]:
    """The attribute's values in this flush, before and after: a row that moves from one
    router to another (a port's device, a floating IP's router) changes both."""
    values = inspect(row).attrs[key].history.sum()
    if not values:  # not loaded (expired by an undone savepoint): read it
        values = [getattr(row, key)]
    return [v for v in values if v]


def _router_of(port: Port) -> Iterable[str]:
    """The router a port belongs to, before and after this flush, if it is a router's."""
    if any(owner in ROUTER_PORTS for owner in _values(port, "device_owner")):
        return _values(port, "device_id")
    return ()


def _altered(row: Any, ignored: set[str]) -> bool:
    """Whether the row changed in more than the ``ignored`` attributes."""
    state = inspect(row)
    return any(attr.history.has_changes() for attr in state.attrs if attr.key not in ignored)


def _write_log(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint is released: the transaction goes on, and so does noting
    session.flush()  # the last rows of the transaction are noted by the flush
    routers = session.info.pop(ROUTERS, set())
    networks = session.info.pop(NETWORKS, set())
    ports = session.info.pop(PORTS, set())
    if not routers and not networks and not ports:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Conflicts with itself only: log writers queue, everything else goes on.
        session.execute(text("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE"))
    for kind, ids in ((ROUTER, routers), (NETWORK, networks)):
        session.add_all(Change(kind=kind, resource_id=i) for i in sorted(ids))
    session.add_all(Change(kind=PORT, resource_id=i, host=h) for i, h in sorted(ports))


def _forget(session: Session, *_: Any) -> None:
    if session.in_nested_transaction():
        # A savepoint undone: what was noted before it still stands (what was noted within
        # it is at worst a document sent again).
        return
    session.info.pop(ROUTERS, None)
    session.info.pop(NETWORKS, None)
    session.info.pop(PORTS, None)


def install(sessions: sessionmaker[Session]) -> None:
    """Log the changes of every transaction of sessions made by ``sessions``."""
    event.listen(sessions, "before_flush", _note)
    event.listen(sessions, "before_commit", _write_log)
    event.listen(sessions, "after_rollback", _forget)
