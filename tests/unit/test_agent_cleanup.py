"""hanet.agent.cleanup: which namespaces are a node's, and the plan made of what was found."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from hanet.agent.cleanup import (
    CleanupError,
    Found,
    RouterNamespace,
    Step,
    check_host,
    plan,
    router_of_namespace,
)
from hanet.agent.render import namespace_name
from hanet.linux.l2 import BridgeState, Inventory, VxlanState


@pytest.mark.parametrize(
    ("name", "host", "router"),
    [
        (namespace_name("r1", "A"), "A", "r1"),
        (namespace_name("r1", "B"), "A", None),  # another node's
        (namespace_name("r1"), "A", None),  # a node that does not share its machine
        (namespace_name("r1"), None, "r1"),
        (namespace_name("r1", "A"), None, None),
        (namespace_name("r1", "AB"), "A", None),
        ("qrouter-", None, None),
        ("qrouter-r_1", None, None),  # not an id render accepts
        ("qdhcp-n1", None, None),
        ("t1x0-qrouter-r1", None, None),
        ("qrouter-r1@A@A", "A", None),
    ],
)
def test_only_this_nodes_router_namespaces(name: str, host: str | None, router: str | None):
    assert router_of_namespace(name, host) == router


def test_bad_host_is_refused_with_the_reason():
    with pytest.raises(CleanupError, match=r"--host 'a/b': not a host name"):
        check_host("a/b")
    check_host("node-1.lab")


def vxlan(vni: int, master: int | None) -> VxlanState:
    return VxlanState(f"vxlan-{vni}", 10 + vni, vni, ipaddress.ip_address("192.0.2.1"), 2,
                      4789, True, 1450, master, frozenset())  # fmt: skip


def test_plan_orders_processes_then_table_then_namespace_and_bridges_before_strays():
    found = Found(
        "node",
        (
            RouterNamespace("qrouter-r2@A", "r2"),
            RouterNamespace("qrouter-r1@A", "r1", pids=(42, 7), nat_table=True),
        ),
        Inventory(
            bridges={
                "brqnet1": BridgeState("brqnet1", 5, 1450, ("vxlan-100",), ("tapport1",), ("eth1",))
            },
            vxlans={100: vxlan(100, 5), 200: vxlan(200, None)},
            taps={"tapport1": 20, "tapstray": 21},
        ),
    )
    steps = plan(found)
    assert [s.describe() for s in steps] == [
        "stop processes 7, 42 in namespace qrouter-r1@A",
        "delete nftables table ip hanet-router in namespace qrouter-r1@A",
        "delete namespace qrouter-r1@A",
        "delete namespace qrouter-r2@A",
        "remove bridge brqnet1 and vxlan-100 (and its taps) in node",
        "remove VXLAN device vxlan-200 in node",
        "remove tap tapstray in node",
    ]
    assert steps[4] == Step("network", "node", "brqnet1", vnis=(100,))


def test_a_name_that_names_no_network_still_describes_itself():
    found = Found(None, l2=Inventory(bridges={"brq": BridgeState("brq", 3, 1500, (), (), ())}))
    assert [s.describe() for s in plan(found)] == ["remove bridge brq (and its taps)"]


def test_nothing_found_plans_nothing():
    assert plan(Found(None)) == []


def test_a_failed_step_is_reported_and_the_next_one_still_runs(monkeypatch, caplog):
    from hanet.agent import cleanup
    from hanet.linux import l2

    done: list[str] = []

    async def remove_network(ns: str | None, network: str, vni: int | None) -> list[str]:
        raise l2.L2Error(f"network {network}: device brq{network}: cannot remove it: busy")

    async def unplug_port(ns: str | None, network: str, port: str) -> bool:
        done.append(port)
        return True

    monkeypatch.setattr(l2, "remove_network", remove_network)
    monkeypatch.setattr(l2, "unplug_port", unplug_port)
    steps = [Step("network", "node", "brqnet1"), Step("tap", "node", "tapport1")]
    caplog.set_level("INFO", logger="hanet.agent.cleanup")
    outcomes = asyncio.run(cleanup.execute(steps))
    assert [o.error for o in outcomes] == [
        "network net1: device brqnet1: cannot remove it: busy",
        None,
    ]
    assert done == ["port1"]
    assert caplog.messages == [
        "cleanup: remove bridge brqnet1 (and its taps) in node: failed: "
        "network net1: device brqnet1: cannot remove it: busy",
        "cleanup: remove tap tapport1 in node: done",
    ]
