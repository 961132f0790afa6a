"""The control socket's version 1 schema: everything keepalived.conf can say, typed and
checked; bad input is refused with where and why, never an exception of another kind."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hanet.runtime.config import VirtualAddress, VirtualRoute, VirtualRule
from hanet.vrrpd.events import EventHub
from hanet.vrrpd.schema import SchemaError, parse_request
from hanet.vrrpd.tracking import Observations, Tracking, Weighted, evaluate

ROUTER = {
    "interface": "ha-1",
    "vrid": 7,
    "priority": 50,
    "version": 3,
    "advert_int": 0.1,
    "nopreempt": True,
    "netns": "qrouter-1",
    "addresses": [
        "169.254.0.7/24",
        {"address": "203.0.113.10/24", "dev": "qg-1", "advertised": False},
        {"address": "10.1.0.1/24", "dev": "qr-1", "advertised": False, "scope": "global",
         "label": "qr-1:gw"},
        {"address": "fd00:1::1/64", "dev": "qr-2", "advertised": False},
    ],
    "routes": [
        {"to": "default", "via": "203.0.113.1", "dev": "qg-1"},
        {"to": "198.51.100.0/24", "dev": "qg-1", "src": "203.0.113.10", "scope": "link",
         "table": 10, "metric": 5, "protocol": "static"},
        {"to": "192.0.2.0/24", "type": "blackhole"},
    ],
    "rules": [{"source": "10.1.0.0/24", "table": 10, "priority": 100, "iif": "qr-1",
               "fwmark": 7}],
    "garp_repeat": 3, "garp_interval": 0.01, "garp_refresh_delay": 2,
    "garp_refresh_interval": 60, "garp_refresh_repeat": 2,
    "track_interfaces": ["qg-1", {"name": "qr-1", "weight": -20}],
    "unicast": {"source": "169.254.192.1", "peers": ["169.254.192.2"]},
}  # fmt: skip


def sync(instances: Any) -> dict[str, Any]:
    return {"command": "sync", "version": 1, "instances": instances}


def test_a_neutron_router_is_said_in_full() -> None:
    request = parse_request(sync({"r1": ROUTER}))
    assert request.instances is not None
    spec = request.instances["r1"]
    config = spec.config
    assert (config.netns, config.interface, config.vrid, config.priority) == (
        "qrouter-1", "ha-1", 7, 50,
    )  # fmt: skip
    assert not config.preempt and config.advert_int == 0.1
    assert config.addresses == (ipaddress.ip_interface("169.254.0.7/24"),)
    assert config.vips[1] == VirtualAddress(
        ipaddress.ip_interface("203.0.113.10/24"), "qg-1", advertised=False
    )
    assert config.vips[2].scope == "global" and config.vips[2].label == "qr-1:gw"
    assert config.routes[0] == VirtualRoute(
        ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("203.0.113.1"), dev="qg-1"
    )
    assert config.routes[1].protocol == "4" and config.routes[1].scope == "link"
    assert config.routes[2].kind == "blackhole"
    assert config.rules == (
        VirtualRule(ipaddress.ip_network("10.1.0.0/24"), None, 10, 100, "qr-1", None, 7),
    )
    assert (config.garp_repeat, config.garp_refresh_interval, config.garp_refresh_repeat) == (
        3, 60.0, 2,
    )  # fmt: skip
    assert config.unicast_peers == (ipaddress.ip_address("169.254.192.2"),)
    assert spec.tracking == Tracking(
        interfaces=(Weighted("ha-1"), Weighted("qg-1"), Weighted("qr-1", -20)),
        netns="qrouter-1",
    )


def test_tracked_interfaces_are_looked_up_in_the_instances_namespace() -> None:
    request = parse_request(sync({"r1": ROUTER}))
    assert request.instances is not None
    tracking = request.instances["r1"].tracking
    assert tracking is not None
    seen = Observations(interfaces_up={"ha-1": True, "qg-1": True, "qr-1": True})
    # Up in the daemon's namespace means nothing: in qrouter-1 nothing was seen yet.
    assert evaluate(50, tracking, seen)[1] == "interface ha-1 is down"
    seen.interfaces_in["qrouter-1"] = {"ha-1": True, "qg-1": True, "qr-1": False}
    assert evaluate(50, tracking, seen) == (30, None)
    seen.interfaces_in["qrouter-1"]["qg-1"] = False
    assert evaluate(50, tracking, seen) == (50, "interface qg-1 is down")


def at(path: str, value: Any, *, drop: bool = False) -> dict[str, Any]:
    """ROUTER with ``value`` at ``path`` (dots and [n]), in a sync request."""
    entry = copy.deepcopy(ROUTER)
    node: Any = entry
    keys: list[Any] = [int(k) if k.isdigit() else k
                       for k in path.replace("[", ".").replace("]", "").split(".")]  # fmt: skip
    for key in keys[:-1]:
        node = node[key]
    if drop:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return sync({"r1": entry})


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (at("routes[1].via", "fd00::1"), "instances.r1.routes[1].via: fd00::1 is not of the "
                                         "family of 'to'"),
        (at("routes[0].via", 7), "instances.r1.routes[0].via: expected an IP address string, "
                                 "got an integer"),
        (at("routes[2].dev", "qg-1"), "instances.r1.routes[2].type: a blackhole route has no"),
        (at("routes[1].to", "198.51.100.1/24"), "instances.r1.routes[1].to: 198.51.100.1/24 "
                                                "has host bits set"),
        (at("routes[1].protocol", "bgp"), "instances.r1.routes[1].protocol: one of"),
        (at("routes[0].gw", "1.2.3.4"), "instances.r1.routes[0]: unknown key 'gw'"),
        (at("rules[0].table", None, drop=True), "instances.r1.rules[0]: missing key 'table'"),
        (at("rules[0].fwmark", -1), "instances.r1.rules[0].fwmark: -1 is outside"),
        (at("addresses[1].advertised", "no"), "instances.r1.addresses[1].advertised: expected "
                                              "true or false, got a string"),
        (at("addresses[2].label", "eth0:x"), "instances.r1.addresses[2].label: must be qr-1"),
        (at("addresses[0]", {"address": "1.2.3.4/24", "advertised": False}),
         "instances.r1.addresses: at least one advertised address"),
        (at("addresses[3]", "fd00::7/64"), "instances.r1: addresses: IPv4 and IPv6 need"),
        (at("vrid", 256), "instances.r1.vrid: 256 is outside 1..255"),
        (at("vrid", True), "instances.r1.vrid: expected an integer 1..255, got a boolean"),
        (at("advert_int", float("nan")), "instances.r1.advert_int: nan is outside"),
        (at("version", 2), "instances.r1: a v2 advert interval is whole seconds"),
        (at("interface", "a/b"), "instances.r1.interface: expected an interface name"),
        (at("netns", "../etc"), "instances.r1.netns: expected a namespace name"),
        (at("preempt", True), "instances.r1.nopreempt: give preempt or nopreempt, not both"),
        (at("track_interfaces[0]", "ha-1"), "instances.r1.track_interfaces: ha-1 is tracked "
                                            "twice"),
        (at("track_interfaces[1].weight", 300), "instances.r1.track_interfaces[1].weight: 300"),
        (at("unicast.peers", []), "instances.r1.unicast.peers: at least one peer"),
        (at("garp_repeat", 101), "instances.r1.garp_repeat: 101 is outside 0..100"),
        (at("bogus", 1), "instances.r1: unknown key 'bogus'"),
        (at("priority", None, drop=True), "instances.r1: missing key 'priority'"),
        (sync({"bad name": ROUTER}), "instances.bad name: an instance name is"),
        (sync([]), "instances: an object"),
        (sync({}) | {"keep": "r1"}, "keep: a list of instance names"),
        (sync({}) | {"keep": ["ok", 5]}, "keep[1]: an instance name is"),
        (sync({"r1": ROUTER}) | {"keep": ["r1"]}, "keep[0]: r1 is in 'instances' too"),
        ({"command": "sync", "instances": {}}, "'sync' needs \"version\": 1"),
        ({"command": "status", "version": 2}, "version: 2 is not supported"),
        ({"command": "status", "version": True}, "version: True is not supported"),
        ({"command": "hold_backup", "version": 1}, "'hold_backup' needs 'name'"),
        ({"command": "hold_backup", "version": 1, "name": "r1", "reason": 5}, "reason: a"),
        ({"command": "release", "version": 1, "name": "r1", "reason": "x"}, "unknown key"),
    ],
)  # fmt: skip
def test_errors_say_where(request_: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError) as err:
        parse_request(request_)
    assert str(err.value).startswith(message), str(err.value)


def test_version_0_requests_keep_their_meaning() -> None:
    entry = {"interface": "eth0", "vrid": 60, "priority": 150, "addresses": ["10.0.0.60/24"]}
    request = parse_request({"command": "add", "name": "a", "instance": entry})
    assert request.version == 0 and request.instance is not None
    assert request.instance.tracking is None  # as before: no interface tracking
    assert request.instance.config.addresses == (ipaddress.ip_interface("10.0.0.60/24"),)
    with pytest.raises(SchemaError, match="unknown key 'track_interfaces'"):
        parse_request({"command": "add", "name": "a",
                       "instance": {**entry, "track_interfaces": ["eth1"]}})  # fmt: skip
    v1 = parse_request({"command": "add", "version": 1, "name": "a", "instance": entry})
    assert v1.instance is not None and v1.instance.tracking == Tracking((), (Weighted("eth0"),))


def test_hold_and_release_requests() -> None:
    held = parse_request({"command": "hold_backup", "version": 1, "name": "r1",
                          "reason": "forced standby"})  # fmt: skip
    assert (held.command, held.name, held.reason) == ("hold_backup", "r1", "forced standby")
    released = parse_request({"command": "release", "version": 1, "name": "r1"})
    assert (released.command, released.name) == ("release", "r1")


def test_a_snapshot_subscriber_starts_with_one_and_gets_another_after_an_overflow() -> None:
    state = {"n": 0}

    async def go() -> None:
        hub = EventHub(limit=2, snapshot=lambda: {"event": "snapshot", "seq": hub.seq,
                                                  "instances": [state["n"]]})  # fmt: skip
        plain, fresh = hub.subscribe(), hub.subscribe(snapshots=True)
        assert await fresh.get() == {"event": "snapshot", "seq": 0, "instances": [0]}
        for n in range(1, 6):
            state["n"] = n
            hub.publish({"event": "state", "n": n})
        assert [(await fresh.get())["n"] for _ in range(2)] == [1, 2]
        overflow = await fresh.get()
        assert overflow == {"event": "overflow", "dropped": 3, "first_seq": 3, "last_seq": 5}
        state["n"] = 5
        assert await fresh.get() == {"event": "snapshot", "seq": 5, "instances": [5]}
        hub.publish({"event": "state", "n": 6})
        assert await fresh.get() == {"event": "state", "n": 6, "seq": 6}
        assert (await plain.get())["n"] == 1  # without snapshots: as before

    asyncio.run(go())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
PATHS = [
    "interface", "vrid", "priority", "version", "advert_int", "nopreempt", "netns",
    "addresses", "addresses[0]", "addresses[1]", "addresses[1].dev", "addresses[2].scope",
    "addresses[2].label", "routes", "routes[0]", "routes[0].to", "routes[1].src",
    "routes[1].protocol", "routes[1].type", "rules[0]", "rules[0].source", "rules[0].iif",
    "unicast", "unicast.peers", "unicast.source", "track_interfaces",
    "track_interfaces[1].weight", "garp_interval", "garp_refresh_repeat", "preempt_delay",
]  # fmt: skip


@given(st.sampled_from(PATHS), JSON)
@settings(max_examples=600)
def test_any_value_anywhere_parses_or_is_refused(path: str, value: Any) -> None:
    try:
        parse_request(at(path, value))
    except SchemaError as exc:
        assert str(exc).startswith("instances.r1"), str(exc)


@given(st.dictionaries(st.sampled_from(["command", "version", "name", "instance", "instances",
                                        "reason"]), JSON, max_size=5)
       | JSON)  # fmt: skip
@settings(max_examples=400)
def test_any_request_parses_or_is_refused(data: Any) -> None:
    with contextlib.suppress(SchemaError):
        parse_request(data)


def test_sync_keeps_the_named_running_instances() -> None:
    request = parse_request(sync({"r1": ROUTER}) | {"keep": ["r2", "r3"]})
    assert request.keep == frozenset({"r2", "r3"}) and set(request.instances or {}) == {"r1"}
    assert parse_request(sync({})).keep == frozenset()
