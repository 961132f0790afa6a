"""A router namespace's NAT, applied with nft: what hosts on either side see.

upstream (203.0.113.1, ext) -- qg [router, forwarding on] qr -- vm (10.0.0.5, int)
                                                            +-- vm3 (10.0.0.6, int)
                                                        qr2 -- vm2 (10.1.0.5, int2)

upstream has no route to the internal subnets, so the VM reaches it only through SNAT. Each
host runs a TCP server that reads a line from the client and answers with the address it
sees the client come from, then the line: the client checks the echo, so a result means
data went both ways.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from collections.abc import Callable

import pytest

from hanet.agent.nat import FloatingIp, RouterNat, ruleset
from hanet.lab.daemons import wait_until
from hanet.lab.lab import Lab
from hanet.lab.topology import Host, Link, Topology
from hanet.linux import router_nat
from hanet.linux.router_nat import NatApplyError

QG = "qg-0a1b2c3d-4e"
QR = "qr-5f6a7b8c-9d"
QR2 = "qr-aa11bb22-cc"
GATEWAY = "203.0.113.10"
FLOATING = "203.0.113.50"
FLOATING2 = "203.0.113.51"
PORT = 7777

SERVER = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(16)
while True:
    conn, peer = srv.accept()
    # A client that gives up must not stop the server.
    try:
        conn.settimeout(10)
        line = conn.makefile("rb").readline()
        conn.sendall(f"{peer[0]}\\n".encode() + line)
    except OSError:
        pass
    finally:
        conn.close()
"""

# Enough data for many segments each way: a path that only carries the handshake fails.
CLIENT = """
import os, socket, sys
sent = os.urandom(48 * 1024).hex().encode() + b"\\n"
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as conn:
    conn.sendall(sent)
    reply = conn.makefile("rb")
    peer = reply.readline().decode().strip()
    if reply.readline() != sent:
        sys.exit(f"{peer} did not echo the {len(sent)} bytes sent")
print(peer)
"""


def topology() -> Topology:
    def link(segment: str, address: str) -> Link:
        return Link(segment, (ipaddress.ip_interface(address),))

    return Topology(
        ("ext", "int", "int2"),
        {
            "upstream": Host({"eth0": link("ext", "203.0.113.1/24")}),
            "router": Host({QG: link("ext", f"{GATEWAY}/24"), QR: link("int", "10.0.0.1/24"),
                            QR2: link("int2", "10.1.0.1/24")}),
            "vm": Host({"eth0": link("int", "10.0.0.5/24")}),
            "vm3": Host({"eth0": link("int", "10.0.0.6/24")}),
            "vm2": Host({"eth0": link("int2", "10.1.0.5/24")}),
        },
    )  # fmt: skip


