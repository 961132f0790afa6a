"""Floating IPs: an address on an external network, mapped by a router to a fixed
address of a project's port. Same transaction contract as hanet.server.store."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hanet.server.agents import AgentStore
from hanet.server.api.errors import BadRequest, Conflict, NotFound
from hanet.server.changelog import FLOATING as FLOATING
from hanet.server.changelog import INTERFACE
from hanet.server.models import FloatingIP, Port, Router, utcnow
from hanet.server.store import Context, stamp


def floating_view(row: FloatingIP) -> dict[str, Any]:
    return {
        **stamp(row),
        "floating_network_id": row.floating_network_id,
        "floating_ip_address": row.floating_ip_address,
        "port_id": row.fixed_port_id,
        "fixed_ip_address": row.fixed_ip_address,
        "router_id": row.router_id,
        "status": "ACTIVE" if row.router_id else "DOWN",
        "port_details": None,
    }


class FloatingIPStore(AgentStore):
    def create_floatingip(self, ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
        try:
            with self.writes.begin() as session:
                network = self._network(session, ctx, values["floating_network_id"])
                if not network.external:
                    raise BadRequest(
                        f"Bad floatingip request: Network {network.id} is not "
                        "a valid external network."
                    )
                row_id = str(uuid.uuid4())
                port = self._device_port(
                    session,
                    project_id="",
                    network_id=network.id,
                    device_id=row_id,
                    device_owner=FLOATING,
                    status="ACTIVE",
                )
                wanted = values.get("floating_ip_address")
                self._allocate(session, network, port, [{"ip_address": wanted}] if wanted else None)
                session.refresh(port)
                row = FloatingIP(
                    id=row_id,
                    project_id=self._project(ctx, values),
                    description=values["description"],
                    floating_network_id=network.id,
                    floating_port_id=port.id,
                    floating_ip_address=port.fixed_ips[0].ip_address,
                )
                session.add(row)
                if values.get("port_id"):
                    self._associate(
                        session, ctx, row, values["port_id"], values.get("fixed_ip_address")
                    )
                session.flush()
                return floating_view(row)
        except IntegrityError:
            raise _already_associated(values) from None

    def _associate(
        self, session: Session, ctx: Context, row: FloatingIP, port_id: str, fixed_ip: str | None
    ) -> None:
        port = self._port(session, ctx, port_id)
        addresses = [
            a.ip_address for a in port.fixed_ips if ipaddress.ip_address(a.ip_address).version == 4
        ]
        if fixed_ip is None:
            if not addresses:
                raise BadRequest(
                    f"Bad floatingip request: Port {port_id} does not have any IPv4 address"
                )
            fixed_ip = addresses[0]
        elif fixed_ip not in addresses:
            raise BadRequest(
                f"Bad floatingip request: Port {port_id} does not have fixed ip {fixed_ip}"
            )
        router = self._router_for(session, port, fixed_ip, row.floating_network_id)
        row.fixed_port_id, row.fixed_ip_address, row.router_id = port.id, fixed_ip, router.id

    def _router_for(
        self, session: Session, port: Port, fixed_ip: str, floating_network_id: str
    ) -> Router:
        """The router with an interface on the fixed address's subnet and a gateway on the
        floating network: the one that can do the mapping."""
        subnet_id = next(a.subnet_id for a in port.fixed_ips if a.ip_address == fixed_ip)
        interfaces = session.scalars(select(Port).where(Port.device_owner == INTERFACE)).all()
        for interface in interfaces:
            if any(a.subnet_id == subnet_id for a in interface.fixed_ips):
                router = session.get(Router, interface.device_id)
                gateway = (
                    session.get(Port, router.gw_port_id) if router and router.gw_port_id else None
                )
                if (
                    router is not None
                    and gateway is not None
                    and gateway.network_id == floating_network_id
                ):
                    return router
        raise NotFound(
            f"External network {floating_network_id} is not reachable from subnet "
            f"{subnet_id}.  Therefore, cannot associate Port {port.id} with a "
            "Floating IP.",
            "ExternalGatewayForFloatingIPNotFound",
        )

    def _floating(self, session: Session, ctx: Context, fip_id: str) -> FloatingIP:
        return self._owned(ctx, session.get(FloatingIP, fip_id), "floatingip", fip_id)  # type: ignore[no-any-return]

    def get_floatingip(self, ctx: Context, fip_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            return floating_view(self._floating(session, ctx, fip_id))

    def list_floatingips(self, ctx: Context) -> list[dict[str, Any]]:
        with self.sessions() as session:
            query = select(FloatingIP).order_by(FloatingIP.created_at, FloatingIP.id)
            if not ctx.is_admin:
                query = query.where(FloatingIP.project_id == ctx.project_id)
            return [floating_view(r) for r in session.scalars(query)]

    def update_floatingip(
        self, ctx: Context, fip_id: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            with self.writes.begin() as session:
                row = self._floating(session, ctx, fip_id)
                if "description" in values:
                    row.description = values["description"]
                if "port_id" in values:
                    row.fixed_port_id = row.fixed_ip_address = row.router_id = None
                    session.flush()
                    if values["port_id"]:
                        self._associate(
                            session, ctx, row, values["port_id"], values.get("fixed_ip_address")
                        )
                row.revision_number += 1
                row.updated_at = utcnow()
                session.flush()
                return floating_view(row)
        except IntegrityError:
            raise _already_associated(values) from None

    def delete_floatingip(self, ctx: Context, fip_id: str) -> None:
        with self.writes.begin() as session:
            row = self._floating(session, ctx, fip_id)
            port = session.get(Port, row.floating_port_id)
            session.delete(row)
            if port is not None:
                session.delete(port)

    @staticmethod
    def routers_floatingips(
        session: Session, router_ids: list[str]
    ) -> dict[str, list[dict[str, str]]]:
        """The floating IPs each of the routers maps, in one query."""
        by_router: dict[str, list[dict[str, str]]] = {r: [] for r in router_ids}
        rows = session.scalars(select(FloatingIP).where(FloatingIP.router_id.in_(router_ids)))
        for r in rows:
            assert r.router_id is not None
            by_router[r.router_id].append(
                {
                    "id": r.id,
                    "floating_ip_address": r.floating_ip_address,
                    "fixed_ip_address": r.fixed_ip_address or "",
                }
            )
        return by_router


def _already_associated(values: dict[str, Any]) -> Conflict:
    return Conflict(
        f"Cannot associate floating IP with port {values.get('port_id')}: the "
        "fixed IP already has a floating IP.",
        "FloatingIPPortAlreadyAssociated",
    )
