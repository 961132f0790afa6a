"""One hanet vrrpd serving routers in many namespaces, as on a Neutron network node."""

from __future__ import annotations

import ipaddress
import json
import resource
from pathlib import Path
from typing import Any

from hanet.lab.daemons import HanetVrrpd, hanet_command, holds_address, wait_until
from hanet.lab.lab import Lab
from hanet.lab.topology import Host, Link, Topology

ROUTERS = 12
FILE_LIMIT = 32  # what the daemon starts with: 12 routers need more (systemd's 1,024 did)


def vip(i: int) -> str:
    return f"10.{i}.0.100"


def routers_topology() -> Topology:
    """The daemon in host d, routers r0..r11 each on a segment of its own, a client on r0's."""
    hosts = {"d": Host(), "c": Host({"eth0": Link("s0", (ipaddress.ip_interface("10.0.0.9/24"),))})}
    for i in range(ROUTERS):
        hosts[f"r{i}"] = Host({"eth0": Link(f"s{i}", (ipaddress.ip_interface(f"10.{i}.0.1/24"),))})
    return Topology(tuple(f"s{i}" for i in range(ROUTERS)), hosts)


class LimitedVrrpd(HanetVrrpd):
    """Started with a small soft limit of open files, as systemd starts services."""

    def _spawn(self, argv: Any) -> None:
        def limit() -> None:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, hard))

        self.stdout = open(self.workdir / "stdout", "wb")  # noqa: SIM115
        self.stderr = open(self.workdir / "stderr", "wb")  # noqa: SIM115
        self.proc = self.lab.spawn(self.host, argv, stdout=self.stdout, stderr=self.stderr,
                                   preexec_fn=limit)  # fmt: skip


def packet_sockets(lab: Lab, host: str) -> list[dict[str, str]]:
    """/proc/net/packet of the host's namespace: every packet socket in it."""
    lines = lab.run(host, ["cat", "/proc/net/packet"]).stdout.splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split(), strict=False)) for line in lines[1:]]


def icmp6_raw_sockets(lab: Lab, host: str) -> list[str]:
    lines = lab.run(host, ["cat", "/proc/net/raw6"]).stdout.splitlines()[1:]
    return [line for line in lines if line.split()[1].endswith(":003A")]  # protocol 58


def test_one_daemon_runs_routers_in_many_namespaces_and_stops_them(make_lab) -> None:
    lab = make_lab(routers_topology())
    daemon = LimitedVrrpd(lab, "d")
    try:
        daemon.start("")
        wait_until(lambda: daemon.request({"command": "status"}), 15, "the control socket")
        for i in range(ROUTERS):
            entry = {"interface": "eth0", "vrid": 1, "priority": 100, "version": 3,
                     "advert_int": 1, "addresses": [f"{vip(i)}/24"],
                     "netns": lab.ns(f"r{i}")}  # fmt: skip
            answer = daemon.request({"command": "add", "name": f"router{i}", "instance": entry})
            assert answer == {"ok": True}, answer
        for i in range(ROUTERS):
            wait_until(lambda i=i: holds_address(lab, f"r{i}", vip(i)), 20, f"r{i} to hold its VIP")
        states = {i["name"]: i["state"] for i in daemon.request({"command": "status"})["instances"]}
        assert states == {f"router{i}": "MASTER" for i in range(ROUTERS)}

        # ARP to r0 from its client: frames a packet socket of the daemon would queue unread.
        lab.run("c", ["ping", "-c", "3", "-i", "0.2", "10.0.0.1"])
        lab.run("r0", ["ip", "neigh", "flush", "dev", "eth0"])
        lab.run("c", ["ip", "neigh", "flush", "dev", "eth0"])
        lab.run("c", ["ping", "-c", "1", vip(0)])
        sockets = packet_sockets(lab, "r0")
        assert sockets, "the master's gratuitous ARPs went out on a packet socket"
        assert all(s["Rmem"] == "0" for s in sockets), sockets
        assert icmp6_raw_sockets(lab, "r0") == []  # an IPv4 router needs no ICMPv6 socket

        daemon.stop(timeout=30)
        assert daemon.proc is not None and daemon.proc.returncode == 0
        assert not any(holds_address(lab, f"r{i}", vip(i)) for i in range(ROUTERS))
        log = daemon.log()
        assert "Too many open files" not in log and "Traceback" not in log
    finally:
        daemon.cleanup()


def many_instances_conf(count: int) -> str:
    """``count`` VRRPv3 instances on eth0: half IPv4, half IPv6 (VRIDs are 8 bits)."""
    parts = ["global_defs {\n  vrrp_version 3\n}\n"]
    for n in range(count):
        family, vrid = divmod(n, count // 2)
        address = f"10.0.1.{vrid + 1}/24" if family == 0 else f"fd00::1:{vrid + 1:x}/64"
        parts.append(f"vrrp_instance VI_{n} {{\n  state BACKUP\n  interface eth0\n"
                     f"  virtual_router_id {vrid + 1}\n  priority 100\n  advert_int 1\n"
                     f"  virtual_ipaddress {{\n    {address}\n  }}\n}}\n")  # fmt: skip
    return "".join(parts)


def test_status_shows_hundreds_of_instances(lan, daemons) -> None:
    count = 300
    r1 = daemons("vrrpd", lan, "r1", many_instances_conf(count))
    wait_until(lambda: len(r1.status()) == count, 30, f"{count} instances running")
    control = str(Path(r1.workdir) / "control.sock")
    status = [*hanet_command(), "vrrp", "status", "--control-socket", control]
    table = lan.run("r1", status, check=False)
    assert table.returncode == 0, table.stderr
    assert "VI_0 " in table.stdout and f"VI_{count - 1} " in table.stdout
    answer = lan.run("r1", [*status, "--json"], check=False)
    assert answer.returncode == 0, answer.stderr
    assert len(json.loads(answer.stdout)["instances"]) == count
