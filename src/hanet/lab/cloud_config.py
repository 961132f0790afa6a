"""The lab cloud's layout and every file it writes, rendered without touching anything.

Hosts (one network namespace each, ``{prefix}-{host}``) and the segments they are on:

============  ==============  =====================  ====================================
host          mgmt            tun (VXLAN underlay)   ext (physical network ``public``)
============  ==============  =====================  ====================================
ctl           10.0.0.10/24    -                      -
netK          10.0.0.1K/24    172.16.0.1K/24         ``ext``, no address
cmpK          10.0.0.(20+K)   172.16.0.(20+K)        -
upstream      -               -                      ``eth0`` 203.0.113.1/24
============  ==============  =====================  ====================================

Every daemon's config, pid file, socket, database and log lives under the run directory
``/run/hanet-lab/{prefix}/`` (see CloudPaths); nothing under /etc, /var/lib or the daemons'
default /run paths.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hanet.lab.topology import Host, Link, Topology

MGMT = ipaddress.IPv4Network("10.0.0.0/24")
TUN = ipaddress.IPv4Network("172.16.0.0/24")
EXT = ipaddress.IPv4Network("203.0.113.0/24")
UPSTREAM_ADDRESS = "203.0.113.1"
SERVER_ADDRESS = "10.0.0.10"
SERVER_PORT = 9696
SERVER_URL = f"http://{SERVER_ADDRESS}:{SERVER_PORT}"
PHYSNET = "public"
VXLAN_GROUP = "239.1.1.1"
# The nodes share the machine's cores with their agents and the server: vrrpd goes first, so
# that routers being built elsewhere do not delay adverts into take-overs (docs/vrrpd.md).
VRRPD_CONF = "global_defs {\n  vrrp_priority -10\n}\n"

# The lab's server: HA routers on three agents, and agents found dead within seconds so
# that failover tests take seconds, not minutes.
SERVER_SETTINGS: dict[str, Any] = {
    "auth": "noauth",
    "l3_ha": True,
    "max_l3_agents_per_router": 3,
    "report_interval": 1,
    "agent_down_time": 5,
}
AGENT_GONE_TIME = 60  # only where the server knows the setting

PUBLIC_NETWORK: dict[str, Any] = {
    "name": "public",
    "router:external": True,
    "provider:network_type": "flat",
    "provider:physical_network": PHYSNET,
}


def public_subnet(network_id: str) -> dict[str, Any]:
    return {
        "name": "public-v4",
        "network_id": network_id,
        "ip_version": 4,
        "cidr": str(EXT),
        "gateway_ip": UPSTREAM_ADDRESS,
        "allocation_pools": [{"start": "203.0.113.10", "end": "203.0.113.250"}],
        "enable_dhcp": False,
    }


# Hosts --------------------------------------------------------------------------------------


def network_node_names(count: int) -> list[str]:
    return [f"net{k}" for k in range(1, count + 1)]


def compute_node_names(count: int) -> list[str]:
    return [f"cmp{k}" for k in range(1, count + 1)]


def host_octet(name: str) -> int:
    """The last octet of a host's mgmt and tun addresses."""
    if name == "ctl":
        return 10
    if name.startswith("net"):
        return 10 + int(name[3:])
    if name.startswith("cmp"):
        return 20 + int(name[3:])
    raise ValueError(f"{name!r} has no mgmt address")


def _address(network: ipaddress.IPv4Network, octet: int) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{network.network_address + octet}/{network.prefixlen}")


def cloud_topology(prefix: str, network_nodes: int, compute_nodes: int) -> Topology:
    hosts: dict[str, Host] = {"ctl": Host({"mgmt": Link("mgmt", (_address(MGMT, 10),))})}
    for name in network_node_names(network_nodes) + compute_node_names(compute_nodes):
        octet = host_octet(name)
        links = {
            "mgmt": Link("mgmt", (_address(MGMT, octet),)),
            "tun": Link("tun", (_address(TUN, octet),)),
        }
        if name.startswith("net"):
            links["ext"] = Link("ext")
        hosts[name] = Host(links)
    hosts["upstream"] = Host({"eth0": Link("ext", (_address(EXT, 1),))})
    return Topology(("mgmt", "tun", "ext"), hosts, prefix)


