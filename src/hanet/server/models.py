"""The SQL schema. Uniqueness that must hold under concurrent requests, even from two
servers on one database, is a database constraint here, never only a Python check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

ID = String(36)


def utcnow() -> datetime:
    # Microseconds are kept, so that lists come back in creation order; the API shows
    # whole seconds, as Neutron does.
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Stamped:
    """Neutron's standard attributes."""

    id: Mapped[str] = mapped_column(ID, primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    revision_number: Mapped[int] = mapped_column(Integer, default=0)


class Network(Stamped, Base):
    __tablename__ = "networks"
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    external: Mapped[bool] = mapped_column(Boolean, default=False)
    mtu: Mapped[int] = mapped_column(Integer, default=1500)
    network_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    physical_network: Mapped[str | None] = mapped_column(String(64), nullable=True)
    segmentation_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # An HA network belongs to hanet, not to the project: never listed to the project.
    ha_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    subnets: Mapped[list[Subnet]] = relationship(
        back_populates="network", cascade="all, delete-orphan", order_by="Subnet.created_at"
    )


class Subnet(Stamped, Base):
    __tablename__ = "subnets"
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    ip_version: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    dns_nameservers: Mapped[list[str]] = mapped_column(JSON, default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    ipv6_ra_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    ipv6_address_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    network: Mapped[Network] = relationship(back_populates="subnets")
    __table_args__ = (CheckConstraint("ip_version in (4, 6)", name="ck_subnet_ip_version"),)


class Port(Stamped, Base):
    __tablename__ = "ports"
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    mac_address: Mapped[str] = mapped_column(String(32))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    device_owner: Mapped[str] = mapped_column(String(255), default="")
    host_id: Mapped[str] = mapped_column(String(255), default="")
    binding_profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    allowed_address_pairs: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    fixed_ips: Mapped[list[IPAllocation]] = relationship(
        back_populates="port", cascade="all, delete-orphan", order_by="IPAllocation.position"
    )
    __table_args__ = (UniqueConstraint("network_id", "mac_address", name="uq_port_mac"),)


class IPAllocation(Base):
    """One fixed IP. The primary key (subnet, address) is what makes an address
    impossible to hand out twice."""

    __tablename__ = "ip_allocations"
    subnet_id: Mapped[str] = mapped_column(
        ForeignKey("subnets.id", ondelete="CASCADE"), primary_key=True
    )
    ip_address: Mapped[str] = mapped_column(String(64), primary_key=True)
    port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"), index=True)
    network_id: Mapped[str] = mapped_column(ID)
    position: Mapped[int] = mapped_column(Integer, default=0)
    port: Mapped[Port] = relationship(back_populates="fixed_ips")


class Router(Stamped, Base):
    __tablename__ = "routers"
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    ha: Mapped[bool] = mapped_column(Boolean, default=False)
    distributed: Mapped[bool] = mapped_column(Boolean, default=False)
    gw_port_id: Mapped[str | None] = mapped_column(
        ForeignKey("ports.id", ondelete="SET NULL"), nullable=True
    )
    enable_snat: Mapped[bool] = mapped_column(Boolean, default=True)
    routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    availability_zone_hints: Mapped[list[str]] = mapped_column(JSON, default=list)
    # HA: the project's HA network this router's keepalived traffic uses, and its VRID there.
    ha_network_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    vrid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    __table_args__ = (
        UniqueConstraint("ha_network_id", "vrid", name="uq_router_vrid"),
        CheckConstraint("vrid is null or (vrid >= 1 and vrid <= 254)", name="ck_router_vrid"),
    )


class Agent(Base):
    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    agent_type: Mapped[str] = mapped_column(String(64))
    binary: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(64))
    availability_zone: Mapped[str | None] = mapped_column(String(255), nullable=True)
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    configurations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # When the server found the agent dead (silent for agent_down_time) and kept its HA
    # places; None while it reports (hanet.server.failover).
    dead_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    __table_args__ = (UniqueConstraint("agent_type", "host", name="uq_agent_type_host"),)


class RouterBinding(Base):
    """A router placed on an L3 agent. binding_index numbers the router's places (1..max),
    so two servers scheduling the same router at once cannot give it too many agents."""

    __tablename__ = "router_agent_bindings"
    router_id: Mapped[str] = mapped_column(
        ForeignKey("routers.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    binding_index: Mapped[int] = mapped_column(Integer)
    # When the place was made: of two places too many, the newer goes (hanet.server.failover).
    placed_at: Mapped[datetime] = mapped_column(
        DateTime, default=utcnow, server_default=func.current_timestamp()
    )
    ha_state: Mapped[str] = mapped_column(String(16), default="standby")
    ha_state_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Split brain: the server told this agent to stay backup while another is active.
    forced_standby: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Why the agent could not set the router up, as it reported (hanet.server.router_errors);
    # None when it reports none.
    error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    __table_args__ = (
        UniqueConstraint("router_id", "binding_index", name="uq_router_binding_index"),
    )


class HANetwork(Base):
    """A project's HA network (hidden from the project); VRIDs 1-254 are per network."""

    __tablename__ = "ha_networks"
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    position: Mapped[int] = mapped_column(Integer)  # 0, 1, ... : a further one when full
    __table_args__ = (UniqueConstraint("project_id", "position", name="uq_ha_network_position"),)


class RouterEvent(Base):
    """What happened to a router: fail-overs reported by agents, interventions by us."""

    __tablename__ = "router_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    router_id: Mapped[str] = mapped_column(ForeignKey("routers.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(ID, nullable=True)
    detail: Mapped[str] = mapped_column(String(1024), default="")


class Change(Base):
    """A change log for agents: each change to a router (its ports, places, addresses) or to
    a network (its subnets, ports, DHCP places) gets the next sequence number; an agent asks
    for what changed since the last number it saw."""

    __tablename__ = "changes"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16), server_default="router")  # network, port
    resource_id: Mapped[str] = mapped_column(ID, index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # An instance port's change is noted once per host it was or is bound to: each compute
    # agent reads its own host's (None for routers and networks).
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    __table_args__ = (Index("ix_changes_host_seq", "host", "seq"),)


class FloatingIP(Stamped, Base):
    """An address of an external network, owned by a port there, mapped by a router to a
    fixed address of a project's port."""

    __tablename__ = "floating_ips"
    floating_network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"))
    floating_port_id: Mapped[str] = mapped_column(
        ForeignKey("ports.id", ondelete="CASCADE"), unique=True
    )
    floating_ip_address: Mapped[str] = mapped_column(String(64))
    fixed_port_id: Mapped[str | None] = mapped_column(
        ForeignKey("ports.id", ondelete="SET NULL"), nullable=True
    )
    fixed_ip_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    router_id: Mapped[str | None] = mapped_column(
        ForeignKey("routers.id", ondelete="SET NULL"), nullable=True, index=True
    )
    __table_args__ = (
        # One floating IP per fixed address, however many requests race.
        UniqueConstraint("fixed_port_id", "fixed_ip_address", name="uq_floating_fixed"),
    )


class NetworkDhcpBinding(Base):
    """A network served by a DHCP agent; binding_index numbers its places, as for routers."""

    __tablename__ = "network_dhcp_bindings"
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), primary_key=True
    )
    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    binding_index: Mapped[int] = mapped_column(Integer)
    __table_args__ = (
        UniqueConstraint("network_id", "binding_index", name="uq_network_dhcp_index"),
    )


class NetworkSegment(Base):
    """The L2 segment a network uses (hanet.server.segments). The key is the segment, so
    no two networks share one: a VNI, a VLAN of a physical network, or a flat physical
    network (segmentation_id 0). Deleted with its network, which frees the segment."""

    __tablename__ = "network_segments"
    network_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    physical_network: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" if none
    segmentation_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), unique=True
    )
