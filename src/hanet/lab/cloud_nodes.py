"""The lab cloud's dealings with Linux: daemons started detached in node namespaces, processes
killed by PID, namespaces swept by name, VMs wired to a compute node as Nova would.

Names: everything of cloud ``P`` is a namespace ``P-*`` (nodes, the switch, VMs as
``P-vm-NAME``) or a router namespace ``qrouter-<id>@P-<node>`` that an agent made (its
``namespace_suffix``). Nothing here touches the machine's own namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute, netns

from hanet.lab.cloud_config import CloudPaths
from hanet.lab.cloud_state import (
    RUN_ROOT,
    ProcessRecord,
    StateError,
    check_prefix,
    load_state,
    start_time,
)
from hanet.lab.lab import HOST_SYSCTLS, NETNS_DIR
from hanet.lab.lab import create_namespace as add_namespace
from hanet.linux.netns import inside

log = logging.getLogger(__name__)

# Drops VRRP (IP protocol 112) crossing any bridge of a node: its routers' adverts stop
# reaching the other nodes and theirs stop arriving, while every other packet still flows.
VRRP_CUT_TABLE = "hanet_lab_vrrp_cut"
VRRP_CUT = f"""table bridge {VRRP_CUT_TABLE} {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    ip protocol 112 drop
    ip6 nexthdr 112 drop
  }}
}}
"""


# Processes ----------------------------------------------------------------------------------


@dataclass
class Started:
    record: ProcessRecord
    popen: subprocess.Popen[bytes] = field(repr=False)


def spawn(
    namespace: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    role: str,
    node: str,
    pass_fds: Sequence[int] = (),
) -> Started:
    """Start ``argv`` in ``namespace``, detached: its own session, no terminal, output to
    ``log_path``. It outlives the caller; its PID and start time identify it later.

    ``nsenter --net`` replaces itself with the command, so the PID is the daemon's. Not
    ``ip netns exec``: that also gives the command a mount namespace of its own, and a
    router namespace the agent then adds (a bind mount on /run/netns/NAME) would exist in
    the agent's mount namespace only, not in vrrpd's: nodes share the machine's mounts.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as output:
        popen = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{namespace}", "--", *argv],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
            close_fds=True,
        )
    started = start_time(popen.pid)
    if started is None:  # gone already: its log says why
        popen.wait()
        raise OSError(
            f"{argv[0]} in {namespace} exited at once ({popen.returncode}): {tail(log_path)}"
        )
    return Started(ProcessRecord(role, node, popen.pid, started, tuple(argv)), popen)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:]) or f"(empty log {path})"


def signal_record(record: ProcessRecord, signum: int) -> bool:
    """Signal the recorded process only if it is still that process; True if sent."""
    if not record.alive():
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, signum)
        return True
    return False


def wait_gone(pids: Iterable[tuple[int, int | None]], timeout: float) -> list[int]:
    """Wait until none of (pid, start time) runs any more; the PIDs still running."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        pending = [(pid, st) for pid, st in pending if _same(pid, st)]
        if not pending or time.monotonic() > deadline:
            return [pid for pid, _ in pending]
        time.sleep(0.02)


def _same(pid: int, started: int | None) -> bool:
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def stop(record: ProcessRecord, timeout: float = 10) -> None:
    """SIGTERM, as a service manager stops a daemon; SIGKILL if it lingers."""
    if signal_record(record, signal.SIGTERM) and wait_gone(
        [(record.pid, record.start_time)], timeout
    ):
        signal_record(record, signal.SIGKILL)
        wait_gone([(record.pid, record.start_time)], 5)


# Namespaces ---------------------------------------------------------------------------------


def cloud_namespaces(prefix: str) -> list[str]:
    """Every namespace of the cloud: ``P-*`` and router namespaces ``*@P-*``."""
    if not NETNS_DIR.is_dir():
        return []
    names = [p.name for p in NETNS_DIR.iterdir()]
    return sorted(n for n in names if n.startswith(f"{prefix}-") or f"@{prefix}-" in n)


def router_namespaces(prefix: str, node: str) -> list[str]:
    """The router namespaces an agent of ``node`` made (its suffix is ``P-node``)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.endswith(f"@{prefix}-{node}"))


def pids_in(namespaces: Iterable[str]) -> dict[int, str]:
    """PID -> namespace for every process in one of ``namespaces`` (pyroute2's ns_pids)."""
    wanted = set(namespaces)
    try:
        found = netns.ns_pids()
    except OSError:
        return {}
    return {int(pid): name for name, pids in found.items() if name in wanted for pid in pids}


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def kill_in(namespaces: Sequence[str], rounds: int = 5) -> dict[int, str]:
    """kill -9 every process in ``namespaces`` until none is left (a dying agent may have
    started one more); PID -> command name of those killed."""
    killed: dict[int, str] = {}
    for _ in range(rounds):
        found = {pid: start_time(pid) for pid in pids_in(namespaces)}
        found = {pid: st for pid, st in found.items() if st is not None}
        if not found:
            break
        for pid in found:
            killed.setdefault(pid, command_name(pid))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_gone(found.items(), 5)
    return killed


