"""Reloads and control requests are all or nothing, and no address has two owners."""

from __future__ import annotations

import os

from hanet.lab.daemons import HanetVrrpd, wait_until
from tests.e2e.test_vrrpd import conf
from tests.netns.helpers import VIP4

SECOND_VIP = "10.0.0.202"


def second(priority: int = 200, vip: str = f"{SECOND_VIP}/24", vrid: int = 52) -> str:
    """A second vrrp_instance block, VI_2, without the global_defs of ``conf``."""
    return conf(priority, vrid=vrid, vip=vip, name="VI_2").split("}\n", 1)[1]


def reload_and_wait(daemon: HanetVrrpd, text: str, outcome: str) -> str:
    """SIGHUP with ``text`` as the file; the log line that tells the reload's outcome."""
    before = daemon.log().count(outcome)
    daemon.reload(text)
    wait_until(lambda: daemon.log().count(outcome) > before, 30, f"'{outcome}' in the log")
    return daemon.log()


def assert_still_master(daemon: HanetVrrpd, transitions: int = 2) -> None:
    state = daemon.status()["VI_1"]
    assert state["state"] == "MASTER" and state["transitions"] == transitions
    assert daemon.holds(VIP4)


def test_reload_to_a_missing_interface_changes_nothing_and_a_good_one_still_works(
    lan, daemons
) -> None:
    good = conf(200)
    r1 = daemons("vrrpd", lan, "r1", good)
    r1.wait_master(VIP4)
    moved = good.replace("interface eth0", "interface nosuch0")
    log = reload_and_wait(r1, moved, "reload refused")
    assert "nosuch0" in log.split("reload refused")[-1]
    assert "Traceback" not in log and "never retrieved" not in log
    assert_still_master(r1)
    # With a valid new instance beside the bad change, the new one does not start either.
    reload_and_wait(r1, moved + second(), "reload refused")
    assert set(r1.status()) == {"VI_1"}
    assert_still_master(r1)
    # The daemon is not stuck: the file restored, and then grown, reload as usual.
    reload_and_wait(r1, good, "reloaded")
    assert_still_master(r1)
    reload_and_wait(r1, good + second(), "reloaded")
    r1.wait_master(SECOND_VIP)
    assert r1.status()["VI_2"]["source"] == "file"
    assert_still_master(r1)


def test_reload_that_moves_an_instance_restarts_it_on_its_new_interface(lan, daemons) -> None:
    """An identity change that can be made is made: the instance moves to its new VRID."""
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    reload_and_wait(r1, conf(200, vrid=61), "reloaded")
    wait_until(lambda: r1.status()["VI_1"]["vrid"] == 61, 5, "VI_1 on vrid 61")
    r1.wait_master(VIP4)


