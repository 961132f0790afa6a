"""The lab cloud's network nodes as a machine's operator measures them: the resident memory
(/proc/PID/status VmRSS) and CPU time (/proc/PID/stat utime + stime) of each node's
hanet-agent and vrrpd, and of the haproxy metadata proxies the agent starts in its router
namespaces, counted apart."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from hanet.lab import cloud_nodes
from hanet.lab.cloud import Cloud

TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"/proc/{pid}/status has no VmRSS")


def cpu_ticks(pid: int) -> int:
    """utime + stime of the process (fields 14 and 15 of /proc/PID/stat)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    rest = text[text.rfind(")") + 2 :].split()
    return int(rest[11]) + int(rest[12])


@dataclass
class NodeUsage:
    node: str
    agent_mb: float
    vrrpd_mb: float
    agent_cpu: float = 0.0  # % of one core over the window
    vrrpd_cpu: float = 0.0
    proxies: int = 0  # haproxy metadata proxies in the node's router namespaces
    proxies_mb: float = 0.0

    @property
    def rss_mb(self) -> float:
        return self.agent_mb + self.vrrpd_mb

    @property
    def cpu(self) -> float:
        return self.agent_cpu + self.vrrpd_cpu


def daemon_pids(cloud: Cloud, node: str) -> tuple[int, int]:
    agent = cloud.state.processes_of(node, "agent")[-1].pid
    vrrpd = cloud.state.processes_of(node, "vrrpd")[-1].pid
    return agent, vrrpd


def proxies(cloud: Cloud, node: str) -> tuple[int, float]:
    pids = [
        pid
        for pid in cloud_nodes.pids_in(cloud_nodes.router_namespaces(cloud.prefix, node))
        if cloud_nodes.command_name(pid) == "haproxy"
    ]
    total = 0.0
    for pid in pids:
        try:
            total += rss_mb(pid)
        except OSError:
            continue
    return len(pids), total


def usage(cloud: Cloud, nodes: list[str], seconds: float) -> list[NodeUsage]:
    """RSS now, and CPU over ``seconds`` of the same window for every node."""
    pids = {node: daemon_pids(cloud, node) for node in nodes}
    before = {node: (cpu_ticks(a), cpu_ticks(v)) for node, (a, v) in pids.items()}
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    found = []
    for node, (agent, vrrpd) in pids.items():
        item = NodeUsage(node, rss_mb(agent), rss_mb(vrrpd))
        item.agent_cpu = (cpu_ticks(agent) - before[node][0]) / TICKS / elapsed * 100
        item.vrrpd_cpu = (cpu_ticks(vrrpd) - before[node][1]) / TICKS / elapsed * 100
        item.proxies, item.proxies_mb = proxies(cloud, node)
        found.append(item)
    return found
