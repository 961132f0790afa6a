"""The agents' change log, written as each write transaction commits.

Routers are noted by the store where it changes them (note_router); networks are noted by
the session itself, from the rows a flush writes (a subnet, a port, an address, a DHCP
place, the network), so that no code path that touches a network can forget to.

Agents read the log by sequence number ("what changed after N"), so a number must never
become visible after a higher one: an agent that had already read the higher one would
skip it for good. On PostgreSQL two transactions draw numbers in one order and may commit
in the other; so the rows are written last, just before COMMIT, under a table lock that
only log writers take (readers never wait). SQLite has one writer at a time already.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from hanet.server.models import Change, IPAllocation, Network, NetworkDhcpBinding, Port, Subnet

ROUTERS, NETWORKS = "hanet.changed_routers", "hanet.changed_networks"
ROUTER, NETWORK = "router", "network"
OF_A_NETWORK = (Subnet, Port, IPAllocation, NetworkDhcpBinding)


def note_router(session: Session, router_id: str) -> None:
    session.info.setdefault(ROUTERS, set()).add(router_id)


def _note_networks(session: Session, _context: Any, _instances: Any) -> None:
    noted: set[str] = session.info.setdefault(NETWORKS, set())
    modified = (row for row in session.dirty if session.is_modified(row))
    for row in chain(session.new, session.deleted, modified):
        if isinstance(row, Network):
            noted.add(row.id)
        elif isinstance(row, OF_A_NETWORK):
            noted.add(row.network_id)


def _write_log(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint is released: the transaction goes on, and so does noting
    session.flush()  # the last rows of the transaction are noted by the flush
    routers = session.info.pop(ROUTERS, set())
    networks = session.info.pop(NETWORKS, set())
    if not routers and not networks:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Conflicts with itself only: log writers queue, everything else goes on.
        session.execute(text("LOCK TABLE changes IN SHARE ROW EXCLUSIVE MODE"))
    for kind, ids in ((ROUTER, routers), (NETWORK, networks)):
        session.add_all(Change(kind=kind, resource_id=i) for i in sorted(ids))


def _forget(session: Session, *_: Any) -> None:
    session.info.pop(ROUTERS, None)
    session.info.pop(NETWORKS, None)


def install(sessions: sessionmaker[Session]) -> None:
    """Log the changes of every transaction of sessions made by ``sessions``."""
    event.listen(sessions, "before_flush", _note_networks)
    event.listen(sessions, "before_commit", _write_log)
    event.listen(sessions, "after_rollback", _forget)
