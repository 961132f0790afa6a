"""Faults of whole nodes in the lab cloud: a crash is a power loss, links and processes at once."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hanet.lab import cloud_nodes as nodes

if TYPE_CHECKING:
    from hanet.lab.cloud import Cloud


@dataclass(frozen=True)
class CrashReport:
    node: str
    at: float  # wall-clock time of the cut
    links: tuple[str, ...]  # the node's interfaces whose switch side went down
    killed: dict[int, str]  # PID -> command name
    router_namespaces: tuple[str, ...]

    def lines(self) -> list[str]:
        killed = ", ".join(f"{pid} {name}" for pid, name in sorted(self.killed.items()))
        return [
            f"cut {self.node}'s links: {', '.join(self.links)} (switch side down)",
            f"killed -9 {len(self.killed)} processes: {killed or 'none'}",
            f"router namespaces: {', '.join(self.router_namespaces) or 'none'}",
        ]


def crash(cloud: Cloud, node: str) -> CrashReport:
    """Power loss of a node: its links are cut (switch side down) and every process in its
    namespace and its router namespaces is killed -9 at once."""
    with cloud._locked():
        cloud._reload()
        namespaces = [cloud.lab.ns(node), *nodes.router_namespaces(cloud.prefix, node)]
        first = nodes.pids_in(namespaces)  # before the cut, to kill them right after it
        names = {pid: nodes.command_name(pid) for pid in first}
        cloud.lab.cut(node)
        at = time.time()
        for pid in first:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed = {pid: names[pid] for pid in first}
        killed.update(nodes.kill_in(namespaces))
        cloud.state.forget_processes(node)
        if node not in cloud.state.crashed:
            cloud.state.crashed.append(node)
        cloud._save()
    links = tuple(cloud.topology.hosts[node].interfaces)
    return CrashReport(node, at, links, killed, tuple(namespaces[1:]))
