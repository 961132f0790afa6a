"""Building one router on this node from its layout (hanet.agent.layout), and removing it:
its namespace, the networks its ports are on, the ports, the addresses and routes the agent
owns, its NAT table and its metadata proxy. Every step converges, so building a router
that is already built changes nothing, and an agent that restarts adopts what it finds.

Any failure is a ``BuildError`` for that router only; the caller reports it (status ERROR)
and goes on with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hanet.agent import nat
from hanet.agent.errors import RouterError
from hanet.agent.layout import PortWiring, RouterLayout, floating_addresses
from hanet.agent.metadata import MetadataProxy, config
from hanet.agent.settings import AgentSettings
from hanet.linux import haproxy, l2, router_nat, router_ns

log = logging.getLogger(__name__)


class BuildError(RouterError):
    """The node could not be made as the router's layout says."""


def _vrrpd_owns(address: str) -> bool:
    return True


def _primary_vip(address: str) -> bool:
    return address.startswith("169.254.0.")  # render.primary_vip: vrrpd's, on the ha- port


@dataclass
class Networks:
    """The node's networks, each ensured once per wiring (not once per router port), and
    the ports that use each, so a network whose last port went away is removed."""

    ensured: dict[str, tuple[object, ...]] = field(default_factory=dict)


class RouterBuilder:
    def __init__(self, settings: AgentSettings, node_namespace: str | None = None) -> None:
        self.settings = settings
        self.node_namespace = node_namespace  # None: the agent runs in the node's namespace
        self.networks = Networks()
        self.metadata_dir = settings.run_dir / "metadata"

    # Networks ----------------------------------------------------------------------------

    async def ensure_network(self, port: PortWiring) -> list[str]:
        spec = (port.network_type, port.segmentation_id, port.physical_network, port.mtu)
        if self.networks.ensured.get(port.network_id) == spec:
            return []
        s = self.settings
        if port.network_type == "vxlan":
            assert s.tunnel_address is not None and s.tunnel_interface is not None
            assert port.segmentation_id is not None
            changes = await l2.ensure_vxlan_network(
                self.node_namespace,
                port.network_id,
                port.segmentation_id,
                port.mtu,
                s.tunnel_address,
                s.tunnel_interface,
                s.vxlan_peers,
                s.vxlan_group,
            )
        elif port.network_type == "flat":
            interface = s.physical_interfaces.get(port.physical_network or "")
            if interface is None:
                raise l2.L2Error(
                    f"network {port.network_id}: physical network "
                    f"{port.physical_network!r} has no interface on this node"
                )
            changes = await l2.ensure_flat_network(
                self.node_namespace, port.network_id, port.mtu, interface
            )
        else:
            raise l2.L2Error(f"network {port.network_id}: {port.network_type} is not wired yet")
        self.networks.ensured[port.network_id] = spec
        return changes

    async def remove_unused_networks(self, used: Iterable[str]) -> list[str]:
        """Bridges with no port left and no network of a router here: removed, with their
        VXLAN device (a flat network's interface is only released)."""
        used = set(used)
        inventory = await l2.inventory(self.node_namespace)
        removed = []
        for bridge in inventory.bridges.values():
            if bridge.taps or any(bridge.name == l2.bridge_name(n) for n in used):
                continue
            network = next(
                (n for n in self.networks.ensured if l2.bridge_name(n) == bridge.name), None
            )
            if network is None:
                continue  # not one this agent made in its life: left for cleanup
            vni = self.networks.ensured[network][1]
            removed += await l2.remove_network(
                self.node_namespace, network, vni if isinstance(vni, int) else None
            )
            del self.networks.ensured[network]
        return removed

    # Routers -----------------------------------------------------------------------------

    async def build(self, layout: RouterLayout) -> list[str]:
        router, namespace = layout.router_id, layout.namespace
        try:
            changes = []
            if await router_ns.ensure_namespace(namespace):
                changes.append(f"created namespace {namespace}")
            floating = floating_addresses(layout.nat)
            for port in layout.ports:
                changes += await self.ensure_network(port)
                addresses: tuple[str, ...] = port.addresses
                keep = _vrrpd_owns if layout.ha else (lambda a: False)
                if port.device.startswith("ha-"):
                    keep = _primary_vip
                elif port.device.startswith("qg-") and not layout.ha:
                    addresses += floating
                changes += await router_ns.wire_port(
                    self.node_namespace,
                    namespace,
                    port_id=port.port_id,
                    network_id=port.network_id,
                    device=port.device,
                    mac=port.mac,
                    mtu=port.mtu,
                    addresses=addresses,
                    keep=keep,
                    ipv6=port.ipv6,
                )
            devices = [p.device for p in layout.ports]
            removed = await router_ns.remove_other_devices(namespace, devices)
            changes += [f"removed {name}" for name in removed]
            if not layout.ha:
                changes += await router_ns.set_routes(namespace, layout.routes)
            await router_nat.apply(namespace, nat.ruleset(layout.nat))
            if not layout.ha:
                await self.start_metadata(router, namespace)
        except RouterError:
            raise
        except (
            l2.L2Error,
            router_ns.RouterNamespaceError,
            router_nat.NatApplyError,
            haproxy.HaproxyError,
            OSError,
        ) as exc:
            raise BuildError(router, "build", str(exc)) from None
        return changes

    async def remove(self, router_id: str, namespace: str) -> bool:
        """Stop its proxy and remove its namespace (and with it its ports and NAT table)."""
        await self.stop_metadata(router_id)
        try:
            return await router_ns.remove_namespace(namespace)
        except router_ns.RouterNamespaceError as exc:
            raise BuildError(router_id, "remove", str(exc)) from None

    # Metadata proxy ----------------------------------------------------------------------

    def _proxy_files(self, router_id: str) -> tuple[Path, Path]:
        return (self.metadata_dir / f"{router_id}.cfg", self.metadata_dir / f"{router_id}.pid")

    async def start_metadata(self, router_id: str, namespace: str) -> int | None:
        """The router's metadata proxy, if the node has a metadata service; adopts a
        running one."""
        if self.settings.metadata_socket is None:
            return None
        cfg, pid = self._proxy_files(router_id)
        text = config(MetadataProxy(router_id, str(self.settings.metadata_socket), str(pid)))
        if not cfg.exists() or cfg.read_text() != text:
            haproxy.write_config(cfg, text)
        return await haproxy.start(namespace, cfg, pid)

    async def stop_metadata(self, router_id: str) -> bool:
        cfg, pid = self._proxy_files(router_id)
        if not cfg.exists():
            return False
        try:
            return await haproxy.stop(pid, cfg)
        except haproxy.HaproxyError as exc:
            raise BuildError(router_id, "metadata", str(exc)) from None

    def metadata_running(self, router_id: str) -> bool:
        cfg, pid = self._proxy_files(router_id)
        return haproxy.running(pid, cfg) is not None
