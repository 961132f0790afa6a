"""The control socket's request schema, version 1: what an agent may say, typed and checked.

This is the protocol, not the runtime: it is parsed into hanet.runtime.config's
InstanceConfig (what the keepalived.conf mapping produces too) plus what the instance
tracks, so that a run-time instance can say everything a file instance can. Every key is
typed and checked, unknown keys are refused, and an error names where it is, as
``instances.r1.routes[2].via: ...``. Pure: no I/O.

A request without ``version`` is a version 0 request, the original ones (``add``/``change``
with the keys of hanet's instance files): kept as they were, so existing clients go on
working. The requests added since (``sync``, ``hold_backup``, ``release``) need version 1.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hanet.runtime.config import (
    ConfigError,
    InstanceConfig,
    VirtualAddress,
    VirtualRoute,
    VirtualRule,
    parse_instances,
)
from hanet.vrrpd.tracking import Tracking, Weighted

T = TypeVar("T")

VERSION = 1
MAX_U32 = 2**32 - 1
SCOPES = ("global", "site", "link", "host", "nowhere")
ROUTE_TYPES = ("unicast", "blackhole", "unreachable", "prohibit", "throw")
PROTOCOLS = {"unspec": 0, "redirect": 1, "kernel": 2, "boot": 3, "static": 4}
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # as instance files name instances
NETNS = re.compile(r"^[A-Za-z0-9_.@+-]{1,255}$")
IFNAME = re.compile(r"^[^\s/:]{1,15}$")  # the kernel's IFNAMSIZ, and what it refuses

V0_COMMANDS = ("status", "subscribe", "add", "change", "remove")
COMMANDS = (*V0_COMMANDS, "sync", "hold_backup", "release", "announce")
REQUEST_KEYS: dict[str, tuple[set[str], set[str]]] = {  # command: (required, optional)
    "status": (set(), set()),
    "subscribe": (set(), set()),
    "add": ({"name", "instance"}, set()),
    "change": ({"name", "instance"}, set()),
    "remove": ({"name"}, set()),
    "sync": ({"instances"}, {"keep"}),
    "hold_backup": ({"name"}, {"reason"}),
    "release": ({"name"}, set()),
    "announce": ({"name"}, set()),
}


class SchemaError(ValueError):
    """A request this schema refuses; the message says where and why."""


@dataclass(frozen=True)
class InstanceSpec:
    """One run-time instance: its configuration, and what it tracks (None: nothing, as a
    version 0 instance)."""

    config: InstanceConfig
    tracking: Tracking | None = None


@dataclass(frozen=True)
class Request:
    command: str
    version: int
    name: str | None = None
    instance: InstanceSpec | None = None  # add, change
    instances: dict[str, InstanceSpec] | None = None  # sync
    keep: frozenset[str] = frozenset()  # sync: running instances left as they are
    reason: str = ""  # hold_backup


# Requests ---------------------------------------------------------------------------------


def parse_request(data: Any) -> Request:
    if not isinstance(data, dict):
        raise SchemaError("a request is a JSON object")
    command = data.get("command")
    if command not in COMMANDS:
        raise SchemaError(f"'command' must be one of {', '.join(sorted(COMMANDS))}")
    version = _version(data)
    if version == 0 and command not in V0_COMMANDS:
        raise SchemaError(f'{command!r} needs "version": {VERSION}')
    required, optional = REQUEST_KEYS[command]
    unknown = sorted(set(data) - required - optional - {"command", "version"})
    if unknown:
        raise SchemaError(f"unknown key {unknown[0]!r}")
    missing = sorted(required - set(data))
    if missing:
        raise SchemaError(f"{command!r} needs {missing[0]!r}")
    name = None
    if "name" in data:
        name = data["name"]
        if not isinstance(name, str) or not NAME.match(name):
            raise SchemaError("name: an instance name is 1-64 of [A-Za-z0-9_.-]")
    if command in ("add", "change"):
        assert name is not None
        parse = parse_instance if version else parse_v0_instance
        return Request(command, version, name, instance=parse(name, data["instance"], "instance"))
    if command == "sync":
        instances = parse_instance_set(data["instances"])
        keep = parse_keep(data.get("keep", []), instances)
        return Request(command, version, instances=instances, keep=keep)
    reason = data.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 200:
        raise SchemaError("reason: a string of at most 200 characters")
    return Request(command, version, name, reason=reason)


def _version(data: dict[str, Any]) -> int:
    if "version" not in data:
        return 0
    version = data["version"]
    if version != VERSION or isinstance(version, bool) or not isinstance(version, int):
        raise SchemaError(
            f"version: {version!r} is not supported; this daemon speaks version {VERSION} "
            "(or no version at all, for the original requests)"
        )
    return VERSION


def parse_v0_instance(name: str, entry: Any, where: str) -> InstanceSpec:
    """The original ``add``/``change``: the keys of hanet's instance files, no tracking."""
    if not isinstance(entry, dict):
        raise SchemaError(f"{where}: an object")
    try:
        (config,) = parse_instances({"instances": {name: entry}}, "request")
    except ConfigError as exc:
        raise SchemaError(str(exc)) from None
    return InstanceSpec(config)


