"""``hanet agent cleanup`` on a lab node: only what the agent made, only for its host.

The node is a lab host with an underlay; its router namespaces are real /run/netns entries
named ``qrouter-<id>@<host>``, with this test's unique prefix in both the id and the host,
so the cleanup can match nothing outside this test. They are removed after the test even
when it fails, as the lab's own namespaces are.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyroute2 import netns

from hanet.agent.render import namespace_name
from hanet.lab.daemons import wait_until
from hanet.lab.lab import Lab, pids_in_netns
from hanet.lab.topology import Host, Link, Topology
from hanet.linux.l2 import ensure_vxlan_network

NET = "8f3a1c2e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
VNI = 4242


@pytest.fixture
def node(make_lab: Callable[[Topology], Lab]) -> Lab:
    underlay = Link("underlay", (ipaddress.ip_interface("192.0.2.1/24"),))
    return make_lab(Topology(("underlay",), {"n": Host({"eth0": underlay})}))


@pytest.fixture
def routers(lab_prefix: str) -> Iterator[dict[str, str]]:
    """A router namespace for host A and one for host B; A's has a process and a NAT table."""
    names = {
        "A": namespace_name(f"{lab_prefix}-ra", f"{lab_prefix}a"),
        "B": namespace_name(f"{lab_prefix}-rb", f"{lab_prefix}b"),
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for name in names.values():
            netns.create(name)
        subprocess.run(["ip", "netns", "exec", names["A"], "nft", "add", "table", "ip",
                        "hanet-router"], check=True)  # fmt: skip
        procs.append(subprocess.Popen(["ip", "netns", "exec", names["A"], "sleep", "600"]))
        wait_until(lambda: procs[0].pid in pids_in_netns(names["A"]), 10, "sleep in A's router")
        yield {**names, "pid": str(procs[0].pid), "hostA": f"{lab_prefix}a"}
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for name in names.values():
            for pid in pids_in_netns(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                netns.remove(name)


def cleanup(node: Lab, host: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hanet.cli.main", "--log-level", "info", "agent", "cleanup",
            "--host", host, "--namespace", node.ns("n"), *extra]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def links(node: Lab) -> set[str]:
    out = node.run("n", ["ip", "-o", "link", "show"]).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def namespaces() -> set[str]:
    return {p.name for p in Path("/run/netns").iterdir()}


def test_cleanup_removes_the_agents_things_for_its_host_only(node: Lab, routers: dict[str, str]):
    asyncio.run(ensure_vxlan_network(node.ns("n"), NET, VNI, 1450, "192.0.2.1", "eth0",
                                     ["192.0.2.2"]))  # fmt: skip
    # Not the agent's: a bridge, a veth pair and a VXLAN device under other names.
    node.run("n", ["ip", "link", "add", "mybr", "type", "bridge"])
    node.run("n", ["ip", "link", "add", "keep0", "type", "veth", "peer", "name", "keep1"])
    node.run("n", ["ip", "link", "add", "vx-keep", "type", "vxlan", "id", "7", "dstport", "4789",
                   "dev", "eth0"])  # fmt: skip
    before = links(node)
    assert {"brq8f3a1c2e-5b", f"vxlan-{VNI}"} <= before
    host = routers["hostA"]

    dry = cleanup(node, host, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would stop processes {routers['pid']} in namespace {routers['A']}",
        f"would delete nftables table ip hanet-router in namespace {routers['A']}",
        f"would delete namespace {routers['A']}",
        f"would remove bridge brq8f3a1c2e-5b and vxlan-{VNI} (and its taps) in {node.ns('n')}",
    ]
    assert links(node) == before
    assert {routers["A"], routers["B"]} <= namespaces()
    assert pids_in_netns(routers["A"]) == [int(routers["pid"])]

    done = cleanup(node, host)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        line.replace("would ", "done: ", 1) for line in dry.stdout.splitlines()
    ]
    assert "cleanup: delete namespace" in done.stderr  # each step is logged
    sleeper = int(routers["pid"])
    wait_until(lambda: not Path(f"/proc/{sleeper}").exists() or _zombie(sleeper), 10, "sleep gone")
    assert routers["A"] not in namespaces()
    assert routers["B"] in namespaces()
    assert links(node) == before - {"brq8f3a1c2e-5b", f"vxlan-{VNI}"}

    again = cleanup(node, host)
    assert (again.returncode, again.stdout) == (0, "nothing to clean up\n")


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"


def test_a_missing_node_namespace_is_an_error_naming_it(lab_prefix: str):
    result = cleanup_missing(f"{lab_prefix}-nowhere")
    assert result.returncode == 1
    assert f"{lab_prefix}-nowhere" in result.stderr


def cleanup_missing(ns: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "hanet.cli.main", "agent", "cleanup", "--namespace", ns,
            "--host", "nohost-x", "--dry-run"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)
