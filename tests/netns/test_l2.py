"""hanet.linux.l2: Neutron's linuxbridge layout on lab "nodes", seen from "VMs".

Nodes n1 and n2 share an underlay LAN (their tunnel addresses) and a provider segment
(eth1, no address); vm1..vm4 are empty lab hosts that get one end of a port's veth pair.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

import pytest

from hanet.lab.daemons import wait_until
from hanet.lab.lab import Lab
from hanet.lab.topology import Host, Link, Topology
from hanet.linux.l2 import (
    L2Error,
    bridge_name,
    ensure_flat_network,
    ensure_vxlan_network,
    inventory,
    plug_port,
    remove_network,
    unplug_port,
)

NET_A = "8f3a1c2e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
NET_B = "1b2c3d4e-6f70-4182-93a4-b5c6d7e8f901"
EXT = "e0e1e2e3-e4e5-46e7-98e9-eaebecedeeef"
TUNNEL = {"n1": "192.0.2.1", "n2": "192.0.2.2"}
MTU = 1450  # 1500 minus VXLAN's 50 bytes over IPv4


def topology() -> Topology:
    hosts: dict[str, Host] = {}
    for node, addr in TUNNEL.items():
        underlay = Link("underlay", (ipaddress.ip_interface(f"{addr}/24"),))
        hosts[node] = Host({"eth0": underlay, "eth1": Link("ext")})
    hosts.update({f"vm{n}": Host() for n in range(1, 5)})
    return Topology(("underlay", "ext"), hosts)


@pytest.fixture
def lab(make_lab: Callable[[Topology], Lab]) -> Lab:
    return make_lab(topology())


def vxlan(lab: Lab, node: str, network: str, vni: int, peers: list[str] | None = None) -> list[str]:
    if peers is None:
        peers = [a for n, a in TUNNEL.items() if n != node]
    return asyncio.run(
        ensure_vxlan_network(lab.ns(node), network, vni, MTU, TUNNEL[node], "eth0", peers)
    )


def vm(lab: Lab, node: str, name: str, network: str, port: str, address: str, mtu: int = MTU):
    """Plug a port on the node and move its peer into the VM, as a compute agent would."""
    plugged = asyncio.run(plug_port(lab.ns(node), network, port, f"p-{name}", mtu))
    assert plugged.peer_index is not None
    lab.run(node, ["ip", "link", "set", plugged.peer, "netns", lab.ns(name)])
    lab.run(name, ["ip", "link", "set", plugged.peer, "name", "eth0"])
    lab.run(name, ["ip", "addr", "add", address, "dev", "eth0"])
    lab.run(name, ["ip", "link", "set", "eth0", "up"])
    return plugged


def pings(lab: Lab, src: str, dst: str) -> bool:
    return lab.run(src, ["ping", "-c1", "-W1", dst], check=False).returncode == 0


def links(lab: Lab, host: str) -> str:
    return lab.run(host, ["ip", "-o", "-d", "link", "show"]).stdout


def flood_entries(lab: Lab, node: str, device: str) -> set[str]:
    out = lab.run(node, ["bridge", "fdb", "show", "dev", device]).stdout
    return {line.split()[2] for line in out.splitlines() if line.startswith("00:00:00:00:00:00")}


def test_vms_on_two_nodes_ping_over_vxlan_and_a_second_converge_changes_nothing(lab: Lab) -> None:
    assert vxlan(lab, "n1", NET_A, 1001) and vxlan(lab, "n2", NET_A, 1001)
    vm(lab, "n1", "vm1", NET_A, "11111111-aaaa", "10.10.0.1/24")
    vm(lab, "n2", "vm2", NET_A, "22222222-bbbb", "10.10.0.2/24")

    wait_until(lambda: pings(lab, "vm1", "10.10.0.2"), 10, "vm1 to reach vm2 over VXLAN")
    assert pings(lab, "vm2", "10.10.0.1")
    n1 = links(lab, "n1")
    assert "vxlan-1001:" in n1 and "vxlan id 1001 local 192.0.2.1 dev eth0" in n1
    assert "dstport 4789" in n1 and "nolearning" not in n1
    assert f"master {bridge_name(NET_A)}" in n1 and "brq8f3a1c2e-5b:" in n1
    assert "mtu 1450" in links(lab, "vm1")
    assert flood_entries(lab, "n1", "vxlan-1001") == {"192.0.2.2"}

    before = asyncio.run(inventory(lab.ns("n1")))
    assert vxlan(lab, "n1", NET_A, 1001) == []  # the agent restarted: nothing to do
    plugged = asyncio.run(plug_port(lab.ns("n1"), NET_A, "11111111-aaaa", "p-vm1", MTU))
    assert plugged.changes == () and plugged.peer_index is None  # moved into vm1
    after = asyncio.run(inventory(lab.ns("n1")))
    assert after == before
    bridge = after.bridges["brq8f3a1c2e-5b"]
    assert bridge.vxlans == ("vxlan-1001",) and bridge.taps == ("tap11111111-aa",)
    assert after.vxlans[1001].index == before.vxlans[1001].index
    assert [str(p) for p in after.vxlans[1001].peers] == ["192.0.2.2"]
    assert pings(lab, "vm1", "10.10.0.2")
    # L2 only, as Neutron's bridges: no IPv6 on what the node bridges (no router
    # solicitations, MLD or DAD, nor the neighbour entries they leave in the shared table).
    for device in ("brq8f3a1c2e-5b", "vxlan-1001", "tap11111111-aa"):
        path = f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6"
        assert lab.run("n1", ["cat", path]).stdout.strip() == "1", device


def test_changing_the_peers_updates_the_flooding_entries(lab: Lab) -> None:
    vxlan(lab, "n1", NET_A, 1001)
    vxlan(lab, "n2", NET_A, 1001)
    changes = vxlan(lab, "n1", NET_A, 1001, ["192.0.2.9", "192.0.2.8", "192.0.2.1"])
    assert flood_entries(lab, "n1", "vxlan-1001") == {"192.0.2.8", "192.0.2.9"}  # not itself
    assert "vxlan-1001 no longer floods to 192.0.2.2" in changes
    vxlan(lab, "n1", NET_A, 1001, ["192.0.2.2"])
    assert flood_entries(lab, "n1", "vxlan-1001") == {"192.0.2.2"}
    vm(lab, "n1", "vm1", NET_A, "11111111-aaaa", "10.10.0.1/24")
    vm(lab, "n2", "vm2", NET_A, "22222222-bbbb", "10.10.0.2/24")
    wait_until(lambda: pings(lab, "vm1", "10.10.0.2"), 10, "vm1 to reach vm2")


def test_unplug_and_remove_network_tear_down_and_leave_the_rest(lab: Lab) -> None:
    vxlan(lab, "n1", NET_A, 1001)
    vxlan(lab, "n2", NET_A, 1001)
    vm(lab, "n2", "vm2", NET_A, "22222222-bbbb", "10.10.0.2/24")
    assert asyncio.run(unplug_port(lab.ns("n2"), NET_A, "22222222-bbbb"))
    assert "eth0" not in links(lab, "vm2") and "tap" not in links(lab, "n2")
    assert not asyncio.run(unplug_port(lab.ns("n2"), NET_A, "22222222-bbbb"))
    vm(lab, "n1", "vm1", NET_A, "11111111-aaaa", "10.10.0.1/24")
    removed = asyncio.run(remove_network(lab.ns("n1"), NET_A, 1001))
    assert removed == ["vxlan-1001", "tap11111111-aa", "brq8f3a1c2e-5b"]
    n1 = links(lab, "n1")
    assert "brq" not in n1 and "vxlan" not in n1 and "tap" not in n1 and "eth0" in n1
    assert "eth0" not in links(lab, "vm1")  # the VM's end went with its pair
    assert asyncio.run(inventory(lab.ns("n1"))).bridges == {}
    assert asyncio.run(remove_network(lab.ns("n1"), NET_A, 1001)) == []
    assert "vxlan-1001" in links(lab, "n2")


def test_a_second_vni_is_isolated_from_the_first(lab: Lab) -> None:
    for node in ("n1", "n2"):
        vxlan(lab, node, NET_A, 1001)
        vxlan(lab, node, NET_B, 1002)
    vm(lab, "n1", "vm1", NET_A, "11111111-aaaa", "10.10.0.1/24")
    vm(lab, "n2", "vm2", NET_A, "22222222-bbbb", "10.10.0.2/24")
    vm(lab, "n1", "vm3", NET_B, "33333333-cccc", "10.10.0.3/24")
    vm(lab, "n2", "vm4", NET_B, "44444444-dddd", "10.10.0.4/24")
    wait_until(lambda: pings(lab, "vm3", "10.10.0.4"), 10, "vm3 to reach vm4 on VNI 1002")
    wait_until(lambda: pings(lab, "vm1", "10.10.0.2"), 10, "vm1 to reach vm2 on VNI 1001")
    # Same subnet, other network: only L2 separates them, and ARP never gets an answer.
    assert not pings(lab, "vm3", "10.10.0.2")
    assert not pings(lab, "vm1", "10.10.0.4")
    assert "lladdr" not in lab.run("vm3", ["ip", "neigh", "show", "10.10.0.2"]).stdout


def test_flat_network_bridges_the_physical_interface(lab: Lab) -> None:
    for node in ("n1", "n2"):
        assert asyncio.run(ensure_flat_network(lab.ns(node), EXT, 1500, "eth1"))
        assert asyncio.run(ensure_flat_network(lab.ns(node), EXT, 1500, "eth1")) == []
    vm(lab, "n1", "vm1", EXT, "55555555-eeee", "203.0.113.11/24", mtu=1500)
    vm(lab, "n2", "vm2", EXT, "66666666-ffff", "203.0.113.12/24", mtu=1500)
    wait_until(lambda: pings(lab, "vm1", "203.0.113.12"), 10, "vm1 to reach vm2 on the flat net")
    assert asyncio.run(inventory(lab.ns("n1"))).bridge_of(EXT).others == ("eth1",)  # type: ignore[union-attr]
    asyncio.run(remove_network(lab.ns("n1"), EXT))
    assert "master" not in lab.run("n1", ["ip", "-o", "link", "show", "eth1"]).stdout


def test_what_it_did_not_make_is_an_error_naming_network_and_device(lab: Lab) -> None:
    lab.run("n1", ["ip", "link", "add", "brq8f3a1c2e-5b", "type", "veth", "peer", "x0"])
    with pytest.raises(L2Error, match=f"network {NET_A}: device brq8f3a1c2e-5b: is a veth link, "
                                      "not a bridge: left alone"):  # fmt: skip
        vxlan(lab, "n1", NET_A, 1001)
    with pytest.raises(L2Error, match=f"network {NET_A}: device brq8f3a1c2e-5b: is a veth link"):
        asyncio.run(remove_network(lab.ns("n1"), NET_A))
    assert "brq8f3a1c2e-5b@x0" in links(lab, "n1")
    with pytest.raises(L2Error, match=f"network {NET_B}: device vxlan-1002: no underlay device"):
        asyncio.run(ensure_vxlan_network(lab.ns("n1"), NET_B, 1002, MTU, "192.0.2.1", "eth9", []))
    with pytest.raises(L2Error, match=f"network {NET_B}: device vxlan-0: VNI 0 is not in"):
        asyncio.run(ensure_vxlan_network(lab.ns("n1"), NET_B, 0, MTU, "192.0.2.1", "eth0", []))
    with pytest.raises(L2Error, match=f"network {NET_B}: device tap11111111-aa: no bridge"):
        asyncio.run(plug_port(lab.ns("n1"), NET_B, "11111111-aaaa", "p-x", MTU))
    asyncio.run(ensure_vxlan_network(lab.ns("n2"), NET_B, 1002, MTU, "192.0.2.2", "eth0", []))
    lab.run("n2", ["ip", "link", "set", "eth1", "master", bridge_name(NET_B)])
    with pytest.raises(L2Error, match=f"network {EXT}: device eth1: already on brq1b2c3d4e-6f"):
        asyncio.run(ensure_flat_network(lab.ns("n2"), EXT, 1500, "eth1"))
    assert asyncio.run(inventory(lab.ns("n1"))).bridges == {}


def test_mtu_changes_in_place_and_a_new_tunnel_address_recreates_the_device(lab: Lab) -> None:
    vxlan(lab, "n1", NET_A, 1001)
    index = asyncio.run(inventory(lab.ns("n1"))).vxlans[1001].index
    ns = lab.ns("n1")
    changes = asyncio.run(ensure_vxlan_network(ns, NET_A, 1001, 1400, "192.0.2.1", "eth0", []))
    assert changes == [
        "brq8f3a1c2e-5b mtu 1400",
        "vxlan-1001 mtu=1400",
        "vxlan-1001 no longer floods to 192.0.2.2",
    ]
    assert asyncio.run(inventory(ns)).vxlans[1001].index == index
    assert "mtu 1400" in lab.run("n1", ["ip", "link", "show", "vxlan-1001"]).stdout
    changes = asyncio.run(
        ensure_vxlan_network(ns, NET_A, 1001, 1400, "192.0.2.11", "eth0", ["192.0.2.2"])
    )
    assert "removed vxlan-1001 (was VNI 1001 from 192.0.2.1)" in changes
    assert "vxlan id 1001 local 192.0.2.11 dev eth0" in links(lab, "n1")
    assert asyncio.run(inventory(ns)).bridges["brq8f3a1c2e-5b"].vxlans == ("vxlan-1001",)
    assert flood_entries(lab, "n1", "vxlan-1001") == {"192.0.2.2"}