def node_role(name: str) -> str:
    if name == "ctl":
        return "controller"
    if name == "upstream":
        return "upstream"
    return "network" if name.startswith("net") else "compute"


# Files --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CloudPaths:
    """Where everything of cloud ``prefix`` lives."""

    root: Path

    @classmethod
    def of(cls, prefix: str, run_root: Path) -> CloudPaths:
        return cls(run_root / prefix)

    @property
    def state(self) -> Path:
        return self.root / "cloud.json"

    @property
    def lock(self) -> Path:
        return self.root / "cloud.lock"

    @property
    def server(self) -> Path:
        return self.root / "server"

    @property
    def server_db(self) -> Path:
        return self.server / "hanet.db"

    @property
    def server_config(self) -> Path:
        return self.server / "server.yaml"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"

    @property
    def metadata_socket(self) -> Path:
        return self.metadata / "metadata.sock"

    def node(self, name: str) -> Path:
        return self.root / name

    def log(self, node: str, role: str) -> Path:
        directory = {"server": self.server, "metadata": self.metadata}.get(role)
        return (directory or self.node(node)) / f"{role}.log"

    def vrrpd_config(self, node: str) -> Path:
        return self.node(node) / "vrrpd.conf"

    def vrrpd_pid(self, node: str) -> Path:
        return self.node(node) / "vrrpd.pid"

    def vrrpd_socket(self, node: str) -> Path:
        return self.node(node) / "vrrpd.sock"

    def agent_config(self, node: str) -> Path:
        return self.node(node) / "agent.yaml"

    def agent_run(self, node: str) -> Path:
        return self.node(node) / "agent"

    def agent_status(self, node: str) -> Path:
        return self.agent_run(node) / "status.json"


def server_settings(paths: CloudPaths, with_gone_time: bool) -> dict[str, Any]:
    """server.yaml; where it listens is on the command line (server_arguments)."""
    settings = dict(SERVER_SETTINGS)
    settings["db"] = f"sqlite:///{paths.server_db}"
    if with_gone_time:
        settings["agent_gone_time"] = AGENT_GONE_TIME
    return settings


def server_arguments(paths: CloudPaths, listen_fd: int) -> list[str]:
    """hanet-server's options: the inherited socket (127.0.0.1:PORT of the machine's own
    namespace) and the controller's address for the nodes."""
    return ["--listen-fd", str(listen_fd), "--bind", f"{SERVER_ADDRESS}:{SERVER_PORT}",
            "--config", str(paths.server_config), "--log-level", "info"]  # fmt: skip


AGENT_METRICS_PORT = 9110


def agent_settings(paths: CloudPaths, prefix: str, node: str) -> dict[str, Any]:
    """hanet-agent's YAML for a network node (mode l3) or a compute node (mode compute)."""
    network = node.startswith("net")
    settings: dict[str, Any] = {
        "host": node,
        "mode": "l3" if network else "compute",
        "server_url": SERVER_URL,
        "token": None,
        "run_dir": str(paths.agent_run(node)),
        "namespace_suffix": f"{prefix}-{node}",
        "tunnel_address": str(_address(TUN, host_octet(node)).ip),
        "tunnel_interface": "tun",
        "vxlan_group": VXLAN_GROUP,
        "advert_int": 0.1,
        "vrrp_version": 3,
        "agent_down_time": SERVER_SETTINGS["agent_down_time"],
        # Prometheus on the node's management address, as an operator would scrape it.
        "metrics": f"{_address(MGMT, host_octet(node)).ip}:{AGENT_METRICS_PORT}",
    }
    if network:
        settings["physical_interfaces"] = {PHYSNET: "ext"}
        settings["vrrpd_socket"] = str(paths.vrrpd_socket(node))
        settings["metadata_socket"] = str(paths.metadata_socket)
    return settings


def dump_yaml(settings: dict[str, Any]) -> str:
    return yaml.safe_dump(settings, sort_keys=False, default_flow_style=False)
