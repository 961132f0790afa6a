"""Build a Topology out of network namespaces, bridges and veth pairs, and tear it down.

Names: host H lives in namespace ``{prefix}-H``; every bridge lives in ``{prefix}-sw``. veth
pairs are created inside the switch namespace and one end is moved into the host, so nothing
is ever created in the machine's own namespace. ``down()`` removes every namespace whose name
starts with ``{prefix}-``, which also clears what a crashed earlier run left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, netns

from hanet.lab.topology import Topology
from hanet.linux.netns import inside

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
SWITCH = "sw"

# Lab hosts should behave like freshly booted machines on a quiet LAN: no IPv6 DAD delay
# (it holds link-local and VIP addresses tentative for a second or more).
HOST_SYSCTLS = {
    "net/ipv6/conf/all/accept_dad": "0",
    "net/ipv6/conf/default/accept_dad": "0",
    "net/ipv6/conf/all/dad_transmits": "0",
    "net/ipv6/conf/default/dad_transmits": "0",
    "net/ipv4/conf/all/arp_accept": "1",
    "net/ipv4/conf/default/arp_accept": "1",
}


@dataclass(frozen=True)
class Port:
    host: str
    ifname: str
    switch_ifname: str
    segment: str


def create_namespace(name: str) -> None:
    """``ip netns add``: pyroute2's netns.create forks a helper and gives up when it does not
    answer within its timeout, which a loaded machine made happen (a CI run beside a
    benchmark)."""
    result = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    if result.returncode != 0:
        raise OSError(f"ip netns add {name}: {result.stderr.strip()}")


def namespaces_with_prefix(prefix: str) -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{prefix}-"))


def pids_in_netns(name: str) -> list[int]:
    try:
        return [int(pid) for pid in netns.ns_pids().get(name, [])]
    except OSError:
        return []


class Lab:
    def __init__(self, topology: Topology, prefix: str | None = None) -> None:
        self.topology = topology
        self.prefix = prefix or topology.prefix or "hanet"
        self.ports: list[Port] = []
        for h_index, (host, spec) in enumerate(topology.hosts.items()):
            for i_index, (ifname, link) in enumerate(spec.interfaces.items()):
                self.ports.append(Port(host, ifname, f"p{h_index}i{i_index}", link.segment))
        self.processes: list[subprocess.Popen[bytes]] = []

    # Names ---------------------------------------------------------------------------------

    def ns(self, host: str) -> str:
        if host != SWITCH and host not in self.topology.hosts:
            raise KeyError(f"no host {host!r} in this lab")
        return f"{self.prefix}-{host}"

    @property
    def switch_ns(self) -> str:
        return self.ns(SWITCH)

    def port(self, host: str, ifname: str) -> Port:
        for port in self.ports:
            if port.host == host and port.ifname == ifname:
                return port
        raise KeyError(f"no interface {ifname!r} on host {host!r}")

    def address(self, host: str, ifname: str, family: int = 4) -> str:
        """The first address of that family on the interface, without its prefix length."""
        link = self.topology.hosts[host].interfaces[ifname]
        for iface in link.addresses:
            if iface.version == family:
                return str(iface.ip)
        raise KeyError(f"{host}/{ifname} has no IPv{family} address")

    # Life cycle ----------------------------------------------------------------------------

    def up(self) -> Lab:
        self.down()
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        return self

    def _build(self) -> None:
        for host in [SWITCH, *self.topology.hosts]:
            create_namespace(self.ns(host))
            with inside(self.ns(host)):
                for key, value in HOST_SYSCTLS.items():
                    Path("/proc/sys", key).write_text(value)
            with IPRoute(netns=self.ns(host)) as ipr:
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        with IPRoute(netns=self.switch_ns) as sw:
            for segment in self.topology.segments:
                sw.link("add", ifname=f"br-{segment}", kind="bridge", br_mcast_snooping=0)
                sw.link("set", index=sw.link_lookup(ifname=f"br-{segment}")[0], state="up")
            for port in self.ports:
                temp = f"t{port.switch_ifname}"
                sw.link("add", ifname=port.switch_ifname, kind="veth", peer=temp)
                bridge = sw.link_lookup(ifname=f"br-{port.segment}")[0]
                index = sw.link_lookup(ifname=port.switch_ifname)[0]
                sw.link("set", index=index, master=bridge, state="up")
                sw.link("set", index=sw.link_lookup(ifname=temp)[0], net_ns_fd=self.ns(port.host))
        for host, spec in self.topology.hosts.items():
            with IPRoute(netns=self.ns(host)) as ipr:
                for port in (p for p in self.ports if p.host == host):
                    index = ipr.link_lookup(ifname=f"t{port.switch_ifname}")[0]
                    ipr.link("set", index=index, ifname=port.ifname)
                    for iface in spec.interfaces[port.ifname].addresses:
                        ipr.addr("add", index=index, address=str(iface.ip),
                                 prefixlen=iface.network.prefixlen)  # fmt: skip
                    ipr.link("set", index=index, state="up")

    def stop_processes(self) -> None:
        """Kill what this lab started, by PID."""
        for proc in self.processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.processes.clear()

    def down(self) -> None:
        """Remove everything this prefix owns, even what a crashed run left behind."""
        self.stop_processes()
        for name in namespaces_with_prefix(self.prefix):
            for pid in pids_in_netns(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                netns.remove(name)
            except OSError as exc:
                log.warning("could not remove namespace %s: %s", name, exc)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # Processes -----------------------------------------------------------------------------

    def _argv(self, host: str, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def run(
        self, host: str, argv: Sequence[str], *, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._argv(host, argv), check=check, timeout=timeout, capture_output=True, text=True
        )

    def spawn(self, host: str, argv: Sequence[str], **popen: object) -> subprocess.Popen[bytes]:
        """Start a process in the host; down() kills it if it still runs."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(self._argv(host, argv), **popen)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc

    # Faults --------------------------------------------------------------------------------

    def _set_port(self, host: str, ifname: str | None, state: str) -> None:
        with IPRoute(netns=self.switch_ns) as sw:
            for port in self.ports:
                if port.host == host and ifname in (None, port.ifname):
                    sw.link("set", index=sw.link_lookup(ifname=port.switch_ifname)[0], state=state)

    def cut(self, host: str, ifname: str | None = None) -> None:
        """Unplug the cable: the bridge-side end goes down, so the host sees no carrier."""
        self._set_port(host, ifname, "down")

    def restore(self, host: str, ifname: str | None = None) -> None:
        self._set_port(host, ifname, "up")

    def crash(self, host: str) -> float:
        """Power loss: every link of the host is cut and every process in it is killed -9.

        Returns the wall-clock time of the cut.
        """
        with IPRoute(netns=self.switch_ns) as sw:
            indexes = [
                sw.link_lookup(ifname=p.switch_ifname)[0] for p in self.ports if p.host == host
            ]
            pids = pids_in_netns(self.ns(host))
            for index in indexes:
                sw.link("set", index=index, state="down")
            cut_at = time.time()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return cut_at


def clean_up_on_sigterm() -> None:
    """Turn SIGTERM (and SIGHUP) into SystemExit, so that ``finally`` blocks tear labs down:
    a demo or benchmark that is stopped leaves nothing behind.

    Only in this process: pyroute2 forks helpers (IPRoute(netns=...)) and stops them with
    SIGTERM. A helper that raised SystemExit would unwind the parent's copied stack and run
    its ``finally`` blocks, tearing the lab down from inside the helper.
    """
    owner = os.getpid()

    def leave(signum: int, _frame: object) -> None:
        if os.getpid() != owner:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)
    signal.signal(signal.SIGHUP, leave)
