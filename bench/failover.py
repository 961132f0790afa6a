"""Fail-over benchmark: the client's outage, hanet next to keepalived 2.2.7, in one run.

    .venv/bin/python -m bench.failover [--trials N] [--out docs/BENCHMARKS.md]

Each trial builds a fresh lab (r1 priority 200, r2 priority 100, client c), runs the same
implementation on both routers, waits a random fraction of an advert interval, fails r1 and
measures the longest silence of a 10 ms ICMP stream from c to the VIP. Trials of the two
implementations alternate, so machine noise hits both alike; the ratio is what to read.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hanet.lab.daemons import Daemon, HanetVrrpd, Keepalived, keepalived_conf, wait_until
from hanet.lab.lab import Lab, clean_up_on_sigterm
from hanet.lab.probe import Pinger
from hanet.lab.pytest_plugin import unique_prefix
from hanet.lab.topology import lan_topology

VIP = "10.0.0.200"
BEGIN, END = "<!-- bench:failover:begin -->", "<!-- bench:failover:end -->"


@dataclass(frozen=True)
class Case:
    name: str
    version: int
    advert_int: float
    fault: str  # "crash" (kill -9 + link cut) or "stop" (SIGTERM: priority 0)
    reference_ms: int  # the keepalived reference figure


CASES = [
    Case("crash, v2 at 1 s", 2, 1.0, "crash", 3000),
    Case("crash, v3 at 0.1 s", 3, 0.1, "crash", 340),
    Case("priority-0 hand-over, v3 at 0.1 s", 3, 0.1, "stop", 80),
]


def keepalived_config(case: Case, priority: int) -> str:
    return keepalived_conf(
        version=case.version, priority=priority, vip=f"{VIP}/24", advert_int=case.advert_int
    )


def trial(case: Case, kind: str) -> int:
    lab = Lab(lan_topology(routers=2), unique_prefix()).up()
    started: list[Daemon] = []
    try:

        def start(host: str, priority: int) -> Daemon:
            daemon: Daemon
            # Both implementations run the very same keepalived.conf.
            text = keepalived_config(case, priority)
            daemon = HanetVrrpd(lab, host) if kind == "hanet" else Keepalived(lab, host)
            daemon.start(text)
            started.append(daemon)
            return daemon

        r1 = start("r1", 200)
        r1.wait_master(VIP, timeout=20)
        r2 = start("r2", 100)
        time.sleep(4 * case.advert_int + 0.5)  # let r2 settle as backup before the fault
        pinger = Pinger(lab, "c", VIP).start()
        wait_until(lambda: pinger_has_replies(lab), 10, "the client to reach the VIP")
        time.sleep(0.3 + random.uniform(0, case.advert_int))  # land anywhere in the cycle
        if case.fault == "crash":
            lab.crash("r1")
        else:
            r1.stop()
        r2.wait_master(VIP, timeout=20)
        time.sleep(0.3)
        pinger.stop()
        outage = pinger.outage()
        return outage.ms if outage else 0
    finally:
        for daemon in started:
            daemon.cleanup()
        lab.down()


def pinger_has_replies(lab: Lab) -> bool:
    return lab.run("c", ["ping", "-c1", "-W1", VIP], check=False).returncode == 0


def measure(case: Case, trials: int, log: Callable[[str], None]) -> dict[str, list[int]]:
    results: dict[str, list[int]] = {"hanet": [], "keepalived": []}
    for n in range(trials):
        for kind in ("hanet", "keepalived") if n % 2 == 0 else ("keepalived", "hanet"):
            results[kind].append(trial(case, kind))
            log(f"{case.name}: {kind} trial {n + 1}: {results[kind][-1]} ms")
    return results


def render(results: dict[str, dict[str, list[int]]], trials: int, command: str) -> str:
    keepalived = subprocess.run(["keepalived", "--version"], capture_output=True, text=True)
    version = (keepalived.stderr or keepalived.stdout).splitlines()[0]
    lines = [
        BEGIN,
        "## Fail-over: the client's outage (issues 2 and 3)",
        "",
        f"Command: `{command}`; {trials} trials per implementation and case, alternating. "
        "hanet runs as `hanet vrrpd` on the same keepalived.conf as keepalived.",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, "
        f"Linux {platform.release()}, {version}.",
        "",
        "Outage = the longest gap between replies of a 10 ms ICMP stream from the client to "
        "the VIP. Crash = kill -9 of every process on the master and its link cut at once; "
        "priority-0 = SIGTERM to the master (a graceful stop).",
        "",
        "| case | hanet median (min-max) | keepalived median (min-max) | ratio hanet/keepalived "
        "| issue's reference |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        if case.name not in results:
            continue
        h, k = results[case.name]["hanet"], results[case.name]["keepalived"]
        ratio = statistics.median(h) / max(statistics.median(k), 1)
        lines.append(
            f"| {case.name} | {statistics.median(h):.0f} ms ({min(h)}-{max(h)}) "
            f"| {statistics.median(k):.0f} ms ({min(k)}-{max(k)}) | {ratio:.2f} "
            f"| {case.reference_ms} ms |"
        )
    lines.append(END)
    return "\n".join(lines)


def write_section(path: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the section between its markers, or append it."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--case", action="append", help="only cases whose name contains this")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.failover needs root (network namespaces)")
    clean_up_on_sigterm()
    results = {}
    for case in CASES:
        if args.case and not any(c in case.name for c in args.case):
            continue
        results[case.name] = measure(case, args.trials, lambda m: print(m, flush=True))
    command = (
        "make bench"
        if os.environ.get("MAKELEVEL")
        else " ".join(["python -m bench.failover", *sys.argv[1:]])
    )
    section = render(results, args.trials, command)
    print(section)
    if args.out:
        write_section(args.out, section)


if __name__ == "__main__":
    main()