def remove_namespaces(names: Iterable[str]) -> list[str]:
    """Remove the namespaces; the names that could not be removed."""
    failed = []
    for name in names:
        try:
            netns.remove(name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove namespace %s: %s", name, exc)
            failed.append(name)
    return failed


def learn_no_arp_from_garps(namespace: str) -> None:
    """The kernel's ``arp_accept`` 0 in a namespace of the cloud (its switch, nodes, upstream),
    as on real machines: the lab's 1 (hanet.lab.lab.HOST_SYSCTLS, for its VRRP hosts) made
    every bridge and host learn an ARP entry from each router's GARPs. The kernel's
    neighbour table is shared by all namespaces (1,024 entries, gc_thresh3), and entries
    just learnt cannot be reclaimed: at about 250 routers a node it was full, adverts went
    unsent and the routers flapped (docs/BENCHMARKS.md, the lab cloud). A router's port has
    one MAC on every node, so upstream's entries stay right across a fail-over; GARPs still
    update existing entries and teach the bridges where the MAC now is."""
    with inside(namespace):
        for setting in Path("/proc/sys/net/ipv4/conf").glob("*/arp_accept"):
            setting.write_text("0")


def create_namespace(name: str) -> None:
    """A fresh host: lo up, the lab's sysctls (as hanet.lab.lab.Lab sets them)."""
    add_namespace(name)
    with inside(name):
        for key, value in HOST_SYSCTLS.items():
            Path("/proc/sys", key).write_text(value)
    with IPRoute(netns=name) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


# VMs ----------------------------------------------------------------------------------------


def plug_vm(
    vm_namespace: str,
    node_namespace: str,
    tap: str,
    mac: str,
    mtu: int,
    address: ipaddress.IPv4Interface,
    gateway: str | None,
) -> None:
    """Wire a VM as Nova's libvirt driver and os-vif do for the linuxbridge agent: a device
    ``tap<port>`` on the compute node, whose other end is the VM's ``eth0`` with the port's
    MAC. The agent finds the tap and puts it on the network's bridge (and sets it up)."""
    with IPRoute(netns=vm_namespace) as ipr:
        ipr.link("add", ifname="eth0", kind="veth", peer=tap)
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.link("set", index=eth0, address=mac, mtu=mtu)
        ipr.link("set", index=ipr.link_lookup(ifname=tap)[0], mtu=mtu, net_ns_fd=node_namespace)
        ipr.addr("add", index=eth0, address=str(address.ip), prefixlen=address.network.prefixlen)
        ipr.link("set", index=eth0, state="up")
        if gateway is not None:
            ipr.route("add", dst="0.0.0.0/0", gateway=gateway)


def tap_master(node_namespace: str, tap: str) -> str | None:
    """The bridge the tap is on in the node's namespace, or None (not there, or on none)."""
    with IPRoute(netns=node_namespace) as ipr:
        found = ipr.link_lookup(ifname=tap)
        if not found:
            return None
        master = ipr.get_links(found[0])[0].get_attr("IFLA_MASTER")
        if not master:
            return None
        bridge = ipr.get_links(master)[0].get_attr("IFLA_IFNAME")
        return str(bridge) if bridge else None


# Faults -------------------------------------------------------------------------------------


def nft(namespace: str, script: str) -> None:
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        raise OSError(f"nft in {namespace}: {result.stderr.strip()}")


def cut_vrrp(namespace: str) -> None:
    # Replaced whole, so that cutting twice is the same as once.
    nft(
        namespace,
        f"table bridge {VRRP_CUT_TABLE}\ndelete table bridge {VRRP_CUT_TABLE}\n" + VRRP_CUT,
    )


def restore_vrrp(namespace: str) -> None:
    nft(namespace, f"table bridge {VRRP_CUT_TABLE}\ndelete table bridge {VRRP_CUT_TABLE}\n")


# The whole cloud ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DownReport:
    killed: dict[int, str]
    namespaces: tuple[str, ...]
    run_dir_removed: bool
    warnings: tuple[str, ...] = ()


def destroy(prefix: str, run_root: Path = RUN_ROOT) -> DownReport:
    """Remove everything of cloud ``prefix``: its recorded processes (only those still the
    very processes started), every process in its namespaces, the namespaces, the run
    directory. Works without cloud.json, after a crash, and a second time (finds nothing)."""
    check_prefix(prefix)
    paths = CloudPaths.of(prefix, run_root)
    warnings, killed = [], {}
    records: list[ProcessRecord] = []
    if paths.state.exists():
        try:
            records = load_state(paths.state).processes
        except StateError as exc:
            warnings.append(f"{exc}; removing by namespace only")
    for record in records:
        name = command_name(record.pid)
        if signal_record(record, signal.SIGKILL):
            killed[record.pid] = name
    wait_gone([(r.pid, r.start_time) for r in records], 5)
    namespaces = cloud_namespaces(prefix)
    killed.update(kill_in(namespaces))
    failed = remove_namespaces(namespaces)
    warnings += [f"namespace {name} could not be removed" for name in failed]
    existed = paths.root.exists()
    shutil.rmtree(paths.root, ignore_errors=True)
    return DownReport(
        killed, tuple(namespaces), existed and not paths.root.exists(), tuple(warnings)
    )
