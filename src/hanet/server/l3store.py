"""Routers, L3 agents and HA on top of the network store: the same transaction contract
(see hanet.server.store). VRIDs, router places on agents and HA ports are unique in the
database, so concurrent requests and several servers never hand one out twice."""

from __future__ import annotations

import ipaddress
import random
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from hanet.server import changelog, placement, router_errors
from hanet.server.api.errors import BadRequest, Conflict, not_found
from hanet.server.changelog import GATEWAY as GATEWAY  # the names others import from here
from hanet.server.changelog import HA_INTERFACE as HA_INTERFACE
from hanet.server.changelog import INTERFACE as INTERFACE
from hanet.server.models import (
    Agent,
    FloatingIP,
    HANetwork,
    Network,
    Port,
    Router,
    RouterBinding,
    Subnet,
    utcnow,
)
from hanet.server.ports import PortStore
from hanet.server.store import RETRIES, Context, stamp

HA_CIDR = ipaddress.ip_network("169.254.192.0/18")
VRIDS = range(1, 255)
L3_AGENT = "L3 agent"


class L3Store(PortStore):
    def __init__(
        self,
        engine: Any,
        *,
        l3_ha: bool = False,
        max_l3_agents: int = 3,
        agent_down_time: float = 3.0,
    ) -> None:
        super().__init__(engine)
        self.l3_ha, self.max_l3_agents, self.agent_down_time = l3_ha, max_l3_agents, agent_down_time

    # Views --------------------------------------------------------------------------------

    def _router_view(
        self,
        session: Session,
        row: Router,
        ports: dict[str, Port] | None = None,
        erring: set[str] | None = None,
    ) -> dict[str, Any]:
        """``ports``: gateway ports loaded already (a list of routers), else each is read;
        ``erring``: the routers a live agent reports in error, read for this one if None."""
        if erring is None:
            erring = router_errors.erring(session, [row.id], self.agent_down_time)
        gateway = None
        if row.gw_port_id is not None:
            port = (ports or {}).get(row.gw_port_id) or session.get(Port, row.gw_port_id)
            if port is not None:
                gateway = {
                    "network_id": port.network_id,
                    "enable_snat": row.enable_snat,
                    "external_fixed_ips": [
                        {"subnet_id": a.subnet_id, "ip_address": a.ip_address}
                        for a in port.fixed_ips
                    ],
                }
        return {
            **stamp(row),
            "admin_state_up": row.admin_state_up,
            "status": "ERROR" if row.id in erring else row.status,
            "ha": row.ha,
            "distributed": row.distributed,
            "external_gateway_info": gateway,
            "routes": row.routes,
            "availability_zone_hints": row.availability_zone_hints,
            "availability_zones": ["nova"],
            "flavor_id": None,
        }

    def _agent_view(self, row: Agent) -> dict[str, Any]:
        return {
            "id": row.id,
            "agent_type": row.agent_type,
            "binary": row.binary,
            "host": row.host,
            "topic": row.topic,
            "admin_state_up": row.admin_state_up,
            "alive": self._alive(row),
            "availability_zone": row.availability_zone,
            "configurations": row.configurations,
            "description": row.description,
            "created_at": _when(row.created_at),
            "started_at": _when(row.started_at),
            "heartbeat_timestamp": _when(row.heartbeat_at),
            "resources_synced": None,
        }

    def _alive(self, row: Agent) -> bool:
        return utcnow() - row.heartbeat_at < timedelta(seconds=self.agent_down_time)

    @staticmethod
    def _changed(session: Session, router_id: str) -> None:
        """Log a change of the router that none of its rows shows (the rows a transaction
        writes are noted by themselves: hanet.server.changelog)."""
        changelog.note_router(session, router_id)

    # Routers ------------------------------------------------------------------------------

    def create_router(self, ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
        for _ in range(RETRIES):
            try:
                return self._create_router(ctx, dict(values))
            except IntegrityError:
                continue  # another router took the same VRID, or agent place: try again
        raise Conflict("could not allocate a VRID for the router", "MaxVRIDAllocationTriesReached")

    def _create_router(self, ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
        with self.writes.begin() as session:
            ha = values.get("ha", self.l3_ha)
            row = Router(
                id=str(uuid.uuid4()),
                project_id=self._project(ctx, values),
                name=values["name"],
                description=values["description"],
                admin_state_up=values["admin_state_up"],
                ha=ha,
                distributed=values.get("distributed", False),
                availability_zone_hints=values.get("availability_zone_hints", []),
            )
            session.add(row)
            if ha:
                row.ha_network_id, row.vrid = self._allocate_vrid(session, row.project_id)
            session.flush()
            if values.get("external_gateway_info"):
                self._set_gateway(session, ctx, row, values["external_gateway_info"])
            self._schedule(session, row)
            session.flush()
            return self._router_view(session, row)

    def _allocate_vrid(self, session: Session, project_id: str) -> tuple[str, int]:
        """A free VRID of the project's first HA network that has one; a further network
        when all 254 are taken (Neutron stops there). Drawn at random among the free ones,
        so that concurrent creations rarely collide (the unique key settles it if they do)."""
        networks = session.scalars(
            select(HANetwork).where(HANetwork.project_id == project_id).order_by(HANetwork.position)
        ).all()
        # Counted in the database, so that only the one network with room is read.
        counted = (
            select(Router.ha_network_id, func.count())
            .where(Router.ha_network_id.in_([n.network_id for n in networks]))
            .group_by(Router.ha_network_id)
        )
        taken = {network_id: count for network_id, count in session.execute(counted).all()}
        for ha_net in networks:
            if taken.get(ha_net.network_id, 0) >= len(VRIDS):
                continue
            used = set(
                session.scalars(
                    select(Router.vrid).where(Router.ha_network_id == ha_net.network_id)
                )
            )
            free = [v for v in VRIDS if v not in used]
            if free:
                return ha_net.network_id, random.choice(free)
        return self._create_ha_network(session, project_id, len(networks)), random.choice(VRIDS)

    def _create_ha_network(self, session: Session, project_id: str, position: int) -> str:
        network = Network(
            id=str(uuid.uuid4()),
            project_id="",
            ha_owner=project_id,
            name=f"HA network tenant {project_id}",
            admin_state_up=True,
            **self.segments.prepare({}),
        )
        session.add(network)
        session.flush()
        self.segments.record(session, network)
        session.add(HANetwork(network_id=network.id, project_id=project_id, position=position))
        first, last = HA_CIDR.network_address + 1, HA_CIDR.broadcast_address - 1
        session.add(
            Subnet(
                id=str(uuid.uuid4()),
                project_id="",
                network_id=network.id,
                name=f"HA subnet tenant {project_id}",
                ip_version=4,
                cidr=str(HA_CIDR),
                gateway_ip=None,
                enable_dhcp=False,
                allocation_pools=[{"start": str(first), "end": str(last)}],
                dns_nameservers=[],
                host_routes=[],
            )
        )
        session.flush()
        return network.id

    def _set_gateway(
        self, session: Session, ctx: Context, row: Router, info: dict[str, Any]
    ) -> None:
        network = self._network(session, ctx, info["network_id"])
        if not network.external:
            raise BadRequest(
                f"Bad router request: Network {network.id} is not an external network."
            )
        port = self._device_port(
            session,
            project_id="",
            network_id=network.id,
            device_id=row.id,
            device_owner=GATEWAY,
            status="ACTIVE",
        )
        self._allocate(session, network, port, info.get("external_fixed_ips"))
        row.gw_port_id, row.enable_snat = port.id, info.get("enable_snat", True)

    def _device_port(self, session: Session, **fields: Any) -> Port:
        """A port a router or the server owns (gateway, interface, HA, floating IP), with a
        fresh MAC; added and flushed, addresses still to allocate."""
        for _ in range(RETRIES):
            port = Port(id=str(uuid.uuid4()), mac_address=_mac(), **fields)
            try:
                with session.begin_nested():
                    session.add(port)
                    session.flush()
                return port
            except IntegrityError:
                # 24 random bits: on an HA network with thousands of ports a drawn MAC is
                # sometimes taken already. Draw again; the transaction goes on.
                continue
        raise Conflict("could not draw a free MAC address", "MacAddressGenerationFailure")

    def _alive_agents(self, session: Session, agent_type: str) -> list[Agent]:
        horizon = utcnow() - timedelta(seconds=self.agent_down_time)
        alive = select(Agent).where(
            Agent.agent_type == agent_type,
            Agent.admin_state_up.is_(True),
            Agent.heartbeat_at > horizon,
        )
        return list(session.scalars(alive))

    def _alive_l3_agents(self, session: Session) -> list[Agent]:
        return self._alive_agents(session, L3_AGENT)

    def _l3_loads(self, session: Session) -> dict[str, int]:
        counted = select(RouterBinding.agent_id, func.count()).group_by(RouterBinding.agent_id)
        return {agent_id: count for agent_id, count in session.execute(counted).all()}

    def _schedule(self, session: Session, row: Router) -> list[str]:
        """Fill one router's free places with the least-loaded alive L3 agents (many
        routers at once: AgentStore._place_all)."""
        bound = session.scalars(
            select(RouterBinding).where(RouterBinding.router_id == row.id)
        ).all()
        if len(bound) >= self._places(row):
            return []
        agents = self._alive_l3_agents(session)
        loads = self._l3_loads(session)
        hosts = {a.id: a.host for a in agents}
        chosen = self._bind(session, row, bound, agents, loads)
        for agent_id in chosen:
            if row.ha:
                self._add_ha_port(session, row, hosts[agent_id])
        return chosen

    def _places(self, row: Router) -> int:
        return self.max_l3_agents if row.ha else 1

    def _bind(
        self,
        session: Session,
        row: Router,
        bound: Sequence[RouterBinding],
        agents: list[Agent],
        loads: dict[str, int],
        kept: int = 0,
    ) -> list[str]:
        """Bind the router's free places to the least-loaded of ``agents`` (``loads`` kept
        current); returns the agents chosen. HA ports are the caller's to add. ``kept``
        of ``bound`` are dead agents' places kept until they are gone (hanet.server.failover):
        they do not count as places, but their indexes stay taken."""
        wanted = self._places(row)
        chosen = placement.choose(
            [placement.Candidate(a.id, loads.get(a.id, 0), a.availability_zone) for a in agents],
            wanted - (len(bound) - kept),
            exclude=[b.agent_id for b in bound],
            zones=row.availability_zone_hints,
        )
        taken = {b.binding_index for b in bound}
        free_indexes = (i for i in range(1, wanted + kept + 1) if i not in taken)
        for agent_id, index in zip(chosen, free_indexes, strict=False):
            session.add(RouterBinding(router_id=row.id, agent_id=agent_id, binding_index=index))
            loads[agent_id] = loads.get(agent_id, 0) + 1
        return chosen

    def _add_ha_port(self, session: Session, row: Router, host: str) -> None:
        network = session.get(Network, row.ha_network_id)
        assert network is not None
        port = self._device_port(session, **ha_port_fields(row, host))
        self._allocate(session, network, port, None)

    def _router(self, session: Session, ctx: Context, router_id: str) -> Router:
        return self._owned(ctx, session.get(Router, router_id), "router", router_id)  # type: ignore[no-any-return]

    def get_router(self, ctx: Context, router_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            return self._router_view(session, self._router(session, ctx, router_id))

    def list_routers(self, ctx: Context) -> list[dict[str, Any]]:
        with self.sessions() as session:
            query = select(Router).order_by(Router.created_at, Router.id)
            if not ctx.is_admin:
                query = query.where(Router.project_id == ctx.project_id)
            return self._router_views(session, list(session.scalars(query)))

    def _router_views(self, session: Session, rows: list[Router]) -> list[dict[str, Any]]:
        """Many routers' views: one query for every gateway port and its addresses, and one
        for the agents' errors, not one per router (held here: the session keeps loaded
        rows only while something refers to them)."""
        gateways = [r.gw_port_id for r in rows if r.gw_port_id]
        ports = {
            p.id: p
            for p in session.scalars(
                select(Port).where(Port.id.in_(gateways)).options(selectinload(Port.fixed_ips))
            )
        }
        erring = router_errors.erring(session, [r.id for r in rows], self.agent_down_time)
        return [self._router_view(session, r, ports, erring) for r in rows]

    def update_router(self, ctx: Context, router_id: str, values: dict[str, Any]) -> dict[str, Any]:
        with self.writes.begin() as session:
            row = self._router(session, ctx, router_id)
            if "ha" in values and values["ha"] != row.ha:
                raise BadRequest(
                    "Cannot change the ha attribute of a router; create a new router instead"
                )
            for key in ("name", "description", "admin_state_up", "routes"):
                if key in values:
                    setattr(row, key, values[key])
            if "external_gateway_info" in values:
                info = values["external_gateway_info"]
                self._keep_floating_gateway(session, row, info["network_id"] if info else None)
                self._clear_gateway(session, row)
                if info:
                    self._set_gateway(session, ctx, row, info)
            row.revision_number += 1
            row.updated_at = utcnow()
            session.flush()
            return self._router_view(session, row)

    @staticmethod
    def _keep_floating_gateway(session: Session, row: Router, network_id: str | None) -> None:
        """A gateway the router's floating IPs use stays on their network (Neutron's
        RouterExternalGatewayInUseByFloatingIp): they would be mapped by nobody."""
        gateway = session.get(Port, row.gw_port_id) if row.gw_port_id else None
        if gateway is None or gateway.network_id == network_id:
            return
        used = session.scalars(
            select(FloatingIP.id).where(
                FloatingIP.router_id == row.id,
                FloatingIP.floating_network_id == gateway.network_id,
            )
        ).first()
        if used is not None:
            raise Conflict(
                f"Gateway cannot be updated for router {row.id}, since a gateway to "
                f"external network {gateway.network_id} is required by one or more "
                "floating IPs.",
                "RouterExternalGatewayInUseByFloatingIp",
            )

    def _clear_gateway(self, session: Session, row: Router) -> None:
        if row.gw_port_id is not None:
            port = session.get(Port, row.gw_port_id)
            row.gw_port_id = None
            if port is not None:
                session.delete(port)
            session.flush()

    def delete_router(self, ctx: Context, router_id: str) -> None:
        with self.writes.begin() as session:
            row = self._router(session, ctx, router_id)
            interfaces = session.scalars(
                select(Port.id).where(Port.device_id == row.id, Port.device_owner == INTERFACE)
            ).first()
            if interfaces is not None:
                raise Conflict(f"Router {router_id} still has ports", "RouterInUse")
            self._clear_gateway(session, row)
            for port in session.scalars(select(Port).where(Port.device_id == row.id)):
                session.delete(port)
            session.delete(row)

    # Interfaces ---------------------------------------------------------------------------

    def add_router_interface(
        self, ctx: Context, router_id: str, info: dict[str, Any]
    ) -> dict[str, Any]:
        with self.writes.begin() as session:
            row = self._router(session, ctx, router_id)
            if "port_id" in info:
                port = self._port(session, ctx, info["port_id"])
                if port.device_id or port.device_owner:
                    raise Conflict(f"Port {port.id} is already in use", "PortInUse")
                if not port.fixed_ips:
                    raise BadRequest(
                        "Bad router request: Router port must have at least one fixed IP"
                    )
                port.device_id, port.device_owner = row.id, INTERFACE
            else:
                subnet = self._subnet(session, ctx, info["subnet_id"])
                if subnet.gateway_ip is None:
                    raise BadRequest(
                        "Bad router request: Subnet for router interface must have a gateway IP."
                    )
                on_router = session.scalars(
                    select(Port).where(Port.device_id == row.id, Port.device_owner == INTERFACE)
                ).all()
                if any(a.subnet_id == subnet.id for p in on_router for a in p.fixed_ips):
                    raise BadRequest(
                        f"Bad router request: Router already has a port on subnet {subnet.id}."
                    )
                port = self._device_port(
                    session,
                    project_id=row.project_id,
                    network_id=subnet.network_id,
                    device_id=row.id,
                    device_owner=INTERFACE,
                    status="ACTIVE",
                )
                self._allocate(
                    session,
                    subnet.network,
                    port,
                    [{"subnet_id": subnet.id, "ip_address": subnet.gateway_ip}],
                )
            row.revision_number += 1
            session.flush()
            session.refresh(port)
            return _interface_info(row, port)

    def remove_router_interface(
        self, ctx: Context, router_id: str, info: dict[str, Any]
    ) -> dict[str, Any]:
        with self.writes.begin() as session:
            row = self._router(session, ctx, router_id)
            ports = session.scalars(
                select(Port).where(Port.device_id == row.id, Port.device_owner == INTERFACE)
            ).all()
            if "port_id" in info:
                port = next((p for p in ports if p.id == info["port_id"]), None)
                missing = f"Router {router_id} does not have an interface with id {info['port_id']}"
            else:
                port = next(
                    (
                        p
                        for p in ports
                        if any(a.subnet_id == info["subnet_id"] for a in p.fixed_ips)
                    ),
                    None,
                )
                missing = f"Router {router_id} has no interface on subnet {info['subnet_id']}"
            if port is None:
                raise not_found("router_interface", router_id).__class__(
                    missing, "RouterInterfaceNotFound"
                )
            result = _interface_info(row, port)
            session.delete(port)
            row.revision_number += 1
            return result


def _admin_only(ctx: Context) -> None:
    if not ctx.is_admin:
        from hanet.server.api.errors import NotAuthorized

        raise NotAuthorized("rule:get_agent is disallowed by policy")


def _when(moment: Any) -> str:
    return str(moment.replace(microsecond=0))


def ha_port_fields(row: Router, host: str) -> dict[str, Any]:
    """An HA port's columns, but its id and MAC: on the router's HA network, bound to the
    agent's host."""
    return {
        "project_id": "",
        "network_id": row.ha_network_id,
        "device_id": row.id,
        "device_owner": HA_INTERFACE,
        "host_id": host,
        "status": "ACTIVE",
        "name": f"HA port tenant {row.project_id}",
    }


def _mac() -> str:
    from hanet.server import ipam

    return ipam.random_mac()


def _interface_info(row: Router, port: Port) -> dict[str, Any]:
    subnets = [a.subnet_id for a in port.fixed_ips]
    return {
        "id": row.id,
        "tenant_id": row.project_id,
        "project_id": row.project_id,
        "port_id": port.id,
        "network_id": port.network_id,
        "subnet_id": subnets[0] if subnets else None,
        "subnet_ids": subnets,
    }
