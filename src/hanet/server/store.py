"""The store: every change the API makes, as one atomic operation.

Contract (for SQLite and PostgreSQL alike):
- Each public method is one transaction: it commits whole or raises and leaves nothing.
- Uniqueness (an address in a subnet, a MAC in a network) is enforced by the database, so it
  holds with concurrent requests and with several servers on one PostgreSQL. A method that
  loses such a race retries with another candidate, a bounded number of times.
- Methods block (they run in a worker thread, never on the event loop); each takes at
  most one round of row locks and returns plain dicts in Neutron's shapes.
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from hanet.server import changelog, ipam
from hanet.server.api.errors import BadRequest, Conflict, InvalidInput, not_found
from hanet.server.database import make_engine
from hanet.server.models import IPAllocation, Network, Port, Subnet, utcnow
from hanet.server.segments import Segments

RETRIES = 20  # candidates tried when another request takes the same address or MAC
ORDERED_UP_TO = 1024  # addresses; bigger pools hand out random addresses (see _allocate_one)


class Context:
    """Who asks: their project, and whether they are admin."""

    def __init__(self, project_id: str, is_admin: bool) -> None:
        self.project_id, self.is_admin = project_id, is_admin


def stamp(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "created_at": row.created_at.replace(microsecond=0).isoformat() + "Z",
        "updated_at": row.updated_at.replace(microsecond=0).isoformat() + "Z",
        "revision_number": row.revision_number,
        "tags": [],
    }


def network_view(row: Network) -> dict[str, Any]:
    return {
        **stamp(row),
        "admin_state_up": row.admin_state_up,
        "status": "ACTIVE",
        "shared": row.shared,
        "router:external": row.external,
        "mtu": row.mtu,
        "subnets": [s.id for s in row.subnets],
        "provider:network_type": row.network_type,
        "provider:physical_network": row.physical_network,
        "provider:segmentation_id": row.segmentation_id,
        "port_security_enabled": True,
        "availability_zone_hints": [],
        "availability_zones": ["nova"],
        "ipv4_address_scope": None,
        "ipv6_address_scope": None,
    }


def subnet_view(row: Subnet) -> dict[str, Any]:
    return {
        **stamp(row),
        "network_id": row.network_id,
        "ip_version": row.ip_version,
        "cidr": row.cidr,
        "gateway_ip": row.gateway_ip,
        "enable_dhcp": row.enable_dhcp,
        "allocation_pools": row.allocation_pools,
        "dns_nameservers": row.dns_nameservers,
        "host_routes": row.host_routes,
        "ipv6_ra_mode": row.ipv6_ra_mode,
        "ipv6_address_mode": row.ipv6_address_mode,
        "subnetpool_id": None,
        "service_types": [],
    }


def port_view(row: Port) -> dict[str, Any]:
    return {
        **stamp(row),
        "network_id": row.network_id,
        "mac_address": row.mac_address,
        "admin_state_up": row.admin_state_up,
        "status": row.status,
        "device_id": row.device_id,
        "device_owner": row.device_owner,
        "fixed_ips": [
            {"subnet_id": a.subnet_id, "ip_address": a.ip_address} for a in row.fixed_ips
        ],
        "allowed_address_pairs": row.allowed_address_pairs,
        "binding:host_id": row.host_id,
        "binding:profile": row.binding_profile,
        "binding:vnic_type": "normal",
        # hanet's agents build the linuxbridge layout: Nova plugs a "bridge" VIF (brq<net>).
        "binding:vif_type": "bridge" if row.host_id else "unbound",
        "binding:vif_details": {},
        "security_groups": [],
        "port_security_enabled": True,
    }


class SqlStore:
    """The store on SQLAlchemy: an SQLite file (embedded) or PostgreSQL (several servers)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Reads and writes apart: on SQLite, writers queue for the lock from their first
        # statement while readers never wait (WAL); on PostgreSQL they are the same engine.
        self.writer = engine
        if engine.dialect.name == "sqlite":
            self.writer = make_engine(
                engine.url.render_as_string(hide_password=False), immediate=True
            )
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.segments = Segments()  # the configured ranges: hanet.server.testing.store_for
        self.writes = sessionmaker(self.writer, expire_on_commit=False)
        changelog.install(self.writes)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.writer is not self.engine:
            self.writer.dispose()

    # Visibility ---------------------------------------------------------------------------

    @staticmethod
    def _network_visible(ctx: Context, row: Network) -> bool:
        if row.ha_owner is not None:
            return ctx.is_admin
        return ctx.is_admin or row.project_id == ctx.project_id or row.shared or row.external

    def _network(self, session: Session, ctx: Context, network_id: str) -> Network:
        row = session.get(Network, network_id)
        if row is None or not self._network_visible(ctx, row):
            raise not_found("network", network_id)
        return row

    @staticmethod
    def _owned(ctx: Context, row: Any, kind: str, row_id: str) -> Any:
        if row is None or not (ctx.is_admin or row.project_id == ctx.project_id):
            raise not_found(kind, row_id)
        return row

    @staticmethod
    def _project(ctx: Context, values: dict[str, Any]) -> str:
        asked = values.pop("project_id", None) or values.pop("tenant_id", None)
        values.pop("tenant_id", None)
        if asked is not None and asked != ctx.project_id and not ctx.is_admin:
            raise BadRequest(
                "Specifying 'project_id' or 'tenant_id' other than the authenticated project "
                "in request requires admin privileges"
            )
        return asked or ctx.project_id

    # Networks -----------------------------------------------------------------------------

    def create_network(self, ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
        segment = self.segments.prepare(values)
        with self.writes.begin() as session:
            row = Network(
                id=str(uuid.uuid4()),
                project_id=self._project(ctx, values),
                name=values["name"],
                description=values["description"],
                admin_state_up=values["admin_state_up"],
                shared=values["shared"],
                external=values["router:external"],
                **segment,
            )
            session.add(row)
            session.flush()
            self.segments.record(session, row)
            return network_view(row)

    def get_network(self, ctx: Context, network_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            return network_view(self._network(session, ctx, network_id))

    def list_networks(self, ctx: Context) -> list[dict[str, Any]]:
        with self.sessions() as session:
            rows = session.scalars(
                select(Network)
                .order_by(Network.created_at, Network.id)
                .options(selectinload(Network.subnets))
            )
            return [network_view(r) for r in rows if self._network_visible(ctx, r)]

    def update_network(
        self, ctx: Context, network_id: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        with self.writes.begin() as session:
            row = self._owned(ctx, self._network(session, ctx, network_id), "network", network_id)
            renames = {"router:external": "external"}
            if "mtu" in values:
                self.segments.check_mtu(row.network_type, values["mtu"])
            for key, value in values.items():
                if key == "port_security_enabled":
                    continue
                setattr(row, renames.get(key, key), value)
            row.revision_number += 1
            row.updated_at = utcnow()
            session.flush()
            return network_view(row)

    def delete_network(self, ctx: Context, network_id: str) -> None:
        with self.writes.begin() as session:
            row = self._owned(ctx, self._network(session, ctx, network_id), "network", network_id)
            in_use = session.scalars(
                select(Port.id).where(
                    Port.network_id == network_id, Port.device_owner != "network:dhcp"
                )
            ).first()
            if in_use is not None:
                raise Conflict(
                    f"Unable to complete operation on network {network_id}. There "
                    "are one or more ports still in use on the network.",
                    "NetworkInUse",
                )
            session.delete(row)

    # Subnets ------------------------------------------------------------------------------

    def create_subnet(self, ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
        cidr = ipaddress.ip_network(values["cidr"])
        if cidr.version != values["ip_version"]:
            raise InvalidInput("cidr", f"{cidr} is not an IPv{values['ip_version']} subnet")
        gateway = _gateway(cidr, values.get("gateway_ip", ipam.default_gateway(cidr)))
        pools = _pools(cidr, values.get("allocation_pools"), gateway)
        with self.writes.begin() as session:
            network = self._network(session, ctx, values["network_id"])
            if not ctx.is_admin and network.project_id != ctx.project_id:
                raise not_found("network", values["network_id"])
            for other in network.subnets:
                if ipaddress.ip_network(other.cidr).overlaps(cidr):
                    raise BadRequest(
                        f"Invalid input for operation: Requested subnet with cidr:"
                        f" {cidr} for network: {network.id} overlaps with another "
                        "subnet."
                    )
            row = Subnet(
                id=str(uuid.uuid4()),
                project_id=self._project(ctx, values),
                network_id=network.id,
                name=values["name"],
                description=values["description"],
                ip_version=cidr.version,
                cidr=str(cidr),
                gateway_ip=None if gateway is None else str(gateway),
                enable_dhcp=values["enable_dhcp"],
                allocation_pools=[{"start": str(a), "end": str(b)} for a, b in pools],
                dns_nameservers=values["dns_nameservers"],
                host_routes=values["host_routes"],
                ipv6_ra_mode=values["ipv6_ra_mode"],
                ipv6_address_mode=values["ipv6_address_mode"],
            )
            session.add(row)
            network.revision_number += 1
            session.flush()
            return subnet_view(row)

    def _subnet(self, session: Session, ctx: Context, subnet_id: str) -> Subnet:
        row = session.get(Subnet, subnet_id)
        if row is None or not self._network_visible(ctx, row.network):
            raise not_found("subnet", subnet_id)
        return row

    def get_subnet(self, ctx: Context, subnet_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            return subnet_view(self._subnet(session, ctx, subnet_id))

    def list_subnets(self, ctx: Context) -> list[dict[str, Any]]:
        with self.sessions() as session:
            rows = session.scalars(
                select(Subnet)
                .order_by(Subnet.created_at, Subnet.id)
                .options(selectinload(Subnet.network))
            )
            return [subnet_view(r) for r in rows if self._network_visible(ctx, r.network)]

    def update_subnet(self, ctx: Context, subnet_id: str, values: dict[str, Any]) -> dict[str, Any]:
        with self.writes.begin() as session:
            row = self._owned(ctx, self._subnet(session, ctx, subnet_id), "subnet", subnet_id)
            cidr = ipaddress.ip_network(row.cidr)
            gateway = _gateway(cidr, values.get("gateway_ip", row.gateway_ip))
            if "allocation_pools" in values or "gateway_ip" in values:
                given = values.get("allocation_pools", row.allocation_pools)
                pools = _pools(cidr, given, gateway)
                row.allocation_pools = [{"start": str(a), "end": str(b)} for a, b in pools]
                row.gateway_ip = None if gateway is None else str(gateway)
            for key in ("name", "description", "enable_dhcp", "dns_nameservers", "host_routes"):
                if key in values:
                    setattr(row, key, values[key])
            row.revision_number += 1
            row.updated_at = utcnow()
            session.flush()
            return subnet_view(row)

    def delete_subnet(self, ctx: Context, subnet_id: str) -> None:
        with self.writes.begin() as session:
            row = self._owned(ctx, self._subnet(session, ctx, subnet_id), "subnet", subnet_id)
            used = session.scalars(
                select(IPAllocation.port_id)
                .join(Port)
                .where(IPAllocation.subnet_id == subnet_id, Port.device_owner != "network:dhcp")
            ).first()
            if used is not None:
                raise Conflict(
                    f"Unable to complete operation on subnet {subnet_id}: One or "
                    "more ports have an IP allocation from this subnet.",
                    "SubnetInUse",
                )
            session.delete(row)


def _gateway(cidr: ipam.IPNetwork, gateway: Any) -> ipam.IPAddress | None:
    if gateway is None:
        return None
    address = ipaddress.ip_address(gateway)
    if address not in cidr or address == cidr.network_address:
        raise InvalidInput("gateway_ip", f"gateway {address} is not a valid host of {cidr}")
    return address


def _pools(
    cidr: ipam.IPNetwork, given: list[dict[str, str]] | None, gateway: ipam.IPAddress | None
) -> list[ipam.Pool]:
    if given is None:
        return ipam.default_pools(cidr, gateway)
    pools = [(ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"])) for p in given]
    ipam.check_pools(cidr, pools, gateway)
    return pools
