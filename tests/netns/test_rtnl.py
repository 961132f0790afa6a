"""vrrpd's own netlink requests (hanet.linux.rtnl_requests through rtnl_socket) against a
real kernel: what `ip` shows after each, and that adding twice or removing twice is no
error, as a take-over after a crash needs."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pytest

from hanet.lab.lab import Lab
from hanet.lab.topology import Host, Topology
from hanet.linux import addresses
from hanet.linux.rtnl_socket import NetlinkFailure, RtnlSocket
from hanet.runtime.config import VirtualAddress, VirtualRoute, VirtualRule


@pytest.fixture
def host(make_lab: Callable[[Topology], Lab]) -> tuple[Lab, RtnlSocket, int]:
    lab = make_lab(Topology((), {"a": Host()}))
    lab.run("a", ["ip", "link", "add", "qr-x", "type", "bridge"])
    lab.run("a", ["ip", "link", "set", "qr-x", "up"])
    lab.run("a", ["ip", "addr", "add", "10.1.0.1/24", "dev", "qr-x"])
    rtnl = RtnlSocket(lab.ns("a"))
    link = rtnl.link("qr-x")
    assert link is not None
    yield lab, rtnl, link.index
    rtnl.close()


def ip_json(lab: Lab, *argv: str) -> Any:
    return json.loads(lab.run("a", ["ip", "-j", *argv]).stdout or "[]")


def test_links_and_addresses_read_back(host: tuple[Lab, RtnlSocket, int]) -> None:
    lab, rtnl, _index = host
    facts = addresses.interface_facts(rtnl, "qr-x", set())
    shown = ip_json(lab, "link", "show", "qr-x")[0]
    assert (facts.index, facts.mac) == (shown["ifindex"], shown["address"])
    assert str(facts.primary_v4) == "10.1.0.1"
    assert rtnl.link("qr-none") is None


def test_addresses_come_and_go(host: tuple[Lab, RtnlSocket, int]) -> None:
    lab, rtnl, index = host
    v4 = VirtualAddress(ipaddress.ip_interface("10.1.0.50/24"), broadcast="10.1.0.255",
                        label="qr-x:vip")  # fmt: skip
    v6 = VirtualAddress(ipaddress.ip_interface("fd00::50/64"))
    for vip in (v4, v6, v4, v6):  # the second time: already there, no error
        addresses.add_address(rtnl, index, vip)
    shown = {
        (a["local"], a["prefixlen"]): a
        for a in ip_json(lab, "addr", "show", "qr-x")[0]["addr_info"]
    }
    assert shown[("10.1.0.50", 24)]["broadcast"] == "10.1.0.255"
    assert shown[("10.1.0.50", 24)]["label"] == "qr-x:vip"
    assert shown[("fd00::50", 64)].get("nodad") is True
    for vip in (v4, v6, v4, v6):  # the second time: already gone, no error
        addresses.remove_address(rtnl, index, vip)
    left = {a["local"] for a in ip_json(lab, "addr", "show", "qr-x")[0]["addr_info"]}
    assert not left & {"10.1.0.50", "fd00::50"}


def test_routes_are_replaced_and_removed(host: tuple[Lab, RtnlSocket, int]) -> None:
    lab, rtnl, index = host
    routes = [
        VirtualRoute(ipaddress.ip_network("10.9.0.0/16"), via=ipaddress.ip_address("10.1.0.254"),
                     metric=20, table=1000, src=ipaddress.ip_address("10.1.0.1")),
        VirtualRoute(ipaddress.ip_network("10.8.0.0/16"), scope="link", protocol="redirect"),
        VirtualRoute(ipaddress.ip_network("10.66.0.0/16"), kind="blackhole"),
        VirtualRoute(ipaddress.ip_network("0.0.0.0/0"), via=ipaddress.ip_address("10.1.0.254"),
                     table=7),
    ]  # fmt: skip
    for route in routes * 2:  # a replace: the second time changes nothing
        dev = index if route.via is None and route.kind == "unicast" else None
        addresses.add_route(rtnl, dev, route)
    table = {r["dst"]: r for r in ip_json(lab, "route", "show", "table", "1000")}
    assert table["10.9.0.0/16"]["gateway"] == "10.1.0.254"
    assert (table["10.9.0.0/16"]["metric"], table["10.9.0.0/16"]["prefsrc"]) == (20, "10.1.0.1")
    assert table["10.9.0.0/16"]["protocol"] == "static"
    main = {r["dst"]: r for r in ip_json(lab, "route", "show")}
    assert (main["10.8.0.0/16"]["dev"], main["10.8.0.0/16"]["scope"]) == ("qr-x", "link")
    assert main["10.8.0.0/16"]["protocol"] == "redirect"
    assert main["10.66.0.0/16"]["type"] == "blackhole"
    assert [r["dst"] for r in ip_json(lab, "route", "show", "table", "7")] == ["default"]
    for route in routes * 2:
        dev = index if route.via is None and route.kind == "unicast" else None
        addresses.remove_route(rtnl, dev, route)
    assert ip_json(lab, "route", "show", "table", "1000") == []
    assert not {"10.8.0.0/16", "10.66.0.0/16"} & {r["dst"] for r in ip_json(lab, "route", "show")}


def test_rules_come_and_go(host: tuple[Lab, RtnlSocket, int]) -> None:
    lab, rtnl, _index = host
    rules = [
        VirtualRule(source=ipaddress.ip_network("10.9.0.0/16"), table=1000, priority=1000),
        VirtualRule(destination=ipaddress.ip_network("fd00:9::/48"), table=100, priority=1001),
        VirtualRule(iif="qr-x", fwmark=7, table=55, priority=1002),
    ]
    for rule in rules * 2:
        addresses.add_rule(rtnl, rule)
    shown = {
        r["priority"]: r for r in ip_json(lab, "rule", "show") + ip_json(lab, "-6", "rule", "show")
    }
    assert (shown[1000]["src"], shown[1000]["srclen"], shown[1000]["table"]) == (
        "10.9.0.0",
        16,
        "1000",
    )
    assert (shown[1001]["dst"], shown[1001]["table"]) == ("fd00:9::", "100")
    assert (shown[1002]["iif"], shown[1002]["fwmark"], shown[1002]["table"]) == (
        "qr-x",
        "0x7",
        "55",
    )
    for rule in rules * 2:
        addresses.remove_rule(rtnl, rule)
    left = {
        r["priority"] for r in ip_json(lab, "rule", "show") + ip_json(lab, "-6", "rule", "show")
    }
    assert not left & {1000, 1001, 1002}


def test_a_refused_request_says_why(host: tuple[Lab, RtnlSocket, int]) -> None:
    _lab, rtnl, _index = host
    bad = VirtualAddress(ipaddress.ip_interface("10.1.0.60/24"))
    with pytest.raises(NetlinkFailure) as refused:
        addresses.add_address(rtnl, 999_999, bad)  # no such link
    assert refused.value.errno is not None and refused.value.strerror
