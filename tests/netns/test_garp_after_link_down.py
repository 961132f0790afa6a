"""A master whose link went down and came back announces its address in full.

A packet socket is told ENETDOWN when its device goes down and keeps that error until the
next send, which then fails even though the link is up again: the first burst after the
link came back lost one of its gratuitous ARPs. keepalived 2.2.7 sends the whole burst.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hanet.lab.daemons import wait_until
from tests.netns.helpers import VIP4

REPEAT = 5
CONFIG = (
    f"global_defs {{\n  vrrp_version 3\n  vrrp_garp_master_repeat {REPEAT}\n"
    "  vrrp_garp_master_delay 0\n  vrrp_garp_master_refresh 0\n}\n"
    "vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n"
    f"  priority 200\n  advert_int 0.1\n  virtual_ipaddress {{\n    {VIP4}/24\n  }}\n}}\n"
)


def garps(out: Path) -> int:
    seen = [json.loads(line) for line in out.read_text().splitlines()[1:] if line]
    return sum(1 for g in seen if g["ip"] == VIP4)


def test_first_burst_after_the_link_comes_back_is_whole(lan, daemons, tmp_path) -> None:
    out = tmp_path / "garps.jsonl"
    with out.open("w") as handle:
        lan.spawn("c", [sys.executable, "-m", "hanet.lab.arpwatch", "eth0"], stdout=handle)
    wait_until(lambda: out.read_text().startswith("ready"), 10, "the ARP watcher")
    r1 = daemons("vrrpd", lan, "r1", CONFIG)
    r1.wait_master(VIP4)
    wait_until(lambda: garps(out) >= REPEAT, 10, "the first burst")

    lan.run("r1", ["ip", "link", "set", "eth0", "down"])
    r1.wait_state("VI_1", "FAULT")
    lan.run("r1", ["ip", "link", "set", "eth0", "up"])
    r1.wait_state("VI_1", "MASTER")
    wait_until(lambda: garps(out) >= 2 * REPEAT, 10,
               f"a whole burst after the link came back (seen {garps(out)} in all)")  # fmt: skip
    assert "Network is down" not in r1.log()