def parse_keep(data: Any, instances: dict[str, InstanceSpec]) -> frozenset[str]:
    """``sync``'s ``keep``: names of running instances to leave as they run, although the
    set leaves them out (an agent that restarted and cannot describe them anew)."""
    if not isinstance(data, list):
        raise SchemaError("keep: a list of instance names")
    for index, name in enumerate(data):
        if not isinstance(name, str) or not NAME.match(name):
            raise SchemaError(f"keep[{index}]: an instance name is 1-64 of [A-Za-z0-9_.-]")
        if name in instances:
            raise SchemaError(f"keep[{index}]: {name} is in 'instances' too")
    return frozenset(data)


def parse_instance_set(data: Any) -> dict[str, InstanceSpec]:
    if not isinstance(data, dict):
        raise SchemaError("instances: an object of instance name to instance")
    result = {}
    for name, entry in data.items():
        if not NAME.match(name):
            raise SchemaError(f"instances.{name}: an instance name is 1-64 of [A-Za-z0-9_.-]")
        result[name] = parse_instance(name, entry, f"instances.{name}")
    return result


# One instance -----------------------------------------------------------------------------

INSTANCE_KEYS = {
    "interface", "vrid", "priority", "addresses", "version", "advert_int", "preempt",
    "nopreempt", "preempt_delay", "accept", "auth_pass", "garp_repeat", "garp_interval",
    "garp_refresh_delay", "garp_refresh_interval", "garp_refresh_repeat",
    "lower_prio_no_advert", "higher_prio_send_advert", "netns", "routes", "rules",
    "unicast", "track_interfaces", "vrid_filter",
}  # fmt: skip
FLAGS = ("accept", "lower_prio_no_advert", "higher_prio_send_advert", "vrid_filter")
NUMBERS = {  # key: (low, high) for numbers in seconds
    "advert_int": (0.01, 40.95),
    "preempt_delay": (0.0, 3600.0),
    "garp_interval": (0.0, 60.0),
    "garp_refresh_delay": (0.0, 3600.0),
    "garp_refresh_interval": (0.0, 86400.0),
}
COUNTS = {"garp_repeat": (0, 100), "garp_refresh_repeat": (1, 100)}


def parse_instance(name: str, entry: Any, where: str) -> InstanceSpec:
    """A version 1 instance; ``where`` is its place in the request (``instances.r1``)."""
    obj = _object(entry, where, INSTANCE_KEYS, {"interface", "vrid", "priority", "addresses"})
    interface = _ifname(obj["interface"], f"{where}.interface")
    values: dict[str, Any] = {
        "interface": interface,
        "vrid": _int(obj["vrid"], f"{where}.vrid", 1, 255),
        "priority": _int(obj["priority"], f"{where}.priority", 1, 255),
        "vips": _addresses(obj["addresses"], f"{where}.addresses", interface),
    }
    if "version" in obj:
        values["version"] = _int(obj["version"], f"{where}.version", 2, 3)
    for key in FLAGS:
        if key in obj:
            values[key] = _bool(obj[key], f"{where}.{key}")
    if "preempt" in obj and "nopreempt" in obj:
        raise SchemaError(f"{where}.nopreempt: give preempt or nopreempt, not both")
    if "preempt" in obj:
        values["preempt"] = _bool(obj["preempt"], f"{where}.preempt")
    if "nopreempt" in obj:
        values["preempt"] = not _bool(obj["nopreempt"], f"{where}.nopreempt")
    for key, (low, high) in NUMBERS.items():
        if key in obj:
            values[key] = _number(obj[key], f"{where}.{key}", low, high)
    for key, (first, last) in COUNTS.items():
        if key in obj:
            values[key] = _int(obj[key], f"{where}.{key}", first, last)
    if "auth_pass" in obj:
        values["auth_pass"] = _str(obj["auth_pass"], f"{where}.auth_pass", 8)
    netns = None
    if "netns" in obj:
        netns = values["netns"] = _netns(obj["netns"], f"{where}.netns")
    if "routes" in obj:
        values["routes"] = _list(obj["routes"], f"{where}.routes", _route, interface)
    if "rules" in obj:
        values["rules"] = _list(obj["rules"], f"{where}.rules", _rule, interface)
    if "unicast" in obj:
        values["source_ip"], values["unicast_peers"] = _unicast(obj["unicast"], f"{where}.unicast")
    tracked = _list(obj.get("track_interfaces", []), f"{where}.track_interfaces", _tracked, "")
    names = [interface] + [t.name for t in tracked]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SchemaError(f"{where}.track_interfaces: {twice[0]} is tracked twice (the VRRP "
                          "interface is tracked always)")  # fmt: skip
    try:
        config = InstanceConfig(name=name, **values)
    except (ConfigError, ValueError) as exc:
        message = str(exc).removeprefix(f"instance {name}: ")
        raise SchemaError(f"{where}: {message}") from None
    # keepalived tracks an instance's own interface: a link down is FAULT, not a master
    # that nobody hears.
    tracking = Tracking(interfaces=(Weighted(interface), *tracked), netns=netns)
    return InstanceSpec(config, tracking)


