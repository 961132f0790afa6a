"""The configs real deployments render, run unchanged by hanet vrrpd next to keepalived."""

from __future__ import annotations

import ipaddress as ip
from pathlib import Path

import pytest

from hanet.lab.daemons import keepalived_available, wait_until
from hanet.lab.topology import Host, Link, Topology

pytestmark = pytest.mark.skipif(not keepalived_available(), reason="keepalived not installed")

FIXTURES = Path(__file__).parents[1] / "fixtures" / "keepalived"
HA, QR, QG = "ha-2e4b7e1a-5c", "qr-7f1c2a3b-11", "qg-3c4d5e6f-22"


def neutron_lab(make_lab):  # type: ignore[no-untyped-def]
    """Two network nodes with a router's ha-, qr- and qg- ports, a tenant VM, an upstream."""

    def node(n: int) -> Host:
        return Host({HA: Link("ha", (ip.ip_interface(f"169.254.192.{n}/18"),)),
                     QR: Link("tenant"), QG: Link("ext")})  # fmt: skip

    return make_lab(Topology(("ha", "tenant", "ext"), {
        "n1": node(1), "n2": node(2),
        "vm": Host({"eth0": Link("tenant", (ip.ip_interface("10.0.0.5/24"),))}),
        "up": Host({"eth0": Link("ext", (ip.ip_interface("192.168.100.1/24"),))}),
    }))  # fmt: skip


def router_ready(lab, host: str) -> bool:  # type: ignore[no-untyped-def]
    addresses = lab.run(host, ["ip", "-o", "addr"]).stdout
    routes = lab.run(host, ["ip", "route"]).stdout
    return (
        "169.254.0.1/24" in addresses and "10.0.0.1/24" in addresses
        and "192.168.100.10/24" in addresses and "fe80::f816:3eff:fe20:a623/64" in addresses
        and f"default via 192.168.100.1 dev {QG}" in routes
        and f"10.1.0.0/16 via 10.0.0.254 dev {QR}" in routes
    )  # fmt: skip


def test_neutron_ha_router_config_with_keepalived_then_hanet(make_lab, daemons) -> None:
    lab = neutron_lab(make_lab)
    text = (FIXTURES / "neutron-ha-router.conf").read_text()
    keepalived = daemons("keepalived", lab, "n1", text)
    wait_until(lambda: router_ready(lab, "n1"), 20, "keepalived's router on n1")
    hanet = daemons("vrrpd", lab, "n2", text)
    wait_until(lambda: hanet.status().get("VR_1", {}).get("master") == "169.254.192.1", 15,
               "hanet to follow keepalived")  # fmt: skip
    assert not router_ready(lab, "n2")
    lab.crash("n1")
    wait_until(lambda: router_ready(lab, "n2"), 20, "hanet's router on n2")
    # The tenant VM reaches its gateway, now on n2, and the upstream reaches the router.
    wait_until(lambda: lab.run("vm", ["ping", "-c1", "-W1", "10.0.0.1"], check=False)
               .returncode == 0, 10, "the VM to reach its gateway")  # fmt: skip
    assert lab.run("up", ["ping", "-c1", "-W1", "192.168.100.10"]).returncode == 0
    assert keepalived.proc is not None


def kolla_conf(flag: Path) -> str:
    """kolla's file as rendered, with check_alive.sh pointed at a test check."""
    check = flag.parent / "check_alive.sh"
    check.write_text(f"#!/bin/sh\ntest -f {flag}\n")
    check.chmod(0o755)
    return (
        (FIXTURES / "kolla-api-vip.conf").read_text().replace("/checks/check_alive.sh", str(check))
    )


@pytest.mark.parametrize("first", ["keepalived", "vrrpd"])
def test_kolla_api_vip_failing_check_moves_the_vip(lan, daemons, tmp_path, first: str) -> None:
    """Same file on both hosts; the master's check_alive fails: it goes FAULT, the other
    daemon (the other implementation) takes the VIP."""
    other = "vrrpd" if first == "keepalived" else "keepalived"
    flags = {"r1": tmp_path / "r1" / "ok", "r2": tmp_path / "r2" / "ok"}
    for flag in flags.values():
        flag.parent.mkdir()
        flag.write_text("")
    master = daemons(first, lan, "r1", kolla_conf(flags["r1"]))
    master.wait_master("10.0.0.250", timeout=20)
    backup = daemons(other, lan, "r2", kolla_conf(flags["r2"]))
    # keepalived and hanet agree r1 is master: r2 does not take the VIP for 5 s of adverts.
    if other == "vrrpd":
        wait_until(lambda: backup.status().get("kolla_internal_vip_51", {}).get("master")
                   == "10.0.0.1", 15, "hanet to follow keepalived")  # fmt: skip
    assert not backup.holds("10.0.0.250")
    flags["r1"].unlink()  # interval 2, fall 2: r1 is in FAULT within about 4 s
    backup.wait_master("10.0.0.250", timeout=20)
    master.wait_backup("10.0.0.250", timeout=10)
