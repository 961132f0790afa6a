"""A lab topology: hosts (network namespaces), L2 segments (bridges) and links (veth pairs).

Declared in Python or in a YAML file such as::

    prefix: demo
    segments: [lan]
    hosts:
      r1:
        interfaces:
          eth0: {segment: lan, addresses: [10.0.0.1/24, "fd00::1/64"]}

Every error names the file and the entry, e.g. ``lab.yaml: hosts.r1.interfaces.eth0.segment:
unknown segment 'wan' (segments: lan)``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hanet.yaml_file import read_yaml

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
IFNAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_.-]{0,14}$")
PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class LabFileError(ValueError):
    """A topology that cannot be built; the message names where and why."""


@dataclass(frozen=True)
class Link:
    segment: str
    addresses: tuple[Interface, ...] = ()


@dataclass(frozen=True)
class Host:
    interfaces: Mapping[str, Link] = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    segments: tuple[str, ...]
    hosts: Mapping[str, Host]
    prefix: str | None = None

    def __post_init__(self) -> None:
        self.validate("topology")

    def validate(self, where: str) -> None:
        if self.prefix is not None and not PREFIX_RE.match(self.prefix):
            raise LabFileError(f"{where}: prefix: {self.prefix!r} must match {PREFIX_RE.pattern}")
        for segment in self.segments:
            if not NAME_RE.match(segment):
                raise LabFileError(f"{where}: segments: {segment!r} must match {NAME_RE.pattern}")
        if len(set(self.segments)) != len(self.segments):
            raise LabFileError(f"{where}: segments: a segment is listed twice")
        if not self.hosts:
            raise LabFileError(f"{where}: hosts: at least one host is needed")
        for host_name, host in self.hosts.items():
            if not NAME_RE.match(host_name) or host_name == "sw":
                raise LabFileError(
                    f"{where}: hosts.{host_name}: a host name must match {NAME_RE.pattern} "
                    "and not be 'sw'"
                )
            for ifname, link in host.interfaces.items():
                at = f"{where}: hosts.{host_name}.interfaces.{ifname}"
                if not IFNAME_RE.match(ifname) or ifname == "lo":
                    raise LabFileError(f"{at}: not a usable interface name")
                if link.segment not in self.segments:
                    known = ", ".join(self.segments) or "none"
                    raise LabFileError(
                        f"{at}.segment: unknown segment {link.segment!r} (segments: {known})"
                    )


def _expect(value: Any, kind: type | tuple[type, ...], at: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise LabFileError(f"{at}: expected {what}, got {type(value).__name__}")
    return value


def _reject_unknown(entry: Mapping[str, Any], allowed: set[str], at: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise LabFileError(
            f"{at}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _parse_link(entry: Any, at: str) -> Link:
    entry = _expect(entry, dict, at, "a mapping")
    _reject_unknown(entry, {"segment", "addresses"}, at)
    if "segment" not in entry:
        raise LabFileError(f"{at}: missing key 'segment'")
    segment = _expect(entry["segment"], str, f"{at}.segment", "a segment name")
    addresses = []
    for index, text in enumerate(_expect(entry.get("addresses", []), list, at, "a list")):
        try:
            addresses.append(ipaddress.ip_interface(_expect(text, str, at, "an address")))
        except ValueError as exc:
            raise LabFileError(f"{at}.addresses[{index}]: {exc}") from None
    return Link(segment, tuple(addresses))


def parse_topology(data: Any, source: str) -> Topology:
    """Build a Topology from loaded YAML; ``source`` names the file in errors."""
    data = _expect(data, dict, source, "a mapping at the top")
    _reject_unknown(data, {"prefix", "segments", "hosts"}, source)
    segments = _expect(data.get("segments", []), list, f"{source}: segments", "a list")
    hosts_in = _expect(data.get("hosts", {}), dict, f"{source}: hosts", "a mapping")
    hosts = {}
    for name, host in hosts_in.items():
        at = f"{source}: hosts.{name}"
        host = _expect(host if host is not None else {}, dict, at, "a mapping")
        _reject_unknown(host, {"interfaces"}, at)
        interfaces = _expect(host.get("interfaces", {}), dict, f"{at}.interfaces", "a mapping")
        links = {
            str(ifname): _parse_link(link, f"{at}.interfaces.{ifname}")
            for ifname, link in interfaces.items()
        }
        hosts[str(name)] = Host(links)
    prefix = data.get("prefix")
    if prefix is not None:
        _expect(prefix, str, f"{source}: prefix", "a string")
    try:
        return Topology(tuple(str(s) for s in segments), hosts, prefix)
    except LabFileError as exc:
        raise LabFileError(str(exc).replace("topology:", f"{source}:", 1)) from None


def load_topology(path: str | Path) -> Topology:
    path = Path(path)
    return parse_topology(read_yaml(path, LabFileError), str(path))


def lan_topology(routers: int = 2, clients: int = 1, prefix: str | None = None) -> Topology:
    """Routers r1..rN at 10.0.0.N and fd00::N, clients c (or c1..cM) at .101+, one LAN."""
    hosts: dict[str, Host] = {}
    for n in range(1, routers + 1):
        addresses = (ipaddress.ip_interface(f"10.0.0.{n}/24"),
                     ipaddress.ip_interface(f"fd00::{n}/64"))  # fmt: skip
        hosts[f"r{n}"] = Host({"eth0": Link("lan", addresses)})
    for n in range(1, clients + 1):
        name = "c" if clients == 1 else f"c{n}"
        addresses = (ipaddress.ip_interface(f"10.0.0.{100 + n}/24"),
                     ipaddress.ip_interface(f"fd00::{100 + n:x}/64"))  # fmt: skip
        hosts[name] = Host({"eth0": Link("lan", addresses)})
    return Topology(("lan",), hosts, prefix)
