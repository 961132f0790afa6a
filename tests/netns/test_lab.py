"""The lab itself: what it builds, its faults, and that it always cleans up."""

from __future__ import annotations

import subprocess

import pytest

from hanet.lab.lab import Lab, namespaces_with_prefix
from hanet.lab.topology import lan_topology


def test_up_builds_reachable_hosts_and_down_removes_everything(lab_prefix: str) -> None:
    lab = Lab(lan_topology(routers=2), lab_prefix).up()
    try:
        assert namespaces_with_prefix(lab_prefix) == sorted(
            f"{lab_prefix}-{h}" for h in ("r1", "r2", "c", "sw")
        )
        assert lab.run("c", ["ping", "-c1", "-W1", "10.0.0.1"]).returncode == 0
        assert lab.run("c", ["ping", "-c1", "-W1", "fd00::2"]).returncode == 0
        sleeper = lab.spawn("r1", ["sleep", "300"])
    finally:
        lab.down()
    assert namespaces_with_prefix(lab_prefix) == []
    assert sleeper.poll() is not None


def test_down_clears_what_a_crashed_run_left(lab_prefix: str) -> None:
    first = Lab(lan_topology(routers=1), lab_prefix).up()
    orphan = subprocess.Popen(["ip", "netns", "exec", first.ns("r1"), "sleep", "300"])
    # A new Lab object, as after a crash of the process that built the first one.
    again = Lab(lan_topology(routers=1), lab_prefix)
    again.down()
    assert namespaces_with_prefix(lab_prefix) == []
    assert orphan.wait(timeout=5) == -9


def test_cut_restore_and_crash(lab_prefix: str) -> None:
    with Lab(lan_topology(routers=1), lab_prefix) as lab:
        lab.cut("r1")
        assert lab.run("c", ["ping", "-c1", "-W1", "10.0.0.1"], check=False).returncode != 0
        lab.restore("r1")
        assert lab.run("c", ["ping", "-c2", "-W2", "10.0.0.1"], check=False).returncode == 0
        sleeper = lab.spawn("r1", ["sleep", "300"])
        lab.crash("r1")
        assert sleeper.wait(timeout=5) == -9
        assert lab.run("c", ["ping", "-c1", "-W1", "10.0.0.1"], check=False).returncode != 0
    assert namespaces_with_prefix(lab_prefix) == []


def test_unknown_host_is_an_error(lab_prefix: str) -> None:
    with Lab(lan_topology(routers=1), lab_prefix) as lab, pytest.raises(KeyError):
        lab.run("nope", ["true"])


def test_cli_lab_up_and_down(tmp_path, lab_prefix: str) -> None:  # type: ignore[no-untyped-def]
    from hanet.lab.daemons import hanet_command

    path = tmp_path / "lab.yaml"
    path.write_text("segments: [lan]\nhosts:\n  a:\n    interfaces:\n"
                    "      eth0: {segment: lan, addresses: [10.1.0.1/24]}\n")  # fmt: skip
    try:
        up = subprocess.run([*hanet_command(), "lab", "up", str(path), "--prefix", lab_prefix],
                            capture_output=True, text=True, check=True)  # fmt: skip
        assert f"{lab_prefix}-a" in up.stdout
        assert f"{lab_prefix}-a" in namespaces_with_prefix(lab_prefix)
    finally:
        subprocess.run([*hanet_command(), "lab", "down", str(path), "--prefix", lab_prefix],
                       check=True)  # fmt: skip
    assert namespaces_with_prefix(lab_prefix) == []


def test_cli_lab_reports_bad_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hanet.lab.daemons import hanet_command

    path = tmp_path / "lab.yaml"
    path.write_text("segments: [lan]\nhosts:\n  a:\n    interfaces:\n      eth0: {segment: wan}\n")
    result = subprocess.run([*hanet_command(), "lab", "up", str(path)], capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 1
    assert "hosts.a.interfaces.eth0.segment: unknown segment 'wan'" in result.stderr


def test_netlink_sockets_land_in_the_namespace_asked_for(lab_prefix: str) -> None:
    """Guards against acting on the host: a regression once put the socket in the caller's
    namespace (pyroute2 makes it lazily)."""
    import asyncio
    import socket

    from hanet.linux.addresses import interface_facts
    from hanet.linux.netns import WrongNamespace, check_in
    from hanet.linux.pyroute2_socket import open_netlink
    from hanet.linux.rtnl_socket import RtnlSocket

    with Lab(lan_topology(routers=1), lab_prefix) as lab:
        rtnl = RtnlSocket(lab.ns("r1"))  # vrrpd's
        try:
            assert str(interface_facts(rtnl, "eth0", set()).primary_v4) == "10.0.0.1"
        finally:
            rtnl.close()

        async def pyroute2_links() -> list[str]:  # the agent's builders'
            ipr = await open_netlink(lab.ns("r1"))
            try:
                return [link.get("IFLA_IFNAME") async for link in await ipr.link("dump")]
            finally:
                ipr.close()

        assert "eth0" in asyncio.run(pyroute2_links())
        with socket.socket() as host_socket, pytest.raises(WrongNamespace):
            check_in(host_socket, lab.ns("r1"))


def test_sigterm_cleanup_does_not_run_in_pyroute2_helpers(lab_prefix: str) -> None:
    """clean_up_on_sigterm once made pyroute2's forked helpers (stopped with SIGTERM) run the
    parent's finally blocks, deleting namespaces of a lab being built."""
    import sys

    script = f"""
import os
from hanet.lab.lab import Lab, clean_up_on_sigterm
from hanet.lab.topology import lan_topology
clean_up_on_sigterm()
for n in range(5):
    lab = Lab(lan_topology(routers=2), "{lab_prefix}" + str(n))
    try:
        lab.up()
        hosts = ("r1", "r2", "c", "sw")
        missing = [h for h in hosts if not os.path.exists("/run/netns/" + lab.ns(h))]
        assert not missing, missing
    finally:
        lab.down()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.stdout.strip() == "ok", result.stderr
