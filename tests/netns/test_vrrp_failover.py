"""Fail-over on a real network path: hanet VRRP daemons in lab hosts, a client pinging the VIP."""

from __future__ import annotations

import pytest

from hanet.lab.daemons import wait_until
from tests.netns.helpers import VIP4, VIP6, instance, mac_of, reaches, wait_client_uses


def test_election_by_priority(lan, daemons) -> None:
    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=200)})
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=100)})
    r3 = daemons("hanet", lan, "r3", {"vr": instance(priority=50)})
    r1.wait_master(VIP4)
    wait_client_uses(lan, VIP4, "r1")
    for backup in (r2, r3):
        wait_until(lambda b=backup: b.status().get("vr", {}).get("master") == "10.0.0.1", 5,
                   "the backup to know r1 as master")  # fmt: skip
        assert backup.status()["vr"]["state"] == "BACKUP"
        assert not backup.holds(VIP4)


@pytest.mark.parametrize("fault", ["kill", "cut", "crash"])
def test_backup_takes_over_on_hard_failure(lan, daemons, fault: str) -> None:
    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=200)})
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=100)})
    r1.wait_master(VIP4)
    wait_client_uses(lan, VIP4, "r1")
    if fault == "kill":
        r1.kill()
    elif fault == "cut":
        lan.cut("r1")
    else:
        lan.crash("r1")
    r2.wait_master(VIP4)
    wait_client_uses(lan, VIP4, "r2")


@pytest.mark.parametrize("preempt", [True, False])
def test_returning_master_preempts_only_with_preempt(lan, daemons, preempt: bool) -> None:
    """RFC 5798 §6.4.2: a backup with Preempt_Mode false never displaces a live master."""
    high = instance(priority=200, preempt=preempt)
    r1 = daemons("hanet", lan, "r1", {"vr": high})
    # r1 must be master before r2 starts: without preemption, whoever wins the start-up
    # race keeps the VIP, and that is not what this test is about.
    r1.wait_master(VIP4)
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=100)})
    wait_until(lambda: r2.status().get("vr", {}).get("master") == "10.0.0.1", 5, "r2 backup")
    r1.stop()
    r2.wait_master(VIP4)
    r1 = daemons("hanet", lan, "r1", {"vr": high})
    if preempt:
        r1.wait_master(VIP4)
        r2.wait_backup(VIP4)
        wait_client_uses(lan, VIP4, "r1")
    else:
        # Proof of a settled backup: many adverts from r2 heard, over several down intervals.
        wait_until(lambda: r1.status().get("vr", {}).get("adverts_received", 0) >= 20, 10,
                   "r1 to hear r2's adverts")  # fmt: skip
        assert r1.status()["vr"]["state"] == "BACKUP"
        assert not r1.holds(VIP4)
        wait_client_uses(lan, VIP4, "r2")


def test_priority_zero_hands_over_after_skew_time(lan, daemons) -> None:
    """RFC 5798 §6.4.2: on priority 0 the backup waits Skew_Time, not Master_Down_Interval."""
    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=200)})
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=100)})
    r1.wait_master(VIP4)

    # Both start at once, so r2 may be master for a moment before it hears r1: wait until
    # it has settled as r1's backup, and judge only the take-over that follows the stop.
    def settled_as_backup() -> bool:
        vr = r2.status().get("vr", {})
        return vr.get("state") == "BACKUP" and vr.get("master") == "10.0.0.1"

    wait_until(settled_as_backup, 5, "r2 to settle as r1's backup")
    settled = len(r2.events())
    r1.stop()
    r2.wait_master(VIP4)
    took_over = next(e for e in r2.events()[settled:] if e["new"] == "MASTER")
    assert took_over["reason"] == "master left (priority 0) and Skew_Time passed"
    wait_client_uses(lan, VIP4, "r2")


def test_tie_break_higher_primary_address_wins(lan, daemons) -> None:
    """RFC 5798 §6.4.3: equal priorities; the higher primary address stays master."""
    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=100)})
    lan.cut("r2")
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=100)})
    r1.wait_master(VIP4)
    r2.wait_master(VIP4)
    lan.restore("r2")
    r1.wait_backup(VIP4)
    assert r2.holds(VIP4)
    wait_client_uses(lan, VIP4, "r2")


def test_ipv6_vip_fails_over(lan, daemons) -> None:
    v6 = {"vips": (f"{VIP6}/64",)}
    r1 = daemons("hanet", lan, "r1", {"vr6": instance(priority=200, **v6)})
    r2 = daemons("hanet", lan, "r2", {"vr6": instance(priority=100, **v6)})
    r1.wait_master(VIP6)
    wait_until(lambda: reaches(lan, "c", VIP6), 10, "the IPv6 VIP to answer")
    lan.crash("r1")
    r2.wait_master(VIP6)
    wait_client_uses(lan, VIP6, "r2")


def test_v2_wrong_password_is_ignored_and_counted(lan, daemons) -> None:
    """RFC 3768 §7.1: adverts failing authentication are discarded."""
    v2 = {"version": 2, "advert_int": 1.0}
    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=200, auth_pass="secret", **v2)})
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=150, auth_pass="wrong", **v2)})
    r3 = daemons("hanet", lan, "r3", {"vr": instance(priority=100, auth_pass="secret", **v2)})
    r1.wait_master(VIP4)
    # r2 never accepts r1's adverts: it becomes master of its own, and counts the mismatch.
    r2.wait_master(VIP4)
    wait_until(lambda: r2.status()["vr"]["drops"].get("auth_mismatch", 0) >= 2, 10, "drops")
    wait_until(lambda: r3.status()["vr"]["drops"].get("auth_mismatch", 0) >= 1, 10, "drops")
    assert r3.status()["vr"]["state"] == "BACKUP"
    assert r3.status()["vr"]["master"] == "10.0.0.1"
    assert r1.status()["vr"]["state"] == "MASTER"


