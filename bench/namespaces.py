"""One hanet vrrpd across many router namespaces, each instance added over the control socket.

    .venv/bin/python -m bench.namespaces [--count 1000] [--clients 50] [--cpu-seconds 10]
                                         [--keepalived 10] [--out FILE]

As a Neutron network node runs it: N router namespaces, each with a veth (eth0) into one
bridge, and one vrrpd in a namespace of its own. N instances (VRRPv3 at 1 s, one VIP each)
are added over the control socket, one per namespace (the ``netns`` key). Measured: the time
to add all N with one client and with ``--clients`` concurrent ones, until every instance is
MASTER, the daemon's RSS and open files, its CPU while idle, and the time from SIGTERM until
it has exited (a graceful stop: every master sends priority 0 and removes its VIP).

The bridge's ports are isolated from each other (as routers on separate HA networks are):
a router hears no other router, so each instance is master of its own segment.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyroute2 import netns

from bench.failover import write_section
from bench.scale import namespace_usage
from hanet.lab.daemons import HanetVrrpd, Keepalived, control_request, wait_until
from hanet.lab.lab import Lab, clean_up_on_sigterm, namespaces_with_prefix
from hanet.lab.pytest_plugin import unique_prefix
from hanet.lab.topology import Host, Topology

BEGIN, END = "<!-- bench:namespaces:begin -->", "<!-- bench:namespaces:end -->"
ADVERT_INT = 1.0  # seconds: a network node's routers at Neutron's kind of interval
DAEMON = "d"  # the lab host vrrpd runs in; routers are r0 .. r{N-1}
REQUEST_TIMEOUT = 120.0  # a queued add waits for those before it: never the bench's limit


def router(i: int) -> str:
    return f"r{i}"


def subnet(i: int) -> str:
    """Router i's own /24 (its ports are isolated, so addresses never meet)."""
    return f"10.{i // 256}.{i % 256}"


def instance_entry(lab: Lab, i: int) -> dict[str, Any]:
    return {"interface": "eth0", "vrid": 1, "priority": 100, "version": 3,
            "advert_int": ADVERT_INT, "addresses": [f"{subnet(i)}.100/24"],
            "netns": lab.ns(router(i))}  # fmt: skip


class NamespaceLab(Lab):
    """A lab of N routers built with a few ``ip -batch`` runs: Lab's own builder opens a
    netlink helper per host, which at 1,000 hosts takes minutes. Same names, same clean-up
    (every namespace of the prefix, its processes killed by PID)."""

    def __init__(self, count: int, prefix: str) -> None:
        hosts = {DAEMON: Host(), **{router(i): Host() for i in range(count)}}
        super().__init__(Topology((), hosts), prefix)
        self.count = count

    def _build(self) -> None:
        names = [self.switch_ns, self.ns(DAEMON), *(self.ns(router(i)) for i in range(self.count))]
        _batch(None, [f"netns add {name}" for name in names])
        _batch(self.ns(DAEMON), ["link set lo up"])
        lines = ["link add br0 type bridge mcast_snooping 0", "link set br0 up"]
        for i in range(self.count):
            lines += [
                f"link add p{i} type veth peer name eth0 netns {self.ns(router(i))}",
                f"link set p{i} master br0",
                f"link set dev p{i} type bridge_slave isolated on",
                f"link set p{i} up",
            ]
        _batch(self.switch_ns, lines)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            done = pool.map(lambda i: _batch(self.ns(router(i)), [
                "link set lo up", f"addr add {subnet(i)}.1/24 dev eth0", "link set eth0 up",
            ]), range(self.count))  # fmt: skip
            list(done)

    def down(self) -> None:
        """As Lab.down, but with one scan of /proc for all namespaces, not one for each."""
        self.stop_processes()
        names = namespaces_with_prefix(self.prefix)
        if not names:
            return
        try:
            pids = netns.ns_pids()
        except OSError:
            pids = {}
        for name in names:
            for pid in pids.get(name, []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        _batch(None, [f"netns delete {name}" for name in names], check=False)
        for name in namespaces_with_prefix(self.prefix):  # what the batch could not remove
            with contextlib.suppress(OSError):
                netns.remove(name)


def _batch(namespace: str | None, lines: list[str], check: bool = True) -> None:
    # -force (keep going past a failed line) is for clean-up only.
    argv = ["ip", *([] if check else ["-force"]), *(["-n", namespace] if namespace else []),
            "-batch", "-"]  # fmt: skip
    result = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True,
                            check=False)  # fmt: skip
    if check and result.returncode != 0:
        raise RuntimeError(f"ip -batch in {namespace or 'the root namespace'} failed: "
                           f"{result.stderr.strip()}")  # fmt: skip


