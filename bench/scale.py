"""Many instances in one process: hanet vrrpd next to keepalived 2.2.7, same keepalived.conf.

    .venv/bin/python -m bench.scale [--counts 1,100,1000] [--cpu-seconds 20] [--out FILE]

For each count N: r1 (priority 200) and r2 (priority 100) run the same file of N VRRPv3
instances at 0.1 s (250 per interface, as VRIDs are 8 bits). Measured per implementation:
RSS of every process in the router's namespace, CPU of the master and of the backup over
the window, and the time from r1's crash until r2 holds the last of the N VIPs.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pyroute2 import IPRoute

from bench.failover import write_section
from hanet.lab.daemons import Daemon, HanetVrrpd, Keepalived, wait_until
from hanet.lab.lab import Lab, clean_up_on_sigterm, pids_in_netns
from hanet.lab.pytest_plugin import unique_prefix
from hanet.lab.topology import Host, Link, Topology

PER_INTERFACE = 250
BEGIN, END = "<!-- bench:scale:begin -->", "<!-- bench:scale:end -->"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def topology(count: int) -> Topology:
    segments = tuple(f"s{k}" for k in range((count + PER_INTERFACE - 1) // PER_INTERFACE))

    def router(n: int) -> Host:
        return Host({f"eth{k}": Link(seg, (ipaddress.ip_interface(f"10.{k}.0.{n}/16"),))
                     for k, seg in enumerate(segments)})  # fmt: skip

    return Topology(segments, {"r1": router(1), "r2": router(2)})


def config(count: int, priority: int) -> str:
    parts = ["global_defs {\n  vrrp_version 3\n}\n"]
    for i in range(count):
        k, j = divmod(i, PER_INTERFACE)
        parts.append(
            f"vrrp_instance VI_{i} {{\n  state BACKUP\n  interface eth{k}\n"
            f"  virtual_router_id {j + 1}\n  priority {priority}\n  advert_int 0.1\n"
            f"  virtual_ipaddress {{\n    10.{k}.1.{j + 1}/16\n  }}\n}}\n"
        )
    return "".join(parts)


def vips_held(ipr: IPRoute) -> int:
    return sum(1 for a in ipr.addr("dump") if (a.get("IFA_ADDRESS") or "").count(".1.") and
               a.get("IFA_ADDRESS", "").split(".")[2] == "1")  # fmt: skip


def namespace_usage(lab: Lab, host: str) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) summed over every process in the host."""
    rss, cpu = 0, 0.0
    for pid in pids_in_netns(lab.ns(host)):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            continue
    return rss, cpu


def run(kind: str, count: int, cpu_seconds: float, log) -> dict[str, float]:  # type: ignore[no-untyped-def]
    lab = Lab(topology(count), unique_prefix()).up()
    daemons: list[Daemon] = []
    try:
        r1 = HanetVrrpd(lab, "r1") if kind == "hanet" else Keepalived(lab, "r1")
        r2 = HanetVrrpd(lab, "r2") if kind == "hanet" else Keepalived(lab, "r2")
        daemons += [r1, r2]
        r1.start(config(count, 200))
        with IPRoute(netns=lab.ns("r1")) as ipr1:
            wait_until(lambda: vips_held(ipr1) == count, 60, "r1 to hold every VIP", step=0.1)
        r2.start(config(count, 100))
        time.sleep(3)  # r2 settles as backup of every instance
        rss1, cpu1 = namespace_usage(lab, "r1")
        rss2, cpu2 = namespace_usage(lab, "r2")
        time.sleep(cpu_seconds)
        _, cpu1_end = namespace_usage(lab, "r1")
        _, cpu2_end = namespace_usage(lab, "r2")
        with IPRoute(netns=lab.ns("r2")) as ipr2:
            assert vips_held(ipr2) == 0, f"{kind}: r2 holds VIPs while r1 is master"
            crashed = lab.crash("r1")
            wait_until(lambda: vips_held(ipr2) == count, 60, "r2 to hold every VIP", step=0.01)
            moved = time.time() - crashed
        result = {
            "rss_mb": max(rss1, rss2) / 2**20,
            "cpu_master": (cpu1_end - cpu1) / cpu_seconds * 100,
            "cpu_backup": (cpu2_end - cpu2) / cpu_seconds * 100,
            "last_vip_s": moved,
        }
        log(f"{kind} N={count}: {result}")
        return result
    finally:
        for daemon in daemons:
            daemon.cleanup()
        lab.down()


def render(results: dict[int, dict[str, dict[str, float]]], command: str, seconds: float) -> str:
    lines = [
        BEGIN,
        "## Many instances in one process (issue 3)",
        "",
        f"Command: `{command}`. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
        f"{os.cpu_count()} cores. Both implementations run the same keepalived.conf of N "
        f"VRRPv3 instances at 0.1 s, on r1 (master) and r2 (backup); CPU is over {seconds:g} s,"
        " in % of one core; RSS is the larger router's, all processes of the daemon summed; "
        "'last VIP' is the time from r1's crash (kill -9 and link cut) until r2 holds all N.",
        "",
        "| N | figure | hanet | keepalived | ratio |",
        "|---|---|---|---|---|",
    ]
    names = {"rss_mb": ("RSS", "MB"), "cpu_master": ("CPU, master", "%"),
             "cpu_backup": ("CPU, backup", "%"), "last_vip_s": ("last VIP moved", "s")}  # fmt: skip
    for count, by_kind in results.items():
        for key, (label, unit) in names.items():
            h, k = by_kind["hanet"][key], by_kind["keepalived"][key]
            lines.append(f"| {count} | {label} | {h:.2f} {unit} | {k:.2f} {unit} | "
                         f"{h / k if k else float('inf'):.2f} |")  # fmt: skip
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,100,1000")
    parser.add_argument("--cpu-seconds", type=float, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.scale needs root (network namespaces)")
    clean_up_on_sigterm()
    results = {}
    for count in (int(c) for c in args.counts.split(",")):
        results[count] = {kind: run(kind, count, args.cpu_seconds, lambda m: print(m, flush=True))
                          for kind in ("hanet", "keepalived")}  # fmt: skip
    command = (
        "make bench"
        if os.environ.get("MAKELEVEL")
        else " ".join(["python -m bench.scale", *sys.argv[1:]])
    )
    section = render(results, command, args.cpu_seconds)
    print(section)
    if args.out:
        write_section(args.out, section, BEGIN, END)


if __name__ == "__main__":
    main()