def _addresses(value: Any, where: str, interface: str) -> tuple[VirtualAddress, ...]:
    vips = _list(value, where, _address, interface)
    if not any(v.advertised for v in vips):
        raise SchemaError(f"{where}: at least one advertised address is needed")
    seen: set[tuple[str | None, object]] = set()
    for index, vip in enumerate(vips):
        key = (vip.dev, vip.address.ip)
        if key in seen:
            raise SchemaError(f"{where}[{index}]: {vip.address.ip} is given twice on its device")
        seen.add(key)
    return vips


ADDRESS_KEYS = {"address", "dev", "advertised", "scope", "label", "broadcast"}


def _address(value: Any, where: str, interface: str) -> VirtualAddress:
    if isinstance(value, str):
        return VirtualAddress(_interface_address(value, where))
    obj = _object(value, where, ADDRESS_KEYS, {"address"}, "an address string or object")
    address = _interface_address(obj["address"], f"{where}.address")
    dev = _ifname(obj["dev"], f"{where}.dev") if "dev" in obj else None
    label = None
    if "label" in obj:
        label = _str(obj["label"], f"{where}.label", 15)
        device = dev or interface
        if label != device and not label.startswith(f"{device}:"):
            raise SchemaError(f"{where}.label: must be {device} or start with '{device}:'")
    broadcast = None
    if "broadcast" in obj:
        broadcast = _ip(obj["broadcast"], f"{where}.broadcast")
        if broadcast.version != 4 or address.version != 4:
            raise SchemaError(f"{where}.broadcast: IPv4 addresses only")
    return VirtualAddress(
        address,
        dev if dev != interface else None,
        str(broadcast) if broadcast is not None else None,
        _choice(obj["scope"], f"{where}.scope", SCOPES) if "scope" in obj else None,
        label,
        _bool(obj.get("advertised", True), f"{where}.advertised"),
    )


ROUTE_KEYS = {"to", "via", "metric", "table", "dev", "src", "scope", "protocol", "type"}


def _route(value: Any, where: str, interface: str) -> VirtualRoute:
    obj = _object(value, where, ROUTE_KEYS, {"to"})
    to = obj["to"]
    to = _network(("0.0.0.0/0" if to == "default" else to), f"{where}.to")
    via = _ip(obj["via"], f"{where}.via") if "via" in obj else None
    src = _ip(obj["src"], f"{where}.src") if "src" in obj else None
    for key, address in (("via", via), ("src", src)):
        if address is not None and address.version != to.version:
            raise SchemaError(f"{where}.{key}: {address} is not of the family of 'to' ({to})")
    kind = _choice(obj.get("type", "unicast"), f"{where}.type", ROUTE_TYPES)
    if kind != "unicast" and ("via" in obj or "dev" in obj):
        raise SchemaError(f"{where}.type: a {kind} route has no via or dev")
    protocol = None
    if "protocol" in obj:
        raw = obj["protocol"]
        if isinstance(raw, str) and raw in PROTOCOLS:
            raw = PROTOCOLS[raw]
        elif isinstance(raw, str):
            raise SchemaError(f"{where}.protocol: one of {', '.join(PROTOCOLS)}, or 0..255")
        protocol = str(_int(raw, f"{where}.protocol", 0, 255))
    return VirtualRoute(
        to,
        via,
        _int(obj["metric"], f"{where}.metric", 0, MAX_U32) if "metric" in obj else None,
        _int(obj["table"], f"{where}.table", 0, MAX_U32) if "table" in obj else None,
        _ifname(obj["dev"], f"{where}.dev") if "dev" in obj else None,
        src,
        _choice(obj["scope"], f"{where}.scope", SCOPES) if "scope" in obj else None,
        protocol,
        kind,
    )


RULE_KEYS = {"source", "destination", "table", "priority", "iif", "oif", "fwmark"}


