"""hanet vrrpd running keepalived.conf files in lab hosts."""

from __future__ import annotations

import pytest

from hanet.lab.daemons import wait_until
from tests.netns.helpers import VIP4, wait_client_uses


def conf(
    priority: int,
    *,
    vrid: int = 51,
    vip: str = f"{VIP4}/24",
    extra: str = "",
    name: str = "VI_1",
    advert: str = "0.1",
    top: str = "",
) -> str:
    return (
        f"global_defs {{\n  vrrp_version 3\n}}\n{top}"
        f"vrrp_instance {name} {{\n  state BACKUP\n  interface eth0\n"
        f"  virtual_router_id {vrid}\n  priority {priority}\n  advert_int {advert}\n"
        f"  virtual_ipaddress {{\n    {vip}\n  }}\n{extra}}}\n"
    )


def test_vrrpd_elects_and_fails_over(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r2 = daemons("vrrpd", lan, "r2", conf(100))
    r1.wait_master(VIP4)
    r2.wait_state("VI_1", "BACKUP")
    wait_until(lambda: r2.status()["VI_1"]["master"] == "10.0.0.1", 5, "r2 to know r1")
    lan.crash("r1")
    r2.wait_master(VIP4)
    wait_client_uses(lan, VIP4, "r2")


def test_reload_keeps_mastership_adds_and_removes(lan, daemons) -> None:
    """SIGHUP: unchanged instances keep state (no VIP flap), new ones start, removed ones
    stop with priority 0 so the peer takes over at once."""
    second = conf(200, vrid=52, vip="10.0.0.202/24", name="VI_2").split("}\n", 1)[1]
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r2 = daemons(
        "vrrpd",
        lan,
        "r2",
        conf(100) + conf(100, vrid=52, vip="10.0.0.202/24", name="VI_2").split("}\n", 1)[1],
    )
    r1.wait_master(VIP4)
    r2.wait_master("10.0.0.202")
    r1.reload(conf(200) + second)
    r1.wait_master("10.0.0.202")
    r2.wait_backup("10.0.0.202")
    assert r1.status()["VI_1"]["transitions"] == 2  # INITIALIZE -> BACKUP -> MASTER only
    before = r2.status()["VI_2"]["transitions"]
    r1.reload(conf(200))  # VI_2 removed: priority 0, r2 takes over after Skew_Time
    r2.wait_master("10.0.0.202")
    assert not r1.holds("10.0.0.202")
    assert r1.holds(VIP4) and r1.status()["VI_1"]["transitions"] == 2
    assert r2.status()["VI_2"]["transitions"] == before + 1


def test_reload_with_a_bad_file_changes_nothing(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    r1.reload(conf(200) + "vrrp_instance broken {\n  priorty 1\n}\n")
    wait_until(lambda: "reload refused" in r1.log(), 5, "the refusal in the log")
    assert "did you mean 'priority'" in r1.log()
    assert r1.holds(VIP4) and r1.status()["VI_1"]["state"] == "MASTER"
    assert r1.proc is not None and r1.proc.poll() is None


def test_control_socket_manages_instances_and_survives_bad_requests(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    entry = {
        "interface": "eth0",
        "vrid": 60,
        "priority": 150,
        "addresses": ["10.0.0.60/24"],
        "advert_int": 0.1,
    }
    assert r1.request({"command": "add", "name": "agent_1", "instance": entry}) == {"ok": True}
    r1.wait_master("10.0.0.60")
    assert r1.status()["agent_1"]["source"] == "control"
    entry["addresses"] = ["10.0.0.61/24"]
    assert r1.request({"command": "change", "name": "agent_1", "instance": entry})["ok"]
    r1.wait_master("10.0.0.61")
    assert not r1.holds("10.0.0.60")
    assert r1.status()["agent_1"]["transitions"] == 2  # changed in place, still master
    entry["priority"] = 120
    assert r1.request({"command": "change", "name": "agent_1", "instance": entry})["ok"]
    wait_until(lambda: r1.status()["agent_1"]["priority"] == 120, 5, "the new priority")
    for bad in (
        {"command": "launch"},
        {"command": "add", "name": "x"},
        {"name": 1},
        {"command": "add", "name": "y", "instance": {"vrid": "one"}},
        {"command": "remove", "name": "VI_1"},
    ):
        answer = r1.request(bad)
        assert answer["ok"] is False and answer["error"], bad
    assert r1.request({"command": "remove", "name": "agent_1"}) == {"ok": True}
    r1.wait_backup("10.0.0.61")
    assert r1.holds(VIP4) and r1.proc is not None and r1.proc.poll() is None


@pytest.mark.parametrize("peer", ["vrrpd", "keepalived"])
def test_track_script_weight_moves_mastership(lan, daemons, tmp_path, peer: str) -> None:
    flag = tmp_path / "healthy"
    flag.write_text("")
    script = (
        f'vrrp_script chk {{\n  script "/usr/bin/test -f {flag}"\n  interval 0.2\n'
        "  weight -60\n  fall 1\n  rise 1\n}\n"
    )
    track = "  track_script {\n    chk\n  }\n"
    r1 = daemons("vrrpd", lan, "r1", conf(150, extra=track, top=script))
    r2 = daemons(peer, lan, "r2", conf(120))
    r1.wait_master(VIP4)
    flag.unlink()  # 150 - 60 = 90 < 120: r2 preempts
    r2.wait_master(VIP4)
    wait_until(lambda: r1.status()["VI_1"]["priority"] == 90, 5, "r1's effective priority")
    flag.write_text("")
    r1.wait_master(VIP4)


def test_track_script_without_weight_means_fault(lan, daemons, tmp_path) -> None:
    flag = tmp_path / "healthy"
    flag.write_text("")
    script = (
        f'vrrp_script chk {{\n  script "/usr/bin/test -f {flag}"\n  interval 0.2\n'
        "  fall 2\n  rise 2\n}\n"
    )
    track = "  track_script {\n    chk\n  }\n"
    r1 = daemons("vrrpd", lan, "r1", conf(150, extra=track, top=script))
    r2 = daemons("vrrpd", lan, "r2", conf(120))
    r1.wait_master(VIP4)
    flag.unlink()
    r1.wait_state("VI_1", "FAULT")
    r2.wait_master(VIP4)
    assert "chk" in (r1.status()["VI_1"]["fault"] or "")
    flag.write_text("")
    r1.wait_master(VIP4)


def test_notify_scripts_get_keepalived_arguments(lan, daemons, tmp_path) -> None:
    log_file = tmp_path / "notify.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$@" >> {log_file}\n')
    hook.chmod(0o755)
    extra = f'  notify "{hook}"\n  notify_master "{hook} master-only"\n'
    r1 = daemons("vrrpd", lan, "r1", conf(200, extra=extra))
    r1.wait_master(VIP4)
    wait_until(
        lambda: log_file.exists() and "INSTANCE VI_1 MASTER 200" in log_file.read_text(),
        5,
        "the notify hook",
    )
    wait_until(lambda: "master-only" in log_file.read_text(), 5, "notify_master")
    r1.stop()
    assert "INSTANCE VI_1 STOP 200" in log_file.read_text()


def two_lan_lab(make_lab):  # type: ignore[no-untyped-def]
    """r1, r2 and c on two LANs: eth0 on 10.0.0.0/24, eth1 on 10.2.0.0/24."""
    import ipaddress as ip

    from hanet.lab.topology import Host, Link, Topology

    def host(n: int) -> Host:
        return Host(
            {
                "eth0": Link("lan", (ip.ip_interface(f"10.0.0.{n}/24"),)),
                "eth1": Link("lan2", (ip.ip_interface(f"10.2.0.{n}/24"),)),
            }
        )

    return make_lab(Topology(("lan", "lan2"), {"r1": host(1), "r2": host(2), "c": host(101)}))


def group_conf(priority: int, priority_b: int | None = None) -> str:
    priority_b = priority if priority_b is None else priority_b
    return (
        "global_defs {\n  vrrp_version 3\n}\n"
        "vrrp_sync_group G {\n  group {\n    A\n    B\n  }\n}\n"
        f"vrrp_instance A {{\n  interface eth0\n  virtual_router_id 1\n  priority {priority}\n"
        "  advert_int 0.1\n  virtual_ipaddress {\n    10.0.0.200/24\n  }\n}\n"
        f"vrrp_instance B {{\n  interface eth1\n  virtual_router_id 2\n  priority {priority_b}\n"
        "  advert_int 0.1\n  virtual_ipaddress {\n    10.2.0.200/24\n  }\n}\n"
    )


@pytest.mark.parametrize("peer", ["vrrpd", "keepalived"])
def test_sync_group_moves_together(make_lab, daemons, peer: str) -> None:
    lab = two_lan_lab(make_lab)
    r1 = daemons("vrrpd", lab, "r1", group_conf(200))
    r2 = daemons(peer, lab, "r2", group_conf(100))
    r1.wait_master("10.0.0.200")
    r1.wait_master("10.2.0.200")
    lab.cut("r1", "eth1")  # B's link fails on r1: the whole group moves to r2
    r2.wait_master("10.2.0.200")
    r2.wait_master("10.0.0.200")
    r1.wait_backup("10.0.0.200")


def test_sync_groups_with_crossed_priorities_settle(make_lab, daemons) -> None:
    """r1 outranks in A, r2 in B: one node ends up master of both and stays so, since the
    member outranked there holds the other node's group in BACKUP (keepalived's rule)."""
    lab = two_lan_lab(make_lab)
    r1 = daemons("vrrpd", lab, "r1", group_conf(200, 100))
    r2 = daemons("vrrpd", lab, "r2", group_conf(100, 200))

    def master_node():  # type: ignore[no-untyped-def]
        s1, s2 = r1.status(), r2.status()
        for node, own, other in ((r1, s1, s2), (r2, s2, s1)):
            if all(own.get(i, {}).get("state") == "MASTER" for i in "AB") and all(
                other.get(i, {}).get("state") == "BACKUP" for i in "AB"
            ):
                return node
        return None

    master = wait_until(master_node, 15, "one node to be master of the whole group")
    backup = r2 if master is r1 else r1
    before = {name: (backup.status()[name], master.status()[name]) for name in "AB"}
    heard = before["A"][0]["adverts_received"]
    # Thirty adverts later (3 s at 0.1 s), nobody has moved.
    wait_until(lambda: backup.status()["A"]["adverts_received"] >= heard + 30, 15,
               "thirty more adverts on the backup")  # fmt: skip
    for name in "AB":
        assert backup.status()[name]["transitions"] == before[name][0]["transitions"]
        assert master.status()[name]["transitions"] == before[name][1]["transitions"]
    assert master.holds("10.0.0.200") and master.holds("10.2.0.200")


def test_a_member_added_to_a_master_group_joins_it_without_demoting_it(make_lab, daemons) -> None:
    lab = two_lan_lab(make_lab)
    both = group_conf(200)
    alone = both.replace("    A\n    B\n", "    A\n").split("vrrp_instance B")[0]
    r1 = daemons("vrrpd", lab, "r1", alone)
    r1.wait_master("10.0.0.200")
    transitions = r1.status()["A"]["transitions"]
    before = r1.log().count("reloaded")
    r1.reload(both)
    wait_until(lambda: r1.log().count("reloaded") > before, 30, "the reload")
    r1.wait_master("10.2.0.200")  # B joins the master group once its timer says so
    assert r1.status()["A"]["transitions"] == transitions and r1.holds("10.0.0.200")


def test_default_paths_never_collide_and_a_second_daemon_refuses(lan) -> None:
    from hanet.lab.daemons import HanetVrrpd

    first = HanetVrrpd(lan, "r1").start(conf(200), default_paths=True)
    other = HanetVrrpd(lan, "r2").start(conf(100), default_paths=True)
    second = None
    try:
        first.wait_master(VIP4)
        wait_until(lambda: other.status_at_default(), 5, "r2's daemon on its own paths")
        second = HanetVrrpd(lan, "r1").start(
            conf(100, vrid=70, vip="10.0.0.70/24"), default_paths=True
        )
        assert second.proc is not None and second.proc.wait(timeout=10) == 1
        assert "another hanet vrrpd uses this path" in second.log()
        assert other.proc is not None and other.proc.poll() is None
    finally:
        for daemon in (first, other, second):
            if daemon is not None:
                daemon.stop()
                daemon.cleanup()


@pytest.mark.parametrize("good", [True, False])
def test_check_mode(tmp_path, good: bool) -> None:
    import subprocess

    from hanet.lab.daemons import hanet_command

    path = tmp_path / "keepalived.conf"
    path.write_text(conf(100) if good else conf(100).replace("priority", "priorty"))
    result = subprocess.run(
        [*hanet_command(), "vrrpd", "--check", "-f", str(path)], capture_output=True, text=True
    )
    assert result.returncode == (0 if good else 1)
    if not good:
        assert f"{path}:8:3: unknown keyword 'priorty'" in result.stderr


UNICAST = """  unicast_src_ip {me}
  unicast_peer {{
    {peer}
  }}
"""


@pytest.mark.parametrize("peer_kind", ["vrrpd", "keepalived"])
def test_unicast_mode(lan, daemons, peer_kind: str) -> None:
    """unicast_src_ip / unicast_peer: no multicast at all; a third router not listed as a
    peer is ignored and counted."""
    r1 = daemons(
        "vrrpd", lan, "r1", conf(200, extra=UNICAST.format(me="10.0.0.1", peer="10.0.0.2"))
    )
    r2 = daemons(
        peer_kind, lan, "r2", conf(100, extra=UNICAST.format(me="10.0.0.2", peer="10.0.0.1"))
    )
    r3 = daemons(
        "vrrpd", lan, "r3", conf(250, extra=UNICAST.format(me="10.0.0.3", peer="10.0.0.1"))
    )
    wait_until(
        lambda: r1.status().get("VI_1", {}).get("drops", {}).get("not_a_peer", 0) > 3,
        10,
        "r1 to ignore r3",
    )
    r1.wait_master(VIP4)
    if peer_kind == "vrrpd":
        wait_until(lambda: r2.status()["VI_1"].get("master") == "10.0.0.1", 5, "r2 follows")
    lan.crash("r1")
    r2.wait_master(VIP4)
    assert r3.holds(VIP4)  # r3 hears nobody it may listen to: it is master of its own


def test_prometheus_metrics(lan) -> None:
    import sys

    from hanet.lab.daemons import HanetVrrpd

    daemon = HanetVrrpd(lan, "r1").start(conf(200), extra=["--metrics", "127.0.0.1:9650"])
    try:
        daemon.wait_master(VIP4)
        fetch = (
            "import urllib.request as u;"
            "print(u.urlopen('http://127.0.0.1:9650/metrics', timeout=5).read().decode())"
        )
        body = lan.run("r1", [sys.executable, "-c", fetch]).stdout
        assert 'hanet_vrrp_state{instance="VI_1"} 2.0' in body
        assert 'hanet_vrrp_priority{instance="VI_1"} 200.0' in body
        assert "hanet_vrrp_adverts_sent_total" in body
    finally:
        daemon.stop()
        daemon.cleanup()


def test_status_command(lan, daemons) -> None:
    import json

    from hanet.lab.daemons import hanet_command

    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    args = ["vrrp", "status", "--control-socket", str(r1.control)]
    table = lan.run("r1", [*hanet_command(), *args]).stdout
    assert "VI_1" in table and "MASTER" in table and "200 (base 200)" in table
    data = json.loads(lan.run("r1", [*hanet_command(), *args, "--json"]).stdout)
    assert data["ok"] and data["instances"][0]["state"] == "MASTER"
    missing = lan.run("r1", [*hanet_command(), "vrrp", "status", "--control-socket",
                             "/nonexistent.sock"], check=False)  # fmt: skip
    assert missing.returncode == 1 and "no answer from /nonexistent.sock" in missing.stderr


def test_enable_script_security_refuses_a_writable_script(lan, daemons, tmp_path) -> None:
    check = tmp_path / "check.sh"
    check.write_text("#!/bin/sh\nexit 0\n")
    check.chmod(0o777)
    top = (
        f"global_defs {{\n  enable_script_security\n}}\nvrrp_script chk {{\n"
        f'  script "{check}"\n  interval 0.2\n}}\n'
    )
    r1 = daemons(
        "vrrpd",
        lan,
        "r1",
        conf(200, top=top, extra="  track_script {\n    chk\n  }\n")
        .replace("global_defs {\n  vrrp_version 3\n}\n", "", 1)
        .replace("vrrp_instance", "global_defs {\n  vrrp_version 3\n}\nvrrp_instance"),
    )
    r1.wait_state("VI_1", "FAULT")
    assert "writable by a non-root user" in r1.log()


def test_subscribe_streams_state_changes(lan, daemons) -> None:
    import json
    import socket

    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(r1.control))
        sock.sendall(b'{"command": "subscribe"}\n')
        stream = sock.makefile("r")
        assert json.loads(stream.readline()) == {"ok": True}
        entry = {"interface": "eth0", "vrid": 61, "priority": 150,
                 "addresses": ["10.0.0.61/24"], "advert_int": 0.1}  # fmt: skip
        assert r1.request({"command": "add", "name": "watched", "instance": entry})["ok"]
        events = [json.loads(stream.readline()) for _ in range(2)]
    assert [(e["instance"], e["old"], e["new"]) for e in events] == [
        ("watched", "INITIALIZE", "BACKUP"), ("watched", "BACKUP", "MASTER"),
    ]  # fmt: skip


def test_track_file_weight_and_track_interface_weight(make_lab, daemons, tmp_path) -> None:
    """track_file: the file's number times its weight moves the priority; track_interface
    with a weight: a down interface subtracts it (keepalived.conf(5))."""
    lab = two_lan_lab(make_lab)
    state = tmp_path / "state"
    top = f"track_file health {{\n  file {state}\n  weight -10\n  init_file 0 overwrite\n}}\n"
    extra = ("  track_file {\n    health\n  }\n"
             "  track_interface {\n    eth1 weight -50\n  }\n")  # fmt: skip
    r1 = daemons("vrrpd", lab, "r1", conf(200, extra=extra, top=top))
    r2 = daemons("vrrpd", lab, "r2", conf(160))
    r1.wait_master(VIP4)
    assert state.read_text().strip() == "0"
    state.write_text("3\n")  # 200 - 30 = 170: still above r2
    wait_until(lambda: r1.status()["VI_1"]["priority"] == 170, 5, "the file's weight")
    assert r1.holds(VIP4)
    lab.cut("r1", "eth1")  # 170 - 50 = 120 < 160: r2 preempts
    r2.wait_master(VIP4)
    assert r1.status()["VI_1"]["priority"] == 120
    lab.restore("r1", "eth1")
    state.write_text("0\n")
    r1.wait_master(VIP4)


def test_virtual_rules_and_blackhole_routes_follow_mastership(lan, daemons) -> None:
    extra = ("  virtual_rules {\n    from 10.9.0.0/16 table 100 priority 1000\n  }\n"
             "  virtual_routes {\n    blackhole 10.66.0.0/16\n"
             "    10.9.0.0/16 via 10.0.0.254 table 100\n  }\n")  # fmt: skip
    r1 = daemons("vrrpd", lan, "r1", conf(200, extra=extra))
    r2 = daemons("vrrpd", lan, "r2", conf(100, extra=extra))

    def installed(host: str) -> bool:
        rules = lan.run(host, ["ip", "rule"]).stdout
        routes = lan.run(host, ["ip", "route", "show", "table", "all"]).stdout
        return ("1000:\tfrom 10.9.0.0/16 lookup 100" in rules
                and "blackhole 10.66.0.0/16" in routes
                and "10.9.0.0/16 via 10.0.0.254 dev eth0 table 100" in routes)  # fmt: skip

    r1.wait_master(VIP4)
    wait_until(lambda: installed("r1"), 5, "r1's rules and routes")
    assert not installed("r2")
    r1.stop()
    r2.wait_master(VIP4)
    wait_until(lambda: installed("r2"), 5, "r2's rules and routes")
    assert not installed("r1")


def test_startup_delay(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200).replace(
        "vrrp_version 3\n", "vrrp_version 3\n  vrrp_startup_delay 1\n"))  # fmt: skip
    wait_until(lambda: "vrrp_startup_delay: waiting" in r1.log(), 5, "the delay")
    assert not r1.holds(VIP4)
    r1.wait_master(VIP4)