def add_all(daemon: HanetVrrpd, lab: Lab, count: int, clients: int) -> float:
    """Seconds to add every instance, with ``clients`` connections at a time."""

    def add(i: int) -> str | None:
        message = {"command": "add", "name": f"router{i}", "instance": instance_entry(lab, i)}
        answer = control_request(daemon.control, message, timeout=REQUEST_TIMEOUT)
        return None if answer.get("ok") else f"router{i}: {answer or 'no answer'}"

    start = time.monotonic()
    if clients == 1:
        errors = [e for e in map(add, range(count)) if e]
    else:
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            errors = [e for e in pool.map(add, range(count)) if e]
    elapsed = time.monotonic() - start
    if errors:
        raise RuntimeError(f"{len(errors)} adds failed, the first: {errors[0]}")
    return elapsed


def masters(daemon: HanetVrrpd) -> int:
    answer = control_request(daemon.control, {"command": "status"}, timeout=REQUEST_TIMEOUT)
    return sum(1 for i in answer.get("instances", []) if i["state"] == "MASTER")


def process_figures(pid: int) -> dict[str, float]:
    """RSS and PSS (MB) and open files of one process."""
    figures = {"fds": float(len(os.listdir(f"/proc/{pid}/fd")))}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss"):
            figures[key.lower() + "_mb"] = int(value.split()[0]) / 1024
    return figures


