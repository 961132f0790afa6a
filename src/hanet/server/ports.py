"""Ports and their addresses: MACs, fixed IPs from the pools, SLAAC. Same transaction
contract as hanet.server.store."""

from __future__ import annotations

import ipaddress
import itertools
import random
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from hanet.server import ipam
from hanet.server.api.errors import BadRequest, Conflict, InvalidInput, not_found
from hanet.server.changelog import FLOATING, ROUTER_PORTS
from hanet.server.models import FloatingIP, IPAllocation, Network, Port, Router, Subnet, utcnow
from hanet.server.store import ORDERED_UP_TO, RETRIES, Context, SqlStore, port_view


class PortStore(SqlStore):
    # Ports --------------------------------------------------------------------------------

    def create_port(self, ctx: Context, values: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(RETRIES):
            try:
                return self._create_port(ctx, dict(values), attempt)
            except IntegrityError:
                if "mac_address" in values:
                    raise Conflict(
                        f"Unable to complete operation for network "
                        f"{values['network_id']}. The mac address "
                        f"{values['mac_address']} is in use.",
                        "MacAddressInUse",
                    ) from None
                continue  # a concurrent request took the random MAC: draw again
        raise Conflict("could not allocate a MAC address", "MacGenerationFailure")

    def _create_port(self, ctx: Context, values: dict[str, Any], attempt: int) -> dict[str, Any]:
        with self.writes.begin() as session:
            network = self._network(session, ctx, values["network_id"])
            if not ctx.is_admin and network.project_id != ctx.project_id and not network.shared:
                raise not_found("network", values["network_id"])
            mac = values.get("mac_address") or ipam.random_mac()
            row = Port(
                id=str(uuid.uuid4()),
                project_id=self._project(ctx, values),
                network_id=network.id,
                mac_address=mac,
                name=values["name"],
                description=values["description"],
                admin_state_up=values["admin_state_up"],
                device_id=values["device_id"],
                device_owner=values["device_owner"],
                host_id=values["binding:host_id"],
                binding_profile=values["binding:profile"],
                allowed_address_pairs=values["allowed_address_pairs"],
                status="ACTIVE" if values["binding:host_id"] else "DOWN",
            )
            session.add(row)
            session.flush()  # the MAC's uniqueness is checked here
            requests = values.get("fixed_ips")
            self._allocate(session, network, row, requests)
            session.flush()
            session.refresh(row)
            return port_view(row)

    def _allocate(
        self, session: Session, network: Network, port: Port, requests: list[dict[str, Any]] | None
    ) -> None:
        subnets = {s.id: s for s in network.subnets}
        if requests is None:
            requests = _default_requests(network.subnets)
            if not requests and network.subnets:
                raise _exhausted(network.id)
        for position, wanted in enumerate(requests):
            subnet = self._request_subnet(subnets, network, wanted)
            self._allocate_one(session, network, port, subnet, wanted.get("ip_address"), position)

    @staticmethod
    def _request_subnet(
        subnets: dict[str, Subnet], network: Network, wanted: dict[str, Any]
    ) -> Subnet:
        if "subnet_id" in wanted:
            subnet = subnets.get(wanted["subnet_id"])
            if subnet is None:
                raise InvalidInput(
                    "fixed_ips", f"subnet {wanted['subnet_id']} is not on network {network.id}"
                )
            return subnet
        if "ip_address" not in wanted:
            raise InvalidInput("fixed_ips", "each entry needs subnet_id or ip_address")
        address = ipaddress.ip_address(wanted["ip_address"])
        for subnet in subnets.values():
            if address in ipaddress.ip_network(subnet.cidr):
                return subnet
        raise BadRequest(
            f"IP address {address} is not a valid IP for any of the subnets on "
            f"network {network.id}.",
            "InvalidIpForNetwork",
        )

    def _allocate_one(
        self,
        session: Session,
        network: Network,
        port: Port,
        subnet: Subnet,
        address: str | None,
        position: int,
    ) -> None:
        cidr = ipaddress.ip_network(subnet.cidr)
        if address is not None:
            ip = ipaddress.ip_address(address)
            first, last = ipam.usable_range(cidr)
            if not int(first) <= int(ip) <= int(last):
                raise BadRequest(
                    f"IP address {ip} is not a valid IP for the specified subnet.",
                    "InvalidIpForSubnet",
                )
            if not self._try_insert(session, network, port, subnet, str(ip), position):
                raise Conflict(
                    f"IP address {ip} already allocated in subnet {subnet.id}",
                    "IpAddressAlreadyAllocated",
                )
            return
        if subnet.ipv6_address_mode == "slaac" or subnet.ipv6_ra_mode == "slaac":
            ip = ipam.slaac_address(cidr, port.mac_address)  # type: ignore[arg-type]
            if not self._try_insert(session, network, port, subnet, str(ip), position):
                raise Conflict(
                    f"IP address {ip} already allocated in subnet {subnet.id}",
                    "IpAddressAlreadyAllocated",
                )
            return
        pools = [
            (ipaddress.ip_address(p["start"]), ipaddress.ip_address(p["end"]))
            for p in subnet.allocation_pools
        ]
        if ipam.pool_size(pools) > ORDERED_UP_TO:
            # A big pool (an HA network's /18, an external /16): random addresses, tried
            # without reading the thousands already used; collisions are rare and cheap.
            for candidate in ipam.random_addresses(pools, RETRIES):
                if self._try_insert(session, network, port, subnet, str(candidate), position):
                    return
        used = set(
            session.scalars(
                select(IPAllocation.ip_address).where(IPAllocation.subnet_id == subnet.id)
            )
        )
        # The first free address; if another request takes it between our read and our
        # insert, random ones near the front, so that a crowd of requests spreads out.
        window = list(itertools.islice(ipam.free_addresses(pools, used), RETRIES * 8))
        for attempt in range(RETRIES):
            if not window:
                break
            candidate = window.pop(0 if attempt == 0 else random.randrange(len(window)))
            if self._try_insert(session, network, port, subnet, str(candidate), position):
                return
        raise _exhausted(network.id)

    @staticmethod
    def _try_insert(
        session: Session, network: Network, port: Port, subnet: Subnet, address: str, position: int
    ) -> bool:
        try:
            with session.begin_nested():
                session.add(
                    IPAllocation(
                        subnet_id=subnet.id,
                        ip_address=address,
                        port_id=port.id,
                        network_id=network.id,
                        position=position,
                    )
                )
            return True
        except IntegrityError:
            return False

    def _port(self, session: Session, ctx: Context, port_id: str) -> Port:
        return self._owned(ctx, session.get(Port, port_id), "port", port_id)  # type: ignore[no-any-return]

    def get_port(self, ctx: Context, port_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            return port_view(self._port(session, ctx, port_id))

    def list_ports(self, ctx: Context) -> list[dict[str, Any]]:
        with self.sessions() as session:
            query = (
                select(Port)
                .order_by(Port.created_at, Port.id)
                .options(selectinload(Port.fixed_ips))
            )
            if not ctx.is_admin:
                query = query.where(Port.project_id == ctx.project_id)
            return [port_view(r) for r in session.scalars(query)]

    def update_port(self, ctx: Context, port_id: str, values: dict[str, Any]) -> dict[str, Any]:
        try:
            with self.writes.begin() as session:
                row = self._port(session, ctx, port_id)
                renames = {"binding:host_id": "host_id", "binding:profile": "binding_profile"}
                for key, value in values.items():
                    if key in (
                        "fixed_ips",
                        "security_groups",
                        "port_security_enabled",
                        "binding:vnic_type",
                    ):
                        continue
                    setattr(row, renames.get(key, key), value)
                if "binding:host_id" in values:
                    row.status = "ACTIVE" if values["binding:host_id"] else "DOWN"
                if "fixed_ips" in values:
                    self._keep_floating_address(session, row, values["fixed_ips"])
                    network = row.network_id
                    row.fixed_ips.clear()
                    session.flush()
                    self._allocate(
                        session, self._network(session, ctx, network), row, values["fixed_ips"]
                    )
                row.revision_number += 1
                row.updated_at = utcnow()
                session.flush()
                session.refresh(row)
                return port_view(row)
        except IntegrityError:
            raise Conflict(
                f"The mac address {values.get('mac_address')} is in use.", "MacAddressInUse"
            ) from None

    @staticmethod
    def _keep_floating_address(session: Session, port: Port, wanted: list[dict[str, Any]]) -> None:
        """A fixed address a floating IP maps stays on its port (Neutron's
        prevent_internal_ip_change_for_fip): a router would map it to nobody."""
        mapped = session.scalars(
            select(FloatingIP.fixed_ip_address).where(FloatingIP.fixed_port_id == port.id)
        ).first()
        if mapped and mapped not in {w.get("ip_address") for w in wanted}:
            raise BadRequest(
                f"Cannot update the fixed_ips of the port {port.id}, because its original "
                "fixed_ip has been associated to a floating ip"
            )

    def delete_port(self, ctx: Context, port_id: str) -> None:
        with self.writes.begin() as session:
            row = self._port(session, ctx, port_id)
            if self._owned_by_l3(session, row):
                # Neutron's prevent_l3_port_deletion: such a port goes with its router
                # interface, gateway, place or floating IP, never alone.
                raise Conflict(
                    f"Port {row.id} cannot be deleted directly via the port API: "
                    f"has device owner {row.device_owner}.",
                    "ServicePortInUse",
                )
            # As Neutron does, the port's floating IPs stay allocated but map nothing now;
            # their routers' documents change with them (hanet.server.changelog).
            for floating in session.scalars(
                select(FloatingIP).where(FloatingIP.fixed_port_id == row.id)
            ):
                floating.fixed_port_id = floating.fixed_ip_address = floating.router_id = None
                floating.revision_number += 1
                floating.updated_at = utcnow()
            session.delete(row)

    @staticmethod
    def _owned_by_l3(session: Session, port: Port) -> bool:
        """Whether the port belongs to a router or floating IP that still exists (one left
        behind by a failed deletion may go, as in Neutron)."""
        if port.device_owner in ROUTER_PORTS:
            return session.get(Router, port.device_id) is not None
        if port.device_owner == FLOATING:
            return session.get(FloatingIP, port.device_id) is not None
        return False


def _default_requests(subnets: list[Subnet]) -> list[dict[str, Any]]:
    """Neutron's default: an address from the first IPv4 subnet, and from every IPv6 one."""
    requests: list[dict[str, Any]] = []
    v4 = [s for s in subnets if s.ip_version == 4]
    if v4:
        requests.append({"subnet_id": v4[0].id})
    requests += [{"subnet_id": s.id} for s in subnets if s.ip_version == 6]
    return requests


def _exhausted(network_id: str) -> Conflict:
    return Conflict(
        f"No more IP addresses available on network {network_id}.", "IpAddressGenerationFailure"
    )
