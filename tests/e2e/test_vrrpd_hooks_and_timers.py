"""Hooks and timers of keepalived.conf, seen from the wire and from the hooks: the same file
runs under hanet vrrpd and under keepalived 2.2.7, and both must behave alike."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from hanet.lab.daemons import keepalived_available, wait_until
from tests.netns.helpers import VIP4

KINDS = [
    "vrrpd",
    pytest.param("keepalived", marks=pytest.mark.skipif(not keepalived_available(),
                                                        reason="keepalived not installed")),
]  # fmt: skip


def instance(priority: int, extra: str = "", advert: str = "0.1") -> str:
    return (
        f"vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n"
        f"  priority {priority}\n  advert_int {advert}\n"
        f"  virtual_ipaddress {{\n    {VIP4}/24\n  }}\n{extra}}}\n"
    )


def hook(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "hooks.log"
    script = tmp_path / "hook.sh"
    script.write_text(f'#!/bin/sh\necho "$1" >> {log}\n')
    script.chmod(0o755)
    return script, log


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("kind", KINDS)
def test_notify_backup_master_and_fault_follow_the_state(lan, daemons, tmp_path, kind) -> None:
    """keepalived.conf(5): notify_backup, notify_master and notify_fault run on entering
    each state; a track_script without weight puts the instance in FAULT while it fails."""
    script, log = hook(tmp_path)
    healthy = tmp_path / "healthy"
    healthy.write_text("")
    text = (
        "global_defs {\n  vrrp_version 3\n  script_user root\n}\n"
        f"vrrp_script chk {{\n  script \"/usr/bin/test -e {healthy}\"\n"
        "  interval 1\n  fall 1\n  rise 1\n}\n"
        + instance(200, f'  track_script {{\n    chk\n  }}\n  notify_backup "{script} backup"\n'
                        f'  notify_master "{script} master"\n  notify_fault "{script} fault"\n')
    )  # fmt: skip
    r1 = daemons(kind, lan, "r1", text)
    r1.wait_master(VIP4)
    wait_until(lambda: lines(log) == ["backup", "master"], 10, f"backup then master: {lines(log)}")
    healthy.unlink()
    r1.wait_backup(VIP4)
    wait_until(lambda: lines(log)[-1:] == ["fault"], 10, "notify_fault")
    healthy.write_text("")
    r1.wait_master(VIP4)
    wait_until(lambda: lines(log)[2:] == ["fault", "backup", "master"], 10,
               "backup then master again")  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_preempt_delay_holds_off_a_returning_higher_priority(lan, daemons, tmp_path, kind) -> None:
    """keepalived.conf(5) preempt_delay: a higher-priority backup leaves a lower-priority
    master alone for that many seconds after it starts, then preempts."""
    delay = 3
    script, log = hook(tmp_path)
    top = "global_defs {\n  vrrp_version 3\n  script_user root\n}\n"
    r2 = daemons(kind, lan, "r2", top + instance(100))
    r2.wait_master(VIP4)
    # r1 cannot start counting its preempt_delay before it is started: whatever the speed of
    # the machine, it must not hold the address before `started + delay`.
    started = time.monotonic()
    hooks = f'  notify_backup "{script} backup"\n  notify_master "{script} master"\n'
    r1 = daemons(kind, lan, "r1", top + instance(200, f"  preempt_delay {delay}\n{hooks}"))
    wait_until(lambda: lines(log)[:1] == ["backup"], 10, "r1 to start as a backup")
    # Without the delay r1 would preempt one Master_Down_Interval (0.32 s) after this.
    while time.monotonic() < started + delay:
        assert not r1.holds(VIP4), "r1 preempted before preempt_delay"
        assert r2.holds(VIP4), "the lower-priority master lost its address"
    r1.wait_master(VIP4, timeout=10)
    r2.wait_backup(VIP4)
    wait_until(lambda: lines(log) == ["backup", "master"], 10, "r1's hooks: backup, then master")


def watch_garps(lan, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path / "garps.jsonl"
    handle = out.open("w")
    lan.spawn("c", [sys.executable, "-m", "hanet.lab.arpwatch", "eth0"], stdout=handle)
    wait_until(lambda: out.read_text().startswith("ready"), 10, "the ARP watcher")
    return out


def garps(out: Path) -> list[float]:
    seen = [json.loads(line) for line in out.read_text().splitlines()[1:] if line]
    return [g["time"] for g in seen if g["ip"] == VIP4]


def bursts(times: list[float], count: int) -> list[list[float]]:
    """``times`` cut into ``count`` bursts at its widest gaps: which gaps part two bursts is
    decided by comparing the gaps with each other, never with a fixed length of time."""
    by_width = sorted(range(1, len(times)), key=lambda i: times[i] - times[i - 1])
    cuts = sorted(by_width[len(times) - count :])
    return [times[a:b] for a, b in zip([0, *cuts], [*cuts, len(times)], strict=True)]


@pytest.mark.parametrize("kind", KINDS)
def test_gratuitous_arp_bursts_delay_and_refresh(lan, daemons, tmp_path, kind) -> None:
    """keepalived.conf(5), as keepalived 2.2.7 does it on the wire: on becoming master,
    vrrp_garp_master_repeat GARPs; as many again vrrp_garp_master_delay later; and
    vrrp_garp_master_refresh_repeat GARPs every vrrp_garp_master_refresh seconds."""
    delay, refresh = 1, 2
    out = watch_garps(lan, tmp_path)
    text = (
        "global_defs {\n  vrrp_version 3\n  vrrp_garp_master_repeat 3\n"
        f"  vrrp_garp_master_delay {delay}\n  vrrp_garp_master_refresh {refresh}\n"
        "  vrrp_garp_master_refresh_repeat 2\n}\n" + instance(200)
    )
    r1 = daemons(kind, lan, "r1", text)
    r1.wait_master(VIP4)
    wait_until(lambda: len(garps(out)) >= 10, 30, "four bursts of GARPs")
    found = bursts(garps(out)[:10], 4)
    assert [len(b) for b in found] == [3, 3, 2, 2], found
    first, again, refresh1, refresh2 = found
    # Only relations, none that a slow machine can break (it makes bursts later, not
    # earlier): the second burst waits for the delay instead of following the first at once,
    # and the refreshes, which come after it, are spaced by the refresh period, not sent
    # back to back. Half the configured time tells waiting from not waiting.
    assert again[0] - first[-1] > delay / 2, found
    assert refresh2[0] - refresh1[-1] > refresh / 2, found


def test_garp_interval_spaces_each_burst(lan, daemons, tmp_path) -> None:
    """vrrp_garp_interval spaces the GARPs of a burst. hanet sends the configured
    vrrp_garp_master_repeat; keepalived 2.2.7 sends only two per burst once an interval
    is set (seen in the lab), which docs/vrrpd.md lists as a difference."""
    repeat, interval = 4, 0.05
    out = watch_garps(lan, tmp_path)
    text = (
        f"global_defs {{\n  vrrp_version 3\n  vrrp_garp_master_repeat {repeat}\n"
        f"  vrrp_garp_master_delay 1\n  vrrp_garp_interval {interval}\n}}\n" + instance(200)
    )
    r1 = daemons("vrrpd", lan, "r1", text)
    r1.wait_master(VIP4)
    wait_until(lambda: len(garps(out)) >= 2 * repeat, 30, "two bursts of GARPs")
    found = bursts(garps(out)[: 2 * repeat], 2)
    assert [len(b) for b in found] == [repeat, repeat], found
    # Spread, not sent at one instant: each burst lasts a good part of what its intervals
    # add up to. A lower bound with a wide margin, which a slow machine only makes easier
    # to meet (it delays packets; the watcher's timestamps can only squeeze a burst if it
    # stalls for most of it).
    for burst in found:
        assert burst[-1] - burst[0] > (repeat - 1) * interval / 2, found