def seen_by(lab: Lab, client: str, address: str, timeout: float = 5) -> str | None:
    """The address the server at ``address`` saw ``client`` come from; None if unreachable."""
    argv = [sys.executable, "-c", CLIENT, address, str(PORT), str(timeout)]
    result = lab.run(client, argv, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def settings(*floating: FloatingIp) -> RouterNat:
    return RouterNat("r1", QG, GATEWAY, True, ["10.0.0.0/24", "10.1.0.0/24"], floating)


def apply(lab: Lab, nat: RouterNat) -> None:
    asyncio.run(router_nat.apply(lab.ns("router"), ruleset(nat)))


def listing(lab: Lab) -> str:
    return asyncio.run(router_nat.listing(lab.ns("router")))


@pytest.fixture
def lab(make_lab: Callable[[Topology], Lab]) -> Lab:
    lab = make_lab(topology())
    lab.run("router", ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    lab.run("vm", ["ip", "route", "add", "default", "via", "10.0.0.1"])
    lab.run("vm3", ["ip", "route", "add", "default", "via", "10.0.0.1"])
    lab.run("vm2", ["ip", "route", "add", "default", "via", "10.1.0.1"])
    hosts = (("upstream", "203.0.113.1"), ("vm", "10.0.0.5"), ("vm2", "10.1.0.5"),
             ("vm3", "10.0.0.6"))  # fmt: skip
    for host, own in hosts:
        lab.spawn(host, [sys.executable, "-c", SERVER, str(PORT)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_until(lambda h=host, a=own: seen_by(lab, h, a), 10, f"the server on {host}")  # type: ignore[misc]
    return lab


def test_snat_floating_ip_and_removal(lab: Lab) -> None:
    # Without NAT, upstream cannot answer the VM; the VMs reach each other.
    assert seen_by(lab, "vm", "203.0.113.1", timeout=1) is None
    assert seen_by(lab, "vm", "10.1.0.5") == "10.0.0.5"

    apply(lab, settings())
    assert seen_by(lab, "vm", "203.0.113.1") == GATEWAY
    assert seen_by(lab, "vm2", "203.0.113.1") == GATEWAY
    # Between internal subnets nothing is translated.
    assert seen_by(lab, "vm", "10.1.0.5") == "10.0.0.5"
    assert seen_by(lab, "vm2", "10.0.0.5") == "10.1.0.5"
    assert seen_by(lab, "upstream", FLOATING, timeout=1) is None

    # A floating IP: the agent puts the address on qg- (as Neutron does) and the NAT maps it.
    lab.run("router", ["ip", "addr", "add", f"{FLOATING}/32", "dev", QG])
    with_fip = settings(FloatingIp(FLOATING, "10.0.0.5"))
    apply(lab, with_fip)
    # upstream reaches the VM at the floating address; the VM sees upstream's own address.
    assert seen_by(lab, "upstream", FLOATING) == "203.0.113.1"
    # The VM's own connections leave with the floating address, the other VM's with the
    # gateway's, and internal traffic keeps its addresses.
    assert seen_by(lab, "vm", "203.0.113.1") == FLOATING
    assert seen_by(lab, "vm2", "203.0.113.1") == GATEWAY
    assert seen_by(lab, "vm", "10.1.0.5") == "10.0.0.5"
    # The router's own traffic to the floating address reaches the VM too (output DNAT).
    assert seen_by(lab, "router", FLOATING) is not None

    # Applying the same text again changes nothing.
    before = listing(lab)
    assert f"ip daddr {FLOATING} dnat to 10.0.0.5" in before
    apply(lab, with_fip)
    assert listing(lab) == before
    assert seen_by(lab, "upstream", FLOATING) == "203.0.113.1"

    # Removing the floating IP removes it.
    apply(lab, settings())
    lab.run("router", ["ip", "addr", "del", f"{FLOATING}/32", "dev", QG])
    assert FLOATING not in listing(lab)
    assert seen_by(lab, "upstream", FLOATING, timeout=1) is None
    assert seen_by(lab, "vm", "203.0.113.1") == GATEWAY

    # Removing the table removes the NAT; removing it twice is fine.
    asyncio.run(router_nat.remove(lab.ns("router")))
    asyncio.run(router_nat.remove(lab.ns("router")))
    tables = lab.run("router", ["nft", "list", "tables"]).stdout
    assert "hanet-router" not in tables
    assert seen_by(lab, "vm", "203.0.113.1", timeout=1) is None


def test_a_refused_text_changes_nothing_and_says_why(lab: Lab) -> None:
    apply(lab, settings())
    before = listing(lab)
    broken = ruleset(settings(FloatingIp(FLOATING, "10.0.0.5"))).replace("dnat to", "dnat too")
    with pytest.raises(NatApplyError) as info:
        asyncio.run(router_nat.apply(lab.ns("router"), broken))
    assert f"in namespace {lab.ns('router')}" in str(info.value)
    assert "syntax error" in str(info.value)
    # Nothing of the refused text was applied: the earlier table is still there.
    assert listing(lab) == before
    assert seen_by(lab, "vm", "203.0.113.1") == GATEWAY


def test_hairpin_through_a_floating_ip(lab: Lab) -> None:
    lab.run("router", ["ip", "addr", "add", f"{FLOATING}/32", "dev", QG])
    apply(lab, settings(FloatingIp(FLOATING, "10.0.0.5")))
    # Another subnet's VM and a VM of the same subnet reach the VM through its floating IP.
    # The VM sees the router's gateway address, so it answers the router, which undoes the
    # DNAT; answering vm3 directly (same subnet) would come from the wrong address.
    assert seen_by(lab, "vm2", FLOATING) == GATEWAY
    assert seen_by(lab, "vm3", FLOATING) == GATEWAY
    # So does what the router itself sends to the floating IP.
    assert seen_by(lab, "router", FLOATING) == GATEWAY
    # A VM with a floating IP is seen with it, as upstream sees it (Neutron's float-snat
    # comes first): here the VM reaching its own floating IP.
    assert seen_by(lab, "vm", FLOATING) == FLOATING
    # Upstream and internal traffic see what they saw without hairpin.
    assert seen_by(lab, "upstream", FLOATING) == "203.0.113.1"
    assert seen_by(lab, "vm", "203.0.113.1") == FLOATING
    assert seen_by(lab, "vm3", "203.0.113.1") == GATEWAY
    assert seen_by(lab, "vm3", "10.0.0.5") == "10.0.0.6"
    assert seen_by(lab, "vm2", "10.0.0.5") == "10.1.0.5"
    assert seen_by(lab, "vm", "10.1.0.5") == "10.0.0.5"

    # vm2 gets a floating IP too: vm2 reaching the VM's is seen with vm2's own.
    lab.run("router", ["ip", "addr", "add", f"{FLOATING2}/32", "dev", QG])
    apply(lab, settings(FloatingIp(FLOATING, "10.0.0.5"), FloatingIp(FLOATING2, "10.1.0.5")))
    assert seen_by(lab, "vm2", FLOATING) == FLOATING2
    assert seen_by(lab, "vm", FLOATING2) == FLOATING
    assert seen_by(lab, "vm3", FLOATING2) == GATEWAY
    assert seen_by(lab, "upstream", FLOATING2) == "203.0.113.1"

    # Without SNAT the hairpin still works (Neutron adds it with the floating IP rules);
    # vm3, which has no floating IP, no longer reaches upstream.
    no_snat = RouterNat("r1", QG, GATEWAY, False, ["10.0.0.0/24", "10.1.0.0/24"],
                        (FloatingIp(FLOATING, "10.0.0.5"),))  # fmt: skip
    apply(lab, no_snat)
    assert seen_by(lab, "vm3", FLOATING) == GATEWAY
    assert seen_by(lab, "vm2", FLOATING) == GATEWAY
    assert seen_by(lab, "vm3", "203.0.113.1", timeout=1) is None
    assert seen_by(lab, "upstream", FLOATING) == "203.0.113.1"