def cpu_seconds(pid: int) -> float:
    return sum(int((task / "schedstat").read_text().split()[0])
               for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9  # fmt: skip


def stop(daemon: HanetVrrpd) -> float:
    """Seconds from SIGTERM until the daemon has exited."""
    assert daemon.proc is not None
    start = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.proc.wait(timeout=600)
    elapsed = time.monotonic() - start
    if code != 0:
        raise RuntimeError(f"vrrpd exited with {code}:\n{daemon.log()[-2000:]}")
    return elapsed


def run_hanet(lab: Lab, count: int, clients: int, idle: float, log: Any) -> dict[str, float]:
    result: dict[str, float] = {}
    for label, concurrency in (("one", 1), ("many", clients)):
        daemon = HanetVrrpd(lab, DAEMON)
        try:
            daemon.start("")
            wait_until(lambda d=daemon: control_request(d.control, {"command": "status"}), 30,
                       "vrrpd to answer on its control socket")  # fmt: skip
            result[f"add_{label}_s"] = add_all(daemon, lab, count, concurrency)
            log(f"added {count} with {concurrency} client(s) in {result[f'add_{label}_s']:.2f} s")
            started = time.monotonic()
            wait_until(lambda d=daemon: masters(d) == count, 60 + count * 0.05,
                       f"all {count} instances to be MASTER", step=0.5)  # fmt: skip
            result[f"all_master_{label}_s"] = time.monotonic() - started
            assert daemon.proc is not None
            if label == "one":
                time.sleep(2 * ADVERT_INT)  # past the first adverts and GARPs
                result.update(process_figures(daemon.proc.pid))
                before = cpu_seconds(daemon.proc.pid)
                time.sleep(idle)
                result["cpu_idle_pct"] = (cpu_seconds(daemon.proc.pid) - before) / idle * 100
                log(f"idle: {result}")
            result[f"stop_{label}_s"] = stop(daemon)
            log(f"stopped {count} in {result[f'stop_{label}_s']:.2f} s")
        finally:
            daemon.cleanup()
    return result


def keepalived_conf(priority: int, advert_int: float, vip: str) -> str:
    """keepalived.conf of one router's instance on eth0, VRRPv3, as hanet's in the benches."""
    return (
        "global_defs {\n  vrrp_version 3\n}\nvrrp_instance VI_1 {\n  state BACKUP\n"
        f"  interface eth0\n  virtual_router_id 1\n  priority {priority}\n"
        f"  advert_int {advert_int:g}\n  virtual_ipaddress {{\n    {vip}\n  }}\n}}\n"
    )


def run_keepalived(lab: Lab, count: int) -> dict[str, float]:
    """RSS and PSS of ``count`` keepalived, one per router namespace, as Neutron runs it."""
    started = []
    try:
        for i in range(count):
            k = Keepalived(lab, router(i))
            started.append(k)
            k.start(keepalived_conf(100, ADVERT_INT, f"{subnet(i)}.100/24"))
        for i in range(count):
            address = f"{subnet(i)}.100"
            wait_until(lambda i=i, a=address: started[i].holds(a), 30,
                       f"keepalived in {router(i)} to hold {address}")  # fmt: skip
        rss = pss = 0.0
        processes = 0
        for i in range(count):
            usage_rss, _ = namespace_usage(lab, router(i))
            rss += usage_rss / 2**20
            for pid in netns.ns_pids().get(lab.ns(router(i)), []):
                with contextlib.suppress(OSError):
                    pss += process_figures(int(pid))["pss_mb"]
                    processes += 1
        return {"rss_mb": rss, "pss_mb": pss, "processes": float(processes)}
    finally:
        for k in started:
            k.cleanup()


def render(count: int, clients: int, idle: float, hanet: dict[str, float],
           keepalived: dict[str, float] | None, kept: int, command: str) -> str:  # fmt: skip
    lines = [
        BEGIN,
        "## One vrrpd across many router namespaces (issue 9)",
        "",
        f"Command: `{command}`. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
        f"{os.cpu_count()} cores. {count} router namespaces, each with a veth into one bridge "
        "(ports isolated from each other, as routers on separate HA networks), and one "
        f"`hanet vrrpd` (empty keepalived.conf) in a namespace of its own. {count} VRRPv3 "
        f"instances at {ADVERT_INT:g} s, one per namespace, are added over the control "
        "socket (the `netns` key), one request per connection. 'stop' is SIGTERM until the "
        "daemon has exited: every master sends priority 0 and removes its VIP.",
        "",
        "| figure | hanet vrrpd | target |",
        "|---|---|---|",
        f"| add {count}, one client | {hanet['add_one_s']:.2f} s | ≤ 10 s |",
        f"| add {count}, {clients} concurrent clients | {hanet['add_many_s']:.2f} s | ≤ 10 s |",
        f"| then until all {count} are MASTER | {hanet['all_master_one_s']:.2f} s | |",
        f"| stop {count} gracefully | {hanet['stop_one_s']:.2f} s "
        f"(second run {hanet['stop_many_s']:.2f} s) | ≤ 10 s |",
        f"| RSS (PSS) | {hanet['rss_mb']:.1f} MB ({hanet['pss_mb']:.1f} MB) | |",
        f"| open files | {hanet['fds']:.0f} ({hanet['fds'] / count:.2f} per namespace) | |",
        f"| CPU, idle, over {idle:g} s | {hanet['cpu_idle_pct']:.2f} % of a core | |",
    ]
    if keepalived is not None:
        per = 1 / kept
        lines += [
            "",
            f"Reference: keepalived runs one instance per process, so a node needs one "
            f"keepalived (2 processes) per router. Measured on {kept} of them, each in its "
            f"router's namespace with the same instance, scaled to {count}: RSS "
            f"{keepalived['rss_mb'] * per * count:.0f} MB, PSS "
            f"{keepalived['pss_mb'] * per * count:.0f} MB "
            f"({keepalived['rss_mb'] * per:.2f} MB and {keepalived['pss_mb'] * per:.2f} MB per "
            f"router, {keepalived['processes'] * per * count:.0f} processes). RSS counts "
            "shared pages once per process; PSS shares them out.",
        ]
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--cpu-seconds", type=float, default=10)
    parser.add_argument(
        "--keepalived",
        type=int,
        default=10,
        help="keepalived processes to measure as the reference (0: none)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.namespaces needs root (network namespaces)")
    clean_up_on_sigterm()

    def log(message: str) -> None:
        print(message, flush=True)

    lab = NamespaceLab(args.count, unique_prefix())
    try:
        started = time.monotonic()
        lab.up()
        log(f"lab of {args.count} namespaces up in {time.monotonic() - started:.1f} s")
        hanet = run_hanet(lab, args.count, args.clients, args.cpu_seconds, log)
        kept = min(args.keepalived, args.count)
        keepalived = run_keepalived(lab, kept) if kept else None
    finally:
        lab.down()
    command = (
        "make bench"
        if os.environ.get("MAKELEVEL")
        else " ".join(["python -m bench.namespaces", *sys.argv[1:]])
    )
    section = render(args.count, args.clients, args.cpu_seconds, hanet, keepalived, kept,
                     command)  # fmt: skip
    print(section)
    if args.out:
        write_section(args.out, section, BEGIN, END)


if __name__ == "__main__":
    main()