def test_several_instances_share_one_interface(lan, daemons) -> None:
    a, b = ("10.0.0.201/24",), ("10.0.0.202/24",)
    r1 = daemons("hanet", lan, "r1", {"a": instance(1, 200, a), "b": instance(2, 100, b)})
    r2 = daemons("hanet", lan, "r2", {"a": instance(1, 100, a), "b": instance(2, 200, b)})
    r1.wait_master("10.0.0.201")
    r2.wait_master("10.0.0.202")
    wait_client_uses(lan, "10.0.0.201", "r1")
    wait_client_uses(lan, "10.0.0.202", "r2")
    assert not r1.holds("10.0.0.202") and not r2.holds("10.0.0.201")
    lan.crash("r2")
    r1.wait_master("10.0.0.202")
    wait_client_uses(lan, "10.0.0.202", "r1")


def test_virtual_routes_follow_mastership(lan, daemons) -> None:
    """RFC 5798 §6.4: routes bound to the virtual router move with the master."""
    routes = [{"to": "10.9.0.0/16", "via": "10.0.0.254"}, {"to": "10.8.0.0/24", "metric": 7}]
    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=200, routes=routes)})
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=100, routes=routes)})

    def has_routes(host: str) -> bool:
        table = lan.run(host, ["ip", "route", "show"]).stdout
        return "10.9.0.0/16 via 10.0.0.254 dev eth0" in table and "10.8.0.0/24" in table

    r1.wait_master(VIP4)
    wait_until(lambda: has_routes("r1"), 5, "r1's virtual routes")
    assert not has_routes("r2")
    r1.stop()
    r2.wait_master(VIP4)
    wait_until(lambda: has_routes("r2"), 5, "r2's virtual routes")
    assert not has_routes("r1")


def test_one_process_serves_instances_in_several_namespaces(lan, daemons) -> None:
    """Like one vrrpd per node for many router namespaces: sockets are opened per namespace."""
    one = daemons("hanet", lan, "r3", {
        "in_r1": instance(priority=200, netns=lan.ns("r1")),
        "in_r2": instance(priority=100, netns=lan.ns("r2")),
    })  # fmt: skip
    wait_until(lambda: one.status().get("in_r2", {}).get("master") == "10.0.0.1", 10,
               "the r2 instance to follow the r1 instance")  # fmt: skip
    assert one.status()["in_r1"]["state"] == "MASTER"
    wait_client_uses(lan, VIP4, "r1")
    lan.cut("r1")
    wait_until(lambda: one.status().get("in_r2", {}).get("state") == "MASTER", 10, "take-over")
    wait_client_uses(lan, VIP4, "r2")


@pytest.mark.parametrize("accept", [True, False])
def test_accept_mode(lan, daemons, accept: bool) -> None:
    """RFC 5798 §6.4.3: without Accept_Mode a non-owner master drops traffic to the VIP,
    but still answers ARP for it."""
    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=200, accept=accept)})
    r1.wait_master(VIP4)
    wait_until(lambda: mac_of(lan, "r1") in neighbour(lan, VIP4), 10, "ARP for the VIP")
    assert reaches(lan, "c", VIP4) is accept
    assert reaches(lan, "c", "10.0.0.1")  # the router's own address is not filtered
    r1.stop()
    assert "hanet" not in lan.run("r1", ["nft", "list", "ruleset"]).stdout


def neighbour(lan, address: str) -> str:  # type: ignore[no-untyped-def]
    lan.run("c", ["ping", "-c1", "-W1", address], check=False)  # resolves it, reply or not
    return lan.run("c", ["ip", "neigh", "show", address]).stdout


def test_sighup_keeps_the_master(lan, daemons) -> None:
    import signal

    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=200)})
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=100)})
    r1.wait_master(VIP4)
    wait_until(lambda: r2.status().get("vr", {}).get("master") == "10.0.0.1", 5, "backup")
    # Counted from here: started together, r2 may have been master for a moment before.
    transitions = r2.status()["vr"]["transitions"]
    r1.proc.send_signal(signal.SIGHUP)
    received = r2.status()["vr"]["adverts_received"]
    wait_until(lambda: r2.status()["vr"]["adverts_received"] >= received + 10, 5, "adverts")
    assert r1.proc.poll() is None and r1.holds(VIP4)
    assert r2.status()["vr"]["transitions"] == transitions


def test_a_master_leaves_no_neighbour_entry_for_its_adverts(lan, daemons) -> None:
    """IPv4 adverts go out as frames: through the IP stack each sending interface kept an
    entry for 224.0.0.18 in the kernel's neighbour table, which every namespace shares (a
    thousand router namespaces filled it, and adverts went unsent)."""
    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=200)})
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=100)})
    r1.wait_master(VIP4)
    wait_until(lambda: r2.status().get("vr", {}).get("master") == "10.0.0.1", 5,
               "r2 to hear r1's adverts")  # fmt: skip
    wait_until(lambda: r1.status()["vr"]["adverts_sent"] >= 3, 5, "r1 to send a few adverts")
    neighbours = lan.run("r1", ["ip", "-4", "neigh", "show", "nud", "all"]).stdout
    assert "224.0.0.18" not in neighbours, neighbours
