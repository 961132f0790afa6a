"""Where one vrrpd's memory goes: its RSS before any instance, and per router instance.

    .venv/bin/python -m bench.vrrpd_memory [--count 500] [--out FILE]

The lab of bench.namespaces (N router namespaces, each with a veth into one bridge whose
ports are isolated, and one vrrpd in a namespace of its own). The daemon's RSS is read once
it answers, and again after N instances, one per namespace, each master of its segment:
first added one request at a time (control socket version 0: no tracking), then, in a new
daemon, as one version 1 ``sync`` (as hanet-agent sends them: each instance tracks its VRRP
interface, so vrrpd watches the links of every namespace).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.failover import write_section
from bench.namespaces import (
    DAEMON,
    REQUEST_TIMEOUT,
    NamespaceLab,
    add_all,
    instance_entry,
    masters,
    process_figures,
)
from hanet.lab.daemons import HanetVrrpd, control_request, wait_until
from hanet.lab.lab import clean_up_on_sigterm
from hanet.lab.pytest_plugin import unique_prefix

BEGIN, END = "<!-- bench:vrrpd_memory:begin -->", "<!-- bench:vrrpd_memory:end -->"


def sync_all(daemon: HanetVrrpd, lab: NamespaceLab, count: int) -> None:
    instances = {f"router{i}": instance_entry(lab, i) for i in range(count)}
    message = {"version": 1, "command": "sync", "instances": instances}
    answer = control_request(daemon.control, message, timeout=REQUEST_TIMEOUT)
    if not answer.get("ok"):
        raise RuntimeError(f"sync refused: {answer}")


def measure(lab: NamespaceLab, count: int, version: int) -> tuple[float, float]:
    """(RSS at start, RSS with ``count`` instances), in MB."""
    daemon = HanetVrrpd(lab, DAEMON)
    try:
        daemon.start("")
        wait_until(lambda: control_request(daemon.control, {"command": "status"}), 30,
                   "vrrpd to answer on its control socket")  # fmt: skip
        assert daemon.proc is not None
        time.sleep(1.0)
        empty = process_figures(daemon.proc.pid)["rss_mb"]
        if version == 0:
            add_all(daemon, lab, count, 1)
        else:
            sync_all(daemon, lab, count)
        wait_until(lambda: masters(daemon) == count, 60 + count * 0.05,
                   f"all {count} instances to be MASTER", step=0.5)  # fmt: skip
        time.sleep(3.0)  # past the first adverts and announcements
        return empty, process_figures(daemon.proc.pid)["rss_mb"]
    finally:
        daemon.cleanup()


def render(count: int, figures: dict[int, tuple[float, float]], command: str) -> str:
    lines = [
        BEGIN,
        "## vrrpd's memory per router instance (issue 9)",
        "",
        f"Command: `{command}`. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
        f"{os.cpu_count()} cores. {count} router namespaces as in bench.namespaces; one "
        "instance each (VRRPv3 at 1 s, one VIP), all masters of their own segment.",
        "",
        "| instances added as | RSS at start | RSS with them | per instance |",
        "|---|---|---|---|",
    ]
    for version, label in ((0, "version 0 `add`, one each"),
                           (1, "version 1 `sync` (each tracks its interface)")):  # fmt: skip
        empty, full = figures[version]
        lines.append(f"| {label} | {empty:.1f} MB | {full:.1f} MB | "
                     f"{(full - empty) * 1024 / count:.1f} KB |")  # fmt: skip
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    clean_up_on_sigterm()
    lab = NamespaceLab(args.count, unique_prefix())
    try:
        lab.up()
        figures = {version: measure(lab, args.count, version) for version in (0, 1)}
    finally:
        lab.down()
    command = (
        "make bench"
        if os.environ.get("MAKELEVEL")
        else " ".join(["python -m bench.vrrpd_memory", *sys.argv[1:]])
    )
    section = render(args.count, figures, command)
    print(section)
    if args.out:
        write_section(args.out, section, BEGIN, END)


if __name__ == "__main__":
    main()
