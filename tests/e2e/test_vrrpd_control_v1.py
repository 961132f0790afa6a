"""hanet vrrpd's control socket, version 1, as an agent drives it for Neutron HA routers."""

from __future__ import annotations

import json
import socket
import subprocess
from typing import Any

from hanet.lab.daemons import HanetVrrpd, wait_until
from hanet.lab.lab import Lab
from tests.e2e.test_vrrpd import conf
from tests.netns.helpers import VIP4


def v1(command: str, **fields: Any) -> dict[str, Any]:
    return {"command": command, "version": 1, **fields}


def router(vrid: int, priority: int, vip: str, **extra: Any) -> dict[str, Any]:
    return {"interface": "eth0", "vrid": vrid, "priority": priority, "addresses": [vip],
            "advert_int": 0.1, "garp_refresh_delay": 0, **extra}  # fmt: skip


def ip(lab: Lab, host: str, *argv: str) -> str:
    return lab.run(host, ["ip", *argv]).stdout


def test_an_excluded_address_and_a_route_on_a_second_device_follow_mastership(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    # A veth pair stands for Neutron's qg- port (this kernel may have no dummy links).
    ip(lan, "r1", "link", "add", "qg-1", "type", "veth", "peer", "name", "qg-1p")
    ip(lan, "r1", "link", "set", "qg-1p", "up")
    ip(lan, "r1", "link", "set", "qg-1", "up")
    entry = router(60, 150, "10.0.0.60/24")
    entry["addresses"].append({"address": "203.0.113.10/24", "dev": "qg-1", "advertised": False})
    entry["routes"] = [{"to": "198.51.100.0/24", "dev": "qg-1", "src": "203.0.113.10"}]
    assert r1.request(v1("add", name="qrouter_1", instance=entry)) == {"ok": True}
    r1.wait_master("10.0.0.60")
    wait_until(lambda: "203.0.113.10/24" in ip(lan, "r1", "-o", "addr", "show", "dev", "qg-1"),
               5, "the excluded address on qg-1")  # fmt: skip
    route = ip(lan, "r1", "route", "show", "198.51.100.0/24")
    assert "dev qg-1" in route and "src 203.0.113.10" in route, route
    state = r1.status()["qrouter_1"]
    assert state["state"] == "MASTER" and state["source"] == "control" and not state["held"]
    assert r1.request(v1("remove", name="qrouter_1")) == {"ok": True}
    wait_until(lambda: "203.0.113.10" not in ip(lan, "r1", "-o", "addr", "show", "dev", "qg-1"),
               5, "the excluded address gone")  # fmt: skip
    assert ip(lan, "r1", "route", "show", "198.51.100.0/24").strip() == ""


def test_sync_applies_the_difference_and_refuses_a_bad_set_whole(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    a, b = router(61, 150, "10.0.0.61/24"), router(62, 150, "10.0.0.62/24")
    answer = r1.request(v1("sync", instances={"a": a, "b": b}))
    assert answer == {"ok": True, "added": ["a", "b"], "changed": [], "removed": []}
    r1.wait_master("10.0.0.61")
    r1.wait_master("10.0.0.62")
    transitions = r1.status()["a"]["transitions"]
    a2 = {**a, "priority": 140, "addresses": ["10.0.0.71/24"]}
    c = router(63, 150, "10.0.0.63/24")
    answer = r1.request(v1("sync", instances={"a": a2, "c": c}))
    assert answer == {"ok": True, "added": ["c"], "changed": ["a"], "removed": ["b"]}
    r1.wait_master("10.0.0.71")
    r1.wait_master("10.0.0.63")
    r1.wait_backup("10.0.0.62")
    assert not r1.holds("10.0.0.61")
    status = r1.status()
    assert set(status) == {"VI_1", "a", "c"}
    # Changed in place: still the same master, with the new priority.
    assert status["a"]["transitions"] == transitions and status["a"]["priority"] == 140
    # A bad set is refused whole. First by the schema, naming the place...
    bad = {"a": a, "c": c, "d": {**router(64, 150, "10.0.0.64/24"),
                                 "routes": [{"to": "192.0.2.0/24", "via": "fd00::1"}]}}  # fmt: skip
    answer = r1.request(v1("sync", instances=bad))
    assert answer["ok"] is False
    assert answer["error"].startswith("instances.d.routes[0].via: fd00::1 is not of the family")
    # ...then by what only the running system can tell (an interface that is not there).
    late = {"a": a, "c": c, "e": router(65, 150, "10.0.0.65/24", interface="nosuch0")}
    answer = r1.request(v1("sync", instances=late))
    assert answer["ok"] is False and "nosuch0" in answer["error"]
    # A file instance is never the business of sync.
    answer = r1.request(v1("sync", instances={"VI_1": a}))
    assert answer["ok"] is False and "VI_1: a file instance" in answer["error"]
    status = r1.status()
    assert set(status) == {"VI_1", "a", "c"} and status["a"]["priority"] == 140
    assert r1.holds("10.0.0.71") and r1.holds("10.0.0.63") and not r1.holds("10.0.0.61")
    # keep: a running instance the set leaves out runs on as it is (a restarted agent that
    # cannot describe it anew); a kept name that is not running is nothing.
    answer = r1.request(v1("sync", instances={"c": c}, keep=["a", "zz"]))
    assert answer == {"ok": True, "added": [], "changed": [], "removed": []}
    assert r1.status()["a"]["priority"] == 140 and r1.holds("10.0.0.71")
    answer = r1.request(v1("sync", instances={"c": c}, keep=["c"]))
    assert answer["ok"] is False and answer["error"] == "keep[0]: c is in 'instances' too"
    assert r1.request(v1("sync", instances={})) == {
        "ok": True, "added": [], "changed": [], "removed": ["a", "c"],
    }  # fmt: skip
    assert set(r1.status()) == {"VI_1"} and r1.holds(VIP4)
    assert "Traceback" not in r1.log()


def test_hold_backup_hands_over_and_holds_until_released(lan, daemons) -> None:
    vip = "10.0.0.70"
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r2 = daemons("vrrpd", lan, "r2", conf(100))
    r1.wait_master(VIP4)
    r2.wait_state("VI_1", "BACKUP")
    for daemon, priority in ((r1, 200), (r2, 100)):
        entry = router(70, priority, f"{vip}/24")
        assert daemon.request(v1("add", name="router", instance=entry)) == {"ok": True}
    r1.wait_master(vip)
    r2.wait_state("router", "BACKUP")
    answer = r1.request(v1("hold_backup", name="router", reason="server: forced_standby"))
    assert answer == {"ok": True}
    r2.wait_master(vip)
    r1.wait_backup(vip)
    state = r1.status()["router"]
    assert state["state"] == "BACKUP" and state["held"] is True
    assert state["hold_reason"] == "server: forced_standby"
    # r1 outranks r2 and preempts, yet stays BACKUP while held: wait for 40 of r2's adverts
    # (4 s at 0.1 s, more than ten of r1's Master_Down_Intervals).
    heard = state["adverts_received"]
    wait_until(lambda: r1.status()["router"]["adverts_received"] >= heard + 40, 20,
               "r1 to hear 40 adverts from r2")  # fmt: skip
    state = r1.status()["router"]
    assert state["state"] == "BACKUP" and state["transitions"] == 3  # INIT, MASTER, BACKUP
    assert r2.holds(vip) and not r1.holds(vip)
    assert r1.request(v1("release", name="router")) == {"ok": True}
    r1.wait_master(vip)
    r2.wait_backup(vip)
    assert r1.status()["router"]["held"] is False
    assert "held in BACKUP (server: forced_standby)" in r1.log()
    answer = r1.request(v1("hold_backup", name="nosuch"))
    assert answer == {"ok": False, "error": "no instance nosuch"}


def test_a_tracked_interface_down_in_the_instances_namespace_is_fault(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    netns = f"{lan.prefix}-qrouter1"  # under the lab's prefix: removed with the lab
    subprocess.run(["ip", "netns", "add", netns], check=True)
    for command in (
        "link add ha-1 type veth peer name ha-1p", "link add qg-1 type veth peer name qg-1p",
        "addr add 169.254.192.1/18 dev ha-1", "link set ha-1p up", "link set qg-1p up",
        "link set ha-1 up", "link set qg-1 up",
    ):  # fmt: skip
        subprocess.run(["ip", "-n", netns, *command.split()], check=True)
    entry = {
        "interface": "ha-1", "vrid": 1, "priority": 50, "netns": netns, "advert_int": 0.1,
        "addresses": ["169.254.0.1/24",
                      {"address": "203.0.113.11/24", "dev": "qg-1", "advertised": False}],
        "track_interfaces": ["qg-1"],
    }  # fmt: skip

    def addresses() -> str:
        return subprocess.run(["ip", "-n", netns, "-o", "addr", "show"], check=True,
                              capture_output=True, text=True).stdout  # fmt: skip

    assert r1.request(v1("add", name="qrouter1", instance=entry)) == {"ok": True}
    r1.wait_state("qrouter1", "MASTER")
    wait_until(lambda: "203.0.113.11/24" in addresses(), 5, "the gateway address in place")
    subprocess.run(["ip", "-n", netns, "link", "set", "qg-1", "down"], check=True)
    r1.wait_state("qrouter1", "FAULT")
    state = r1.status()["qrouter1"]
    assert state["fault"] == "interface qg-1 is down"
    wait_until(lambda: "203.0.113.11" not in addresses(), 5, "the gateway address removed")
    subprocess.run(["ip", "-n", netns, "link", "set", "qg-1", "up"], check=True)
    r1.wait_state("qrouter1", "MASTER")
    # The VRRP interface itself is tracked too, as keepalived does.
    subprocess.run(["ip", "-n", netns, "link", "set", "ha-1", "down"], check=True)
    r1.wait_state("qrouter1", "FAULT")
    assert r1.status()["qrouter1"]["fault"] == "interface ha-1 is down"
    assert r1.status()["VI_1"]["state"] == "MASTER"  # the daemon's own namespace: untouched


def read_line(stream: Any) -> dict[str, Any]:
    line = stream.readline()
    assert line, "the daemon closed the stream"
    message: dict[str, Any] = json.loads(line)
    return message


def test_subscribe_starts_with_a_snapshot(lan, daemons) -> None:
    r1: HanetVrrpd = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    assert r1.request(v1("add", name="held", instance=router(66, 150, "10.0.0.66/24")))["ok"]
    r1.wait_master("10.0.0.66")
    assert r1.request(v1("hold_backup", name="held", reason="wiring"))["ok"]
    r1.wait_backup("10.0.0.66")
    seq = r1.request({"command": "status"})["control"]["seq"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(r1.control))
        sock.sendall(json.dumps(v1("subscribe")).encode() + b"\n")
        stream = sock.makefile("r")
        assert read_line(stream) == {"ok": True}
        snapshot = read_line(stream)
        assert snapshot["event"] == "snapshot" and snapshot["seq"] == seq
        by_name = {i["instance"]: i for i in snapshot["instances"]}
        assert by_name["VI_1"]["state"] == "MASTER" and by_name["VI_1"]["source"] == "file"
        assert by_name["held"]["state"] == "BACKUP" and by_name["held"]["held"] is True
        assert by_name["held"]["hold_reason"] == "wiring"
        assert r1.request(v1("release", name="held"))["ok"]
        event = read_line(stream)
        assert event["event"] == "state" and event["instance"] == "held"
        assert event["new"] == "MASTER" and event["seq"] == seq + 1


EMPTY = "global_defs {\n}\n"


def test_vrid_filter_drops_other_routers_adverts_in_the_kernel(lan, daemons) -> None:
    """A Neutron HA network carries every router's adverts to every router namespace: with
    vrid_filter the kernel passes only the instance's own VRID, so vrrpd never reads the
    others (they are no longer counted as vrid_not_ours); its own master is still heard."""
    r1 = daemons("vrrpd", lan, "r1", EMPTY)
    r2 = daemons("vrrpd", lan, "r2", EMPTY)
    r3 = daemons("vrrpd", lan, "r3", EMPTY)
    for daemon in (r1, r2, r3):
        wait_until(lambda d=daemon: d.request({"command": "status"}).get("ok"), 20, "vrrpd")
    ours = router(70, 200, "10.0.0.70/24", vrid_filter=True)
    assert r1.request(v1("add", name="a", instance=ours)) == {"ok": True}
    entry = router(70, 100, "10.0.0.70/24", vrid_filter=True)
    assert r2.request(v1("add", name="a", instance=entry)) == {"ok": True}
    other = router(71, 100, "10.0.0.71/24")
    assert r3.request(v1("add", name="b", instance=other)) == {"ok": True}
    r1.wait_master("10.0.0.70")
    r3.wait_master("10.0.0.71")
    r2.wait_state("a", "BACKUP")

    def drops() -> int:
        return int(r2.status()["a"]["drops"].get("vrid_not_ours", 0))

    heard = r2.status()["a"]["adverts_received"]
    wait_until(lambda: r2.status()["a"]["adverts_received"] >= heard + 20, 20,
               "r2 to hear 20 of r1's adverts")  # fmt: skip
    assert drops() == 0  # r3's adverts (VRID 71) never reached vrrpd
    # Without the filter (changed in place), the same adverts are read and counted.
    entry = router(70, 100, "10.0.0.70/24", vrid_filter=False)
    assert r2.request(v1("change", name="a", instance=entry)) == {"ok": True}
    wait_until(lambda: drops() >= 10, 20, "r2 to count r3's adverts as vrid_not_ours")
    assert r2.status()["a"]["state"] == "BACKUP"
