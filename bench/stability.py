"""The smallest advert_int that holds: N instances, the other core busy, no spurious moves.

    .venv/bin/python -m bench.stability [--intervals 0.05,0.02] [--seconds 300] [--count 100]

For each interval, hanet vrrpd and then keepalived run the same file of N VRRPv3 instances
on r1 (priority 200) and r2 (priority 100) while a busy loop holds one core. After the
election settles, any state change during the window is spurious; the VIPs held by r2 are
counted too (a backup that thought the master dead).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from pyroute2 import IPRoute

from bench.failover import write_section
from bench.scale import config, topology, vips_held
from hanet.lab.daemons import Daemon, HanetVrrpd, Keepalived, wait_until
from hanet.lab.lab import Lab, clean_up_on_sigterm
from hanet.lab.pytest_plugin import unique_prefix

BEGIN, END = "<!-- bench:stability:begin -->", "<!-- bench:stability:end -->"


def config_at(count: int, priority: int, interval: float) -> str:
    return config(count, priority).replace("advert_int 0.1", f"advert_int {interval:g}")


def log_changes(daemon: Daemon, kind: str) -> int:
    """State changes seen so far: hanet's own log, keepalived's console log."""
    text = daemon.log()
    marker = " -> " if kind == "hanet" else "Entering "
    return sum(1 for line in text.splitlines() if marker in line)


def run(kind: str, count: int, interval: float, seconds: float) -> dict[str, int]:
    lab = Lab(topology(count), unique_prefix()).up()
    daemons: list[Daemon] = []
    busy = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
    try:
        r1 = HanetVrrpd(lab, "r1") if kind == "hanet" else Keepalived(lab, "r1")
        r2 = HanetVrrpd(lab, "r2") if kind == "hanet" else Keepalived(lab, "r2")
        daemons += [r1, r2]
        r1.start(config_at(count, 200, interval))
        with IPRoute(netns=lab.ns("r1")) as ipr1:
            wait_until(lambda: vips_held(ipr1) == count, 60, "r1 to hold every VIP", step=0.1)
        r2.start(config_at(count, 100, interval))
        time.sleep(5)
        before = log_changes(r1, kind) + log_changes(r2, kind)
        time.sleep(seconds)
        after = log_changes(r1, kind) + log_changes(r2, kind)
        with IPRoute(netns=lab.ns("r2")) as ipr2:
            held = vips_held(ipr2)
        return {"spurious": after - before, "backup_holds": held}
    finally:
        busy.kill()
        busy.wait()
        for daemon in daemons:
            daemon.cleanup()
        lab.down()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intervals", default="0.05,0.02")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.stability needs root (network namespaces)")
    clean_up_on_sigterm()
    rows = []
    for interval in (float(i) for i in args.intervals.split(",")):
        for kind in ("hanet", "keepalived"):
            result = run(kind, args.count, interval, args.seconds)
            print(f"{kind} at {interval:g} s: {result}", flush=True)
            rows.append(f"| {interval:g} s | {kind} | {result['spurious']} | "
                        f"{result['backup_holds']} |")  # fmt: skip
    command = " ".join(["python -m bench.stability", *sys.argv[1:]])
    section = "\n".join([
        BEGIN,
        "## Smallest stable advert_int (issue 3)",
        "",
        f"Command: `{command}`. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. {args.count} "
        f"VRRPv3 instances on r1 and r2 for {args.seconds:g} s after the election settled, "
        "with a busy loop pinned to core 1. Spurious = state changes in the window (hanet's "
        "and keepalived's logs); the backup should hold no VIP.",
        "",
        "| advert_int | implementation | spurious state changes | VIPs on the backup |",
        "|---|---|---|---|",
        *rows,
        END,
    ])  # fmt: skip
    print(section)
    if args.out:
        write_section(args.out, section, BEGIN, END)


if __name__ == "__main__":
    main()
