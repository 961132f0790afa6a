"""The price of waking up, which sets hanet's CPU floor at one instance.

    .venv/bin/python -m bench.wakeup [--seconds 10] [--out FILE]

One VRRPv3 instance at 0.1 s: a backup does nothing but wake ten times a second for an
advert, and a master wakes ten times a second to send one. In one lab, next to keepalived
2.2.7 on the same keepalived.conf, this measures the CPU (the scheduler's nanosecond count)
that each wake-up costs:

- keepalived as backup and as master, everything included (per advert);
- the least a Python program can do for the same wake-ups, with no VRRP work at all:
  a bare epoll loop that reads the advert, the same under asyncio (add_reader), and an
  asyncio timer that sends one datagram per interval.

If the floor is above 1.5x keepalived, no VRRP daemon written on CPython and asyncio can
meet the issue's CPU target at one instance, however little work it does per advert.
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
from bench.scale import config, namespace_usage, settle, topology, vips_held
from hanet.lab.daemons import Daemon, Keepalived, wait_until
from hanet.lab.lab import Lab, clean_up_on_sigterm
from hanet.lab.pytest_plugin import unique_prefix

BEGIN, END = "<!-- bench:wakeup:begin -->", "<!-- bench:wakeup:end -->"
ADVERTS = "224.0.0.18"

# Run inside the backup's namespace while a keepalived master sends adverts on eth0; prints
# the CPU microseconds per wake-up. argv: mode, seconds, the address of eth0.
FLOOR_PROGRAM = r"""
import asyncio, select, socket, sys, time
from pathlib import Path

mode, seconds, local = sys.argv[1], float(sys.argv[2]), sys.argv[3]
def cpu_ns(): return int(Path("/proc/self/schedstat").read_text().split()[0])
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
sock.setblocking(False)
sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                socket.inet_aton("224.0.0.18") + socket.inet_aton(local))
wakes = 0
def drain():
    global wakes
    wakes += 1
    while True:
        try:
            sock.recvfrom(2048)
        except BlockingIOError:
            return
if mode == "epoll":
    poller = select.epoll(); poller.register(sock.fileno(), select.EPOLLIN)
    poller.poll(-1); drain(); wakes, start, end = 0, cpu_ns(), time.monotonic() + seconds
    while time.monotonic() < end:
        poller.poll(-1); drain()
    print((cpu_ns() - start) / wakes / 1000); sys.exit()
sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def send(loop, at):
    global wakes
    wakes += 1
    sender.sendto(b"x" * 40, ("127.0.0.1", 9))
    loop.call_at(at + 0.1, send, loop, at + 0.1)
async def main():
    loop = asyncio.get_running_loop()
    if mode == "asyncio-reader":
        loop.add_reader(sock.fileno(), drain)
    else:
        loop.call_at(loop.time() + 0.1, send, loop, loop.time() + 0.1)
    await asyncio.sleep(1)
    global wakes
    wakes, start = 0, cpu_ns()
    await asyncio.sleep(seconds)
    print((cpu_ns() - start) / wakes / 1000)
asyncio.run(main())
"""
FLOORS = {
    "epoll": "Python, epoll, read the advert",
    "asyncio-reader": "Python, asyncio add_reader, read the advert",
    "asyncio-timer": "Python, asyncio call_at, send one datagram",
}


def keepalived_per_advert(seconds: float) -> tuple[dict[str, float], Lab, Daemon]:
    """CPU µs per advert of keepalived's master and backup; returns the lab still up,
    with the master still sending, for the floors to run beside it."""
    lab = Lab(topology(1), unique_prefix()).up()
    r1, r2 = Keepalived(lab, "r1"), Keepalived(lab, "r2")
    r1.start(config(1, 200))
    with IPRoute(netns=lab.ns("r1")) as ipr1:
        wait_until(lambda: vips_held(ipr1) == 1, 60, "r1 to hold the VIP", step=0.1)
    r2.start(config(1, 100))
    with IPRoute(netns=lab.ns("r2")) as ipr2:
        settle(ipr2)
    before = [namespace_usage(lab, host)[1] for host in ("r1", "r2")]
    time.sleep(seconds)
    after = [namespace_usage(lab, host)[1] for host in ("r1", "r2")]
    adverts = seconds / 0.1
    master, backup = ((b - a) / adverts * 1e6 for a, b in zip(before, after, strict=True))
    r2.cleanup()
    return {"master": master, "backup": backup}, lab, r1


def floor(lab: Lab, mode: str, seconds: float) -> float:
    argv = ["ip", "netns", "exec", lab.ns("r2"), sys.executable, "-c", FLOOR_PROGRAM,
            mode, str(seconds), "10.0.0.2"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return float(done.stdout)


def render(keepalived: dict[str, float], floors: dict[str, float], command: str) -> str:
    lines = [
        BEGIN,
        "## The price of a wake-up (issue 3)",
        "",
        f"Command: `{command}`. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on "
        f"{os.cpu_count()} cores. One VRRPv3 instance at 0.1 s; CPU µs per advert from the "
        "scheduler's nanosecond count. The Python rows do no VRRP work at all: they are the "
        "least a wake-up costs this interpreter.",
        "",
        "| what | µs per advert | ratio to keepalived |",
        "|---|---|---|",
        f"| keepalived 2.2.7, backup (all its work) | {keepalived['backup']:.0f} | 1.00 |",
        f"| keepalived 2.2.7, master (all its work) | {keepalived['master']:.0f} | 1.00 |",
    ]
    for mode, label in FLOORS.items():
        role = "master" if mode == "asyncio-timer" else "backup"
        ratio = floors[mode] / keepalived[role] if keepalived[role] else float("inf")
        lines.append(f"| {label} (vs the {role}) | {floors[mode]:.0f} | {ratio:.2f} |")
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.wakeup needs root (network namespaces)")
    clean_up_on_sigterm()
    keepalived, lab, master = keepalived_per_advert(args.seconds)
    try:
        floors = {mode: floor(lab, mode, args.seconds) for mode in FLOORS}
    finally:
        master.cleanup()
        lab.down()
    command = "make bench" if os.environ.get("MAKELEVEL") else "python -m bench.wakeup"
    section = render(keepalived, floors, " ".join([command, *sys.argv[1:]]))
    print(section)
    if args.out:
        write_section(args.out, section, BEGIN, END)


if __name__ == "__main__":
    main()
