"""hanet vrrpd's control socket and namespaces, as an operator or an agent meets them."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
from pathlib import Path

from hanet.lab.daemons import HanetVrrpd, wait_until
from tests.e2e.test_vrrpd import conf
from tests.netns.helpers import VIP4


def test_add_into_a_missing_namespace_is_refused_and_creates_nothing(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    missing = f"{lan.prefix}-nosuch"
    leftover = Path("/run/netns") / missing
    entry = {"interface": "eth0", "vrid": 60, "priority": 150,
             "addresses": ["10.0.0.60/24"], "netns": missing}  # fmt: skip
    try:
        answer = r1.request({"command": "add", "name": "agent_1", "instance": entry})
        assert answer["ok"] is False
        assert f"network namespace '{missing}' does not exist" in answer["error"]
        assert not leftover.exists()
        assert "agent_1" not in r1.status() and r1.holds(VIP4)
        assert "Traceback" not in r1.log()
    finally:
        if leftover.exists():  # what the old code left behind
            subprocess.run(["ip", "netns", "delete", missing], check=False)


def test_a_file_at_the_control_socket_path_is_kept_and_the_daemon_refuses(lan) -> None:
    daemon = HanetVrrpd(lan, "r1")
    path = daemon.workdir / "control.sock"  # where start() puts the control socket
    path.write_text("not a socket\n")
    try:
        daemon.start(conf(200))
        assert daemon.proc is not None
        wait_until(lambda: daemon.proc.poll() is not None, 10, "the daemon to refuse")
        assert daemon.proc.returncode == 1
        assert f"control socket {path}: a regular file is in the way" in daemon.log()
        assert path.read_text() == "not a socket\n"
        assert not daemon.holds(VIP4)
    finally:
        daemon.cleanup()


def test_a_stale_socket_is_replaced(lan) -> None:
    daemon = HanetVrrpd(lan, "r1")
    path = daemon.workdir / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(path))  # bound, then closed: what a killed daemon leaves
    try:
        daemon.start(conf(200))
        daemon.wait_master(VIP4)
        assert daemon.status()["VI_1"]["state"] == "MASTER"  # answered on the new socket
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        daemon.stop()
        daemon.cleanup()


def test_a_directory_the_daemon_creates_is_private(lan) -> None:
    daemon = HanetVrrpd(lan, "r1")
    run = daemon.workdir / "run" / "hanet"  # as /run/hanet on a fresh boot
    argv = ["--pid-file", str(run / "vrrpd.pid"), "--control-socket", str(run / "vrrpd.sock")]
    try:
        daemon.start(conf(200), default_paths=True, extra=argv)
        daemon.control = run / "vrrpd.sock"
        daemon.wait_state("VI_1", "MASTER")
        assert stat.S_IMODE(run.stat().st_mode) == 0o700
        assert stat.S_IMODE(daemon.control.stat().st_mode) == 0o600
    finally:
        daemon.stop()
        daemon.cleanup()


def test_subscriber_hang_up_is_a_clean_log_line_and_counted(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", conf(200))
    r1.wait_master(VIP4)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(r1.control))
        sock.sendall(b'{"command": "subscribe"}\n')
        assert json.loads(sock.makefile("r").readline()) == {"ok": True}
        control = r1.request({"command": "status"})["control"]
        assert control["subscribers"] == 1 and control["events_dropped"] == 0
    # Hung up. State changes after it must not fail on the closed connection.
    entry = {"interface": "eth0", "vrid": 61, "priority": 150,
             "addresses": ["10.0.0.61/24"], "advert_int": 0.1}  # fmt: skip
    assert r1.request({"command": "add", "name": "watched", "instance": entry})["ok"]
    r1.wait_master("10.0.0.61")
    wait_until(lambda: "control subscriber 1 left" in r1.log(), 5, "the hang-up in the log")
    assert r1.request({"command": "status"})["control"]["subscribers"] == 0
    log = r1.log()
    assert "Traceback" not in log and "ERROR" not in log, log
