"""Instance configuration for the VRRP runtime: defaults and types declared in one place.

A YAML file holds ``instances: {NAME: {key: value}}``. Unknown keys are rejected, and every
error names the file, the instance and the key. (keepalived.conf support is hanet vrrpd's.)
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from hanet.vrrp.fsm import Params

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class ConfigError(ValueError):
    pass


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
ROUTE_KEYS = {"to", "via", "metric", "table"}


@dataclass(frozen=True)
class VirtualAddress:
    """An address that follows mastership. ``advertised``: carried in the adverts (keepalived's
    virtual_ipaddress) or not (virtual_ipaddress_excluded). ``dev`` None: the VRRP interface."""

    address: IPInterface
    dev: str | None = None
    broadcast: str | None = None
    scope: str | None = None
    label: str | None = None
    advertised: bool = True


@dataclass(frozen=True)
class VirtualRoute:
    """A route that follows mastership, like keepalived's virtual_routes."""

    to: IPNetwork
    via: IPAddr | None = None
    metric: int | None = None
    table: int | None = None
    dev: str | None = None
    src: IPAddr | None = None
    scope: str | None = None
    protocol: str | None = None
    kind: str = "unicast"

    @classmethod
    def parse(cls, entry: Any, where: str) -> VirtualRoute:
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with keys {sorted(ROUTE_KEYS)}")
        unknown = sorted(set(entry) - ROUTE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
        if "to" not in entry:
            raise ConfigError(f"{where}: missing key 'to'")
        try:
            to = str(entry["to"])
            network = ipaddress.ip_network("0.0.0.0/0" if to == "default" else to)
            via = ipaddress.ip_address(str(entry["via"])) if "via" in entry else None
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for key, top in (("metric", 2**32 - 1), ("table", 2**32 - 1)):
            value = entry.get(key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top
            ):
                raise ConfigError(f"{where}.{key}: expected an integer 0..{top}")
        if via is not None and via.version != network.version:
            raise ConfigError(f"{where}: 'via' and 'to' are of different IP families")
        return cls(network, via, entry.get("metric"), entry.get("table"))


@dataclass(frozen=True)
class VirtualRule:
    """A policy rule that follows mastership (keepalived's virtual_rules)."""

    source: IPNetwork | None = None
    destination: IPNetwork | None = None
    table: int | None = None
    priority: int | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None


@dataclass(frozen=True)
class InstanceConfig:
    name: str
    interface: str
    vrid: int
    priority: int
    vips: tuple[VirtualAddress, ...]
    version: int = 3
    advert_int: float = 1.0
    preempt: bool = True
    preempt_delay: float = 0.0
    accept: bool = True
    auth_pass: str | None = None
    garp_repeat: int = 5
    garp_interval: float = 0.0
    garp_refresh_delay: float = 5.0
    lower_prio_no_advert: bool = False
    netns: str | None = None
    routes: tuple[VirtualRoute, ...] = ()
    rules: tuple[VirtualRule, ...] = ()
    higher_prio_send_advert: bool = False
    garp_refresh_interval: float = 0.0
    garp_refresh_repeat: int = 1
    source_ip: IPAddr | None = None
    unicast_peers: tuple[IPAddr, ...] = ()
    group_member: bool = False  # in a keepalived vrrp_sync_group
    # The kernel drops adverts of other VRIDs before they reach us (a socket filter on the
    # link), when every instance of the link asks for it: a Neutron HA network carries the
    # adverts of every router of a project, one VRID each, to every router namespace, and
    # reading them all was most of vrrpd's time at a few hundred routers. They are then
    # not counted as vrid_not_ours.
    vrid_filter: bool = False

    def __post_init__(self) -> None:
        where = f"instance {self.name}"
        if not self.addresses:
            raise ConfigError(f"{where}: addresses: at least one virtual address is needed")
        families = {a.version for a in self.addresses}
        if len(families) > 1:
            raise ConfigError(f"{where}: addresses: IPv4 and IPv6 need separate instances")
        if any(p.version != self.family for p in self.unicast_peers) or (
            self.source_ip is not None and self.source_ip.version != self.family
        ):
            raise ConfigError(f"{where}: unicast addresses must be of the VIPs' IP family")
        if self.family == 6 and self.version == 2:
            raise ConfigError(f"{where}: version: VRRPv2 is IPv4 only, use version 3")
        if self.auth_pass is not None and self.version != 2:
            raise ConfigError(f"{where}: auth_pass: authentication exists in VRRPv2 only")
        if self.auth_pass is not None and not 1 <= len(self.auth_pass.encode()) <= 8:
            raise ConfigError(f"{where}: auth_pass: 1 to 8 bytes")
        if not 0 <= self.garp_repeat <= 100:
            raise ConfigError(f"{where}: garp_repeat: 0..100")
        if self.garp_interval < 0 or self.garp_refresh_delay < 0:
            raise ConfigError(f"{where}: garp delays cannot be negative")
        try:
            self.params()
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @property
    def addresses(self) -> tuple[IPInterface, ...]:
        """The addresses the adverts carry."""
        return tuple(v.address for v in self.vips if v.advertised)

    @property
    def family(self) -> int:
        return self.addresses[0].version

    @property
    def filters_traffic(self) -> bool:
        """Accept_Mode off: a non-owner master drops traffic to its VIPs (RFC 5798 §6.4.3)."""
        return not self.accept and self.priority != 255

    @property
    def advert_int_cs(self) -> int:
        return round(self.advert_int * 100)

    def params(self, primary: Any = None) -> Params:
        placeholder = ipaddress.ip_address("0.0.0.0" if self.family == 4 else "::")
        return Params(
            vrid=self.vrid,
            priority=self.priority,
            primary_address=primary or placeholder,
            advert_int_cs=self.advert_int_cs,
            version=self.version,
            preempt=self.preempt,
            preempt_delay=self.preempt_delay,
            accept_mode=self.accept,
            lower_prio_no_advert=self.lower_prio_no_advert,
            higher_prio_send_advert=self.higher_prio_send_advert,
            group_member=self.group_member,
        )


# The YAML file offers the common settings; keepalived.conf (hanet vrrpd) offers all of them.
YAML_KEYS = {
    "interface", "vrid", "priority", "addresses", "version", "advert_int", "preempt",
    "preempt_delay", "accept", "auth_pass", "garp_repeat", "garp_interval",
    "garp_refresh_delay", "lower_prio_no_advert", "netns", "routes", "source_ip",
    "unicast_peers",
}  # fmt: skip
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "str | None": (str,),
}


