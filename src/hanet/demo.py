"""``make demo``: two routers and a client, a master crash, and the client's outage.

Everything runs in namespaces under a fresh prefix, and everything is removed at the end,
whatever happens.
"""

from __future__ import annotations

import os
import time
from typing import Any

from rich.console import Console

from hanet.lab.daemons import HanetVrrp, wait_until
from hanet.lab.lab import Lab, clean_up_on_sigterm
from hanet.lab.probe import Pinger
from hanet.lab.topology import lan_topology

VIP = "10.0.0.200"
ADVERT_INT = 0.1


def _instance(priority: int) -> dict[str, Any]:
    return {"vr": {"interface": "eth0", "vrid": 51, "priority": priority,
                   "addresses": [f"{VIP}/24"], "advert_int": ADVERT_INT}}  # fmt: skip


def run_demo(prefix: str | None = None) -> int:
    clean_up_on_sigterm()
    console = Console(highlight=False)
    lab = Lab(lan_topology(routers=2), prefix or f"demo{os.getpid() % 100000}")
    routers: list[HanetVrrp] = []
    try:
        lab.up()
        console.print(f"[bold]hanet demo[/]: routers r1 (priority 200) and r2 (priority 100), "
                      f"client c, one LAN; VRRPv3 every {int(ADVERT_INT * 1000)} ms; "
                      f"VIP {VIP}. Namespaces: {lab.prefix}-*")  # fmt: skip
        # r1 first: started together, r2 may be master for a moment before r1 is up, and
        # the story to tell is the crash, not the start.
        r1 = HanetVrrp(lab, "r1").start(_instance(200))
        routers.append(r1)
        r1.wait_master(VIP)
        r2 = HanetVrrp(lab, "r2").start(_instance(100))
        routers.append(r2)
        wait_until(lambda: r2.status().get("vr", {}).get("master") == "10.0.0.1", 10, "r2")
        console.print("  elected: r1 is [green]MASTER[/], r2 is BACKUP")
        pinger = Pinger(lab, "c", VIP).start()
        wait_until(lambda: _answered(lab), 10, "the client to reach the VIP")
        time.sleep(0.5)  # let the client's pings settle into a steady stream
        crashed_at = lab.crash("r1")
        console.print("  [red]crash r1[/]: kill -9 of every process and its link cut at once")
        r2.wait_master(VIP)
        wait_until(lambda: _took_over(r2, crashed_at) is not None, 5, "r2's state change")
        time.sleep(0.5)  # keep pinging after the take-over so the first good reply is seen
        pinger.stop()
        took_over = _took_over(r2, crashed_at)
        assert took_over is not None
        outage = pinger.outage()
        timeline = [
            (crashed_at, "r1 crashed"),
            (took_over, "r2 became MASTER (master down timer: 3 x 100 ms + skew)"),
        ]
        if outage is not None:
            timeline += [(outage.start, "client: last reply before the outage (from r1)"),
                         (outage.end, "client: first reply after it (from r2)")]  # fmt: skip
        console.print("\n[bold]timeline[/] (ms after the crash)")
        for moment, what in sorted(timeline):
            console.print(f"  {_ms(moment - crashed_at):>7}  {what}")
        outage_ms = outage.ms if outage else 0
        console.print(f"\nfailover: outage_ms={outage_ms} lost={pinger.lost}")
        return 0
    finally:
        for router in routers:
            router.cleanup()
        lab.down()


def _took_over(router: HanetVrrp, crashed_at: float) -> float | None:
    """When the router became master after the crash, if it has."""
    return next((e["time"] for e in router.events()
                 if e["new"] == "MASTER" and e["time"] >= crashed_at), None)  # fmt: skip


def _answered(lab: Lab) -> bool:
    return lab.run("c", ["ping", "-c1", "-W1", VIP], check=False).returncode == 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:+.0f}"