def test_an_address_has_one_owner(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    entry = {"interface": "eth0", "vrid": 60, "priority": 150,
             "addresses": [f"{VIP4}/24"], "advert_int": 0.1}  # fmt: skip
    answer = r1.request({"command": "add", "name": "agent_1", "instance": entry})
    assert answer["ok"] is False
    assert f"address {VIP4} on eth0 is held by instance VI_1" in answer["error"]
    assert set(r1.status()) == {"VI_1"}
    taken = {**entry, "vrid": 51, "addresses": ["10.0.0.61/24"]}
    answer = r1.request({"command": "add", "name": "agent_1", "instance": taken})
    assert "vrid 51 on eth0 is in use by instance VI_1" in answer["error"]
    # Another address is fine; changing it to VI_1's is refused and changes nothing.
    entry["addresses"] = ["10.0.0.60/24"]
    assert r1.request({"command": "add", "name": "agent_1", "instance": entry}) == {"ok": True}
    r1.wait_master("10.0.0.60")
    entry["addresses"] = ["10.0.0.60/24", f"{VIP4}/24"]
    answer = r1.request({"command": "change", "name": "agent_1", "instance": entry})
    assert "is held by instance VI_1" in answer["error"]
    assert r1.holds("10.0.0.60") and r1.status()["agent_1"]["state"] == "MASTER"
    # A reload may not take a run-time instance's address either.
    log = reload_and_wait(r1, conf(200) + second(vip="10.0.0.60/24"), "reload refused")
    assert "address 10.0.0.60 on eth0 is held by instance agent_1" in log
    # Removing the run-time instance leaves VI_1's address where it is.
    assert r1.request({"command": "remove", "name": "agent_1"}) == {"ok": True}
    wait_until(lambda: not r1.holds("10.0.0.60"), 5, "agent_1's address to go")
    assert_still_master(r1)


def test_a_file_that_gives_one_address_to_two_instances_is_refused(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    log = reload_and_wait(r1, conf(200) + second(vip=f"{VIP4}/24"), "reload refused")
    assert f"instance VI_2: address {VIP4} on eth0 is held by instance VI_1" in log
    assert set(r1.status()) == {"VI_1"}
    assert_still_master(r1)


def test_reading_a_file_never_holds_up_the_adverts(lan, daemons) -> None:
    """A FIFO include is refused at once, and a file that takes seconds to parse is parsed
    while adverts keep flowing: the backup never takes over (two masters)."""
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r2 = daemons("vrrpd", lan, "r2", conf(100))
    r1.wait_master(VIP4)
    r2.wait_state("VI_1", "BACKUP")
    wait_until(lambda: r2.status()["VI_1"]["master"] == "10.0.0.1", 5, "r2 to know r1")
    backup_transitions = r2.status()["VI_1"]["transitions"]
    fifo = r1.workdir / "pipe.conf"
    os.mkfifo(fifo)
    log = reload_and_wait(r1, conf(200) + f"include {fifo}\n", "reload refused")
    assert "pipe.conf" in log.split("reload refused")[-1]
    big = r1.workdir / "big.conf"  # a few seconds of parsing
    big.write_text("".join(f"global_defs {{\n  router_id r{i}\n}}\n" for i in range(40000)))
    heard = r2.status()["VI_1"]["adverts_received"]
    reload_and_wait(r1, conf(200) + f"include {big}\n", "reloaded")
    assert r2.status()["VI_1"]["adverts_received"] > heard
    assert r2.status()["VI_1"]["transitions"] == backup_transitions
    assert_still_master(r1)


def test_an_address_moved_between_instances_by_a_reload_stays(lan, daemons) -> None:
    """VI_1 is changed first and takes 10.0.0.203; VI_2, changed after it, must not delete
    the address on its way out."""
    moving = "10.0.0.203/24"
    before = conf(200) + second(vip=f"{SECOND_VIP}/24\n    {moving}")
    r1 = daemons("vrrpd", lan, "r1", before)
    r1.wait_master(VIP4)
    r1.wait_master("10.0.0.203")
    after = conf(200, vip=f"{VIP4}/24\n    {moving}") + second()
    reload_and_wait(r1, after, "reloaded")
    assert r1.holds("10.0.0.203") and r1.holds(SECOND_VIP)
    assert_still_master(r1)


def test_a_stop_during_a_reload_stops_cleanly(lan, daemons) -> None:
    """SIGTERM while a reload is being read: the reload is dropped, the master hands over
    and removes its address, and the daemon exits 0 without a traceback."""
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    big = r1.workdir / "big.conf"
    big.write_text("".join(f"global_defs {{\n  router_id r{i}\n}}\n" for i in range(40000)))
    r1.reload(conf(200) + second() + f"include {big}\n")
    r1.stop()
    assert r1.proc is not None and r1.proc.returncode == 0
    assert not r1.holds(VIP4) and not r1.holds(SECOND_VIP)
    assert "Traceback" not in r1.log() and "reloaded" not in r1.log()
    assert not r1.control.exists()