def _rule(value: Any, where: str, interface: str) -> VirtualRule:
    obj = _object(value, where, RULE_KEYS, {"table"})
    source = _network(obj["source"], f"{where}.source") if "source" in obj else None
    destination = (
        _network(obj["destination"], f"{where}.destination") if "destination" in obj else None
    )
    if source is not None and destination is not None and source.version != destination.version:
        raise SchemaError(f"{where}.destination: not of the family of 'source'")
    return VirtualRule(
        source,
        destination,
        _int(obj["table"], f"{where}.table", 0, MAX_U32),
        _int(obj["priority"], f"{where}.priority", 0, MAX_U32) if "priority" in obj else None,
        _ifname(obj["iif"], f"{where}.iif") if "iif" in obj else None,
        _ifname(obj["oif"], f"{where}.oif") if "oif" in obj else None,
        _int(obj["fwmark"], f"{where}.fwmark", 0, MAX_U32) if "fwmark" in obj else None,
    )


def _unicast(value: Any, where: str) -> tuple[Any, tuple[Any, ...]]:
    obj = _object(value, where, {"source", "peers"}, {"peers"})
    source = _ip(obj["source"], f"{where}.source") if "source" in obj else None
    peers = _list(obj["peers"], f"{where}.peers", lambda v, w, _: _ip(v, w), "")
    if not peers:
        raise SchemaError(f"{where}.peers: at least one peer")
    if len(set(peers)) != len(peers):
        raise SchemaError(f"{where}.peers: a peer is given twice")
    return source, peers


def _tracked(value: Any, where: str, _: str) -> Weighted:
    if isinstance(value, str):
        return Weighted(_ifname(value, where))
    obj = _object(value, where, {"name", "weight", "reverse"}, {"name"},
                  "an interface name or object")  # fmt: skip
    return Weighted(
        _ifname(obj["name"], f"{where}.name"),
        _int(obj.get("weight", 0), f"{where}.weight", -254, 254),
        _bool(obj.get("reverse", False), f"{where}.reverse"),
    )


# Typed values -----------------------------------------------------------------------------


def _object(value: Any, where: str, known: set[str], required: set[str],
            what: str = "an object") -> dict[str, Any]:  # fmt: skip
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected {what}, got {_type(value)}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise SchemaError(
            f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    missing = sorted(required - set(value))
    if missing:
        raise SchemaError(f"{where}: missing key {missing[0]!r}")
    return value


def _list(value: Any, where: str, item: Any, context: str) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise SchemaError(f"{where}: expected a list, got {_type(value)}")
    return tuple(item(entry, f"{where}[{index}]", context) for index, entry in enumerate(value))


def _type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object", type(None): "null"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SchemaError(f"{where}: expected an integer {low}..{high}, got {_type(value)}")
    if not low <= value <= high:
        raise SchemaError(f"{where}: {value} is outside {low}..{high}")
    return value


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(f"{where}: expected a number of seconds, got {_type(value)}")
    if not (math.isfinite(value) and low <= value <= high):
        raise SchemaError(f"{where}: {value} is outside {low:g}..{high:g} s")
    return float(value)


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"{where}: expected true or false, got {_type(value)}")
    return value


def _str(value: Any, where: str, longest: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= longest:
        raise SchemaError(f"{where}: expected a string of 1 to {longest} characters")
    return value


def _choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed or not isinstance(value, str):
        raise SchemaError(f"{where}: expected one of {', '.join(allowed)}")
    return value


def _ifname(value: Any, where: str) -> str:
    if not isinstance(value, str) or not IFNAME.match(value) or value in (".", ".."):
        raise SchemaError(f"{where}: expected an interface name (1-15 characters, no '/', "
                          "':' or spaces)")  # fmt: skip
    return value


def _netns(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NETNS.match(value) or value in (".", ".."):
        raise SchemaError(f"{where}: expected a namespace name (as under /run/netns)")
    return value


def _parsed(value: Any, where: str, parse: Callable[[str], T], example: str) -> T:
    """``parse(value)`` for an address, interface or network string, refused with where."""
    if not isinstance(value, str):
        raise SchemaError(f"{where}: expected {example}, got {_type(value)}")
    try:
        return parse(value)
    except ValueError as exc:
        raise SchemaError(f"{where}: {exc}") from None


def _ip(value: Any, where: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return _parsed(value, where, ipaddress.ip_address, "an IP address string")


def _interface_address(value: Any, where: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return _parsed(value, where, ipaddress.ip_interface, "an address such as 10.0.0.1/24")


def _network(value: Any, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return _parsed(value, where, ipaddress.ip_network, "a network such as 10.0.0.0/24")
