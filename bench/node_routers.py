"""Thousands of HA routers on one node, held for minutes: spurious transitions, CPU, RSS.

    .venv/bin/python -m bench.node_routers [--routers 2000] [--minutes 5]
                                           [--intervals 1,0.1] [--keepalived 10]
                                           [--out FILE]

Two "nodes", each one `hanet vrrpd` in a namespace of its own: node A, the one measured,
and node B, its peer. Router i is a namespace on each node (a<i> and b<i>) joined by a veth
pair, one VRRP segment to a router as in a lab cloud where every router has an HA network
of its own. Each vrrpd gets one VRRPv3 instance per router over its control socket (the
`netns` key); A is master of the even routers (priority 150 against 100) and B of the odd
ones, so each daemon sends half the adverts and hears the other half. Once every instance
is master or backup, both are watched for ``--minutes``: a transition of any instance in
that window is spurious (nothing was changed). Measured for each advert interval: the
transitions on A and B, A's CPU (share of one core) and RSS, and the time to add the
routers. Namespaces have IPv6 off, as the agent's L2-only devices do.

Reference: keepalived runs one router per process (two processes), so ``--keepalived K``
routers get a keepalived pair each, in the same namespaces after hanet's runs; node A's
processes are measured over a minute and scaled to the routers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.failover import write_section
from bench.namespaces import (
    NamespaceLab,
    _batch,
    cpu_seconds,
    keepalived_conf,
    process_figures,
    stop,
)
from bench.scale import namespace_usage
from hanet.lab.daemons import HanetVrrpd, Keepalived, control_request, wait_until
from hanet.lab.lab import Lab, clean_up_on_sigterm
from hanet.lab.pytest_plugin import unique_prefix
from hanet.lab.topology import Host, Topology
from hanet.linux.sysctl import set_sysctls

BEGIN, END = "<!-- bench:node-routers:begin -->", "<!-- bench:node-routers:end -->"
NODES = ("a", "b")
REQUEST_TIMEOUT = 120.0
CLIENTS = 20


def subnet(i: int) -> str:
    return f"10.{i // 256}.{i % 256}"


class PairLab(NamespaceLab):
    """Namespaces d<node> for the daemons and a<i>, b<i> for the routers, built with
    ``ip -batch`` (NamespaceLab's clean-up); router i's two namespaces share a veth pair."""

    def __init__(self, routers: int, prefix: str) -> None:
        hosts = {f"d{node}": Host() for node in NODES}
        hosts |= {f"{node}{i}": Host() for node in NODES for i in range(routers)}
        Lab.__init__(self, Topology((), hosts), prefix)
        self.count = routers

    def _build(self) -> None:
        names = [self.switch_ns, *(self.ns(host) for host in self.topology.hosts)]
        _batch(None, [f"netns add {name}" for name in names])
        no_ipv6 = {"net/ipv6/conf/all/disable_ipv6": "1", "net/ipv6/conf/default/disable_ipv6": "1"}
        if not Path("/proc/sys/net/ipv6").exists():
            no_ipv6 = {}
        for name in names:
            set_sysctls(name, no_ipv6)
        # Made from the switch namespace, both ends straight into the routers' namespaces.
        _batch(self.switch_ns, [
            f"link add eth0 netns {self.ns(f'a{i}')} type veth peer name eth0 "
            f"netns {self.ns(f'b{i}')}" for i in range(self.count)
        ])  # fmt: skip
        for node in NODES:
            _batch(self.ns(f"d{node}"), ["link set lo up"])

        def wire(host: str, octet: int, i: int) -> None:
            _batch(self.ns(host), ["link set lo up", f"addr add {subnet(i)}.{octet}/24 dev eth0",
                                   "link set eth0 up"])  # fmt: skip

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            jobs = [(f"{node}{i}", octet, i) for i in range(self.count)
                    for node, octet in (("a", 1), ("b", 2))]  # fmt: skip
            list(pool.map(lambda job: wire(*job), jobs))


def entry(lab: Lab, node: str, i: int, interval: float) -> dict[str, Any]:
    mine = (i % 2 == 0) == (node == "a")
    return {"interface": "eth0", "vrid": 1, "priority": 150 if mine else 100, "version": 3,
            "advert_int": interval, "addresses": [f"{subnet(i)}.100/24"],
            "netns": lab.ns(f"{node}{i}")}  # fmt: skip


def add_all(daemon: HanetVrrpd, lab: Lab, node: str, count: int, interval: float) -> float:
    def add(i: int) -> str | None:
        message = {"command": "add", "name": f"router{i}",
                   "instance": entry(lab, node, i, interval)}  # fmt: skip
        answer = control_request(daemon.control, message, timeout=REQUEST_TIMEOUT)
        return None if answer.get("ok") else f"router{i}: {answer or 'no answer'}"

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        errors = [e for e in pool.map(add, range(count)) if e]
    if errors:
        raise RuntimeError(f"node {node}: {len(errors)} adds failed, the first: {errors[0]}")
    return time.monotonic() - start


def states(daemon: HanetVrrpd) -> list[dict[str, Any]]:
    answer = control_request(daemon.control, {"command": "status"}, timeout=REQUEST_TIMEOUT)
    return list(answer.get("instances", []))


def settled(daemon: HanetVrrpd, node: str, count: int) -> bool:
    """Every instance in the state its priority gives it."""
    found = states(daemon)
    if len(found) != count:
        return False
    for item in found:
        i = int(item["name"].removeprefix("router"))
        wanted = "MASTER" if (i % 2 == 0) == (node == "a") else "BACKUP"
        if item["state"] != wanted:
            return False
    return True


def transitions(daemon: HanetVrrpd) -> int:
    return sum(int(item.get("transitions", 0)) for item in states(daemon))


def run_interval(lab: PairLab, interval: float, minutes: float, log: Any) -> dict[str, float]:
    daemons = {node: HanetVrrpd(lab, f"d{node}") for node in NODES}
    result: dict[str, float] = {}
    try:
        for daemon in daemons.values():
            daemon.start("global_defs {\n  vrrp_priority -10\n}\n")
            wait_until(lambda d=daemon: control_request(d.control, {"command": "status"}), 30,
                       "vrrpd to answer on its control socket")  # fmt: skip
        for node, daemon in daemons.items():
            result[f"add_{node}_s"] = add_all(daemon, lab, node, lab.count, interval)
            log(f"{interval:g} s: node {node} added {lab.count} in {result[f'add_{node}_s']:.1f} s")
        started = time.monotonic()
        for node, daemon in daemons.items():
            wait_until(lambda d=daemon, n=node: settled(d, n, lab.count), 120 + lab.count * 0.05,
                       f"node {node}'s instances to settle", step=1.0)  # fmt: skip
        result["settle_s"] = time.monotonic() - started
        log(f"{interval:g} s: settled after {result['settle_s']:.1f} s")
        time.sleep(5 * interval + 1)  # past the first adverts and GARPs
        pid = daemons["a"].proc.pid  # type: ignore[union-attr]
        before = {node: transitions(d) for node, d in daemons.items()}
        cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
        time.sleep(minutes * 60)
        wall = time.monotonic() - wall_before
        result["cpu_pct"] = (cpu_seconds(pid) - cpu_before) / wall * 100
        for node, daemon in daemons.items():
            result[f"spurious_{node}"] = transitions(daemon) - before[node]
        result.update(process_figures(pid))
        log(f"{interval:g} s: {result}")
        result["stop_a_s"] = stop(daemons["a"])
    finally:
        for daemon in daemons.values():
            daemon.cleanup()
    return result


def run_keepalived(lab: PairLab, count: int, interval: float, log: Any) -> dict[str, float]:
    """RSS and CPU of node A's keepalived for ``count`` routers (each pair as hanet's)."""
    started: list[Keepalived] = []
    try:
        for i in range(count):
            for node in NODES:
                item = entry(lab, node, i, interval)
                k = Keepalived(lab, f"{node}{i}")
                started.append(k)
                k.start(keepalived_conf(item["priority"], interval, f"{subnet(i)}.100/24"))
        for i in range(0, count, 2):  # A's masters
            k = started[2 * i]
            wait_until(lambda k=k, i=i: k.holds(f"{subnet(i)}.100"), 30,
                       f"keepalived in a{i} to hold its address")  # fmt: skip
        time.sleep(5 * interval + 1)
        hosts = [f"a{i}" for i in range(count)]
        cpu_before = sum(namespace_usage(lab, host)[1] for host in hosts)
        wall_before = time.monotonic()
        time.sleep(60)
        wall = time.monotonic() - wall_before
        usage = [namespace_usage(lab, host) for host in hosts]
        cpu = sum(u[1] for u in usage) - cpu_before
        result = {"rss_mb": sum(u[0] for u in usage) / 2**20 / count,
                  "cpu_pct": cpu / wall * 100 / count}  # fmt: skip
        log(f"keepalived at {interval:g} s, per router: {result}")
        return result
    finally:
        for k in started:
            k.cleanup()


def render(routers: int, minutes: float, results: dict[float, dict[str, float]],
           reference: dict[float, dict[str, float]], kept: int, command: str) -> str:  # fmt: skip
    lines = [
        BEGIN,
        f"## {routers:,} routers on one node (issue 9)",
        "",
        f"Command: `{command}`. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
        f"{os.cpu_count()} cores. Node A's `hanet vrrpd` runs {routers} VRRPv3 instances, one "
        "per router namespace, each on a veth to the router's namespace on node B, whose "
        "vrrpd is the peer (both on this machine, at nice -10 as in the lab cloud). A is "
        "master of the even routers, B of the odd ones. Spurious: transitions of any "
        f"instance while nothing changed, over {minutes:g} minutes after every instance had "
        "settled.",
        "",
        "| advert_int | spurious transitions on A (on B) | A's CPU | A's RSS (PSS) | "
        "add on A, 20 clients | all settled after | A's graceful stop | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for interval, r in results.items():
        target = "no spurious transition" if interval >= 1 else "counted"
        lines.append(
            f"| {interval:g} s | **{r['spurious_a']:.0f}** ({r['spurious_b']:.0f}) | "
            f"{r['cpu_pct']:.2f} % of a core | {r['rss_mb']:.1f} MB ({r['pss_mb']:.1f} MB) | "
            f"{r['add_a_s']:.1f} s | {r['settle_s']:.1f} s | {r['stop_a_s']:.1f} s | {target} |"
        )
    if reference:
        lines += ["", f"Reference: keepalived, one pair of processes a router, measured on {kept} "
                  f"routers after hanet's runs (same namespaces, same instances) over 60 s, and "
                  f"scaled to {routers} for node A:", "",
                  "| advert_int | keepalived CPU | keepalived RSS | hanet / keepalived, CPU | "
                  "hanet / keepalived, RSS |", "|---|---|---|---|---|"]  # fmt: skip
        for interval, ref in reference.items():
            mine = results[interval]
            cpu, rss = ref["cpu_pct"] * routers, ref["rss_mb"] * routers
            lines.append(f"| {interval:g} s | {cpu:.1f} % of a core | {rss:.0f} MB | "
                         f"{mine['cpu_pct'] / cpu:.3f} | {mine['rss_mb'] / rss:.3f} |")  # fmt: skip
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--intervals", default="1,0.1", help="advert_int values, comma-separated")
    parser.add_argument(
        "--keepalived",
        type=int,
        default=10,
        help="routers to measure keepalived on, as the reference (0: none)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.node_routers needs root (network namespaces)")
    clean_up_on_sigterm()

    def log(message: str) -> None:
        print(f"{datetime.now(UTC):%H:%M:%S} {message}", flush=True)

    lab = PairLab(args.routers, unique_prefix())
    results: dict[float, dict[str, float]] = {}
    try:
        started = time.monotonic()
        lab.up()
        log(f"{2 * args.routers} router namespaces up in {time.monotonic() - started:.1f} s")
        intervals = [float(text) for text in args.intervals.split(",")]
        for interval in intervals:
            results[interval] = run_interval(lab, interval, args.minutes, log)
        kept = min(args.keepalived, args.routers)
        reference = {i: run_keepalived(lab, kept, i, log) for i in intervals} if kept else {}
    finally:
        lab.down()
    command = " ".join(["python -m bench.node_routers", *sys.argv[1:]])
    section = render(args.routers, args.minutes, results, reference, kept, command)
    print(section)
    if args.out:
        write_section(args.out, section, BEGIN, END)


if __name__ == "__main__":
    main()