def _convert(name: str, value: Any, where: str) -> Any:
    if name == "source_ip":
        try:
            return ipaddress.ip_address(str(value))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if name == "unicast_peers":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of addresses")
        try:
            return tuple(ipaddress.ip_address(str(v)) for v in value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if name == "routes":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of routes")
        return tuple(VirtualRoute.parse(entry, f"{where}[{i}]") for i, entry in enumerate(value))
    if name == "addresses":
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of addresses")
        try:
            return tuple(VirtualAddress(ipaddress.ip_interface(str(v))) for v in value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    kind = {f.name: str(f.type) for f in fields(InstanceConfig)}[name]
    allowed = _TYPES[kind]
    if isinstance(value, bool) and bool not in allowed:
        raise ConfigError(f"{where}: expected {kind}, got a boolean")
    if not isinstance(value, allowed):
        raise ConfigError(f"{where}: expected {kind}, got {type(value).__name__}")
    return value


def parse_instances(data: Any, source: str) -> list[InstanceConfig]:
    if not isinstance(data, dict) or set(data) != {"instances"}:
        raise ConfigError(f"{source}: the file holds one mapping, 'instances'")
    entries = data["instances"]
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{source}: instances: a mapping of name to settings")
    known = YAML_KEYS
    required = {"interface", "vrid", "priority", "addresses"}
    result = []
    for name, entry in entries.items():
        at = f"{source}: instances.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{at}: an instance name is 1-64 of [A-Za-z0-9_.-]")
        if not isinstance(entry, dict):
            raise ConfigError(f"{at}: expected a mapping")
        for key in entry:
            if key not in known:
                raise ConfigError(f"{at}: unknown key {key!r}")
        for key in sorted(required - set(entry)):
            raise ConfigError(f"{at}: missing key {key!r}")
        values = {key: _convert(key, value, f"{at}.{key}") for key, value in entry.items()}
        values["vips"] = values.pop("addresses")
        try:
            result.append(InstanceConfig(name=name, **values))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    seen: dict[tuple[str | None, str, int, int], str] = {}
    for inst in result:
        key = (inst.netns, inst.interface, inst.family, inst.vrid)
        if key in seen:
            raise ConfigError(
                f"{source}: instances.{inst.name}: vrid {inst.vrid} on {inst.interface} "
                f"is already used by {seen[key]}"
            )
        seen[key] = inst.name
    return result


def load_instances(path: str | Path) -> list[InstanceConfig]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_instances(data, str(path))
