"""What a keepalived.conf says about VRRP, as plain data. Defaults are keepalived 2.2.7's."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from hanet.keepalived.tokens import Location

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Problem:
    where: Location
    message: str
    severity: str = "error"  # "error" stops the config; "warning" is only reported

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{self.where}: {prefix}{self.message}"


@dataclass
class GlobalDefs:
    router_id: str | None = None
    vrrp_version: int = 2
    garp_master_delay: float = 5.0
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    garp_interval: float = 0.0
    gna_interval: float = 0.0
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    enable_script_security: bool = False
    script_user: tuple[str, str | None] | None = None
    vrrp_strict: bool = False
    vrrp_startup_delay: float = 0.0
    vrrp_priority: int | None = None  # the daemon's nice value, as keepalived's


@dataclass
class Script:
    """vrrp_script: a check run every ``interval`` seconds."""

    name: str
    where: Location
    command: str | None = None
    interval: float = 1.0
    timeout: float | None = None
    weight: int = 0
    weight_reverse: bool = False
    rise: int = 1
    fall: int = 1
    user: tuple[str, str | None] | None = None
    init_fail: bool = False
    places: dict[str, Location] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class TrackFile:
    name: str
    where: Location
    file: str | None = None
    weight: int = 1
    weight_reverse: bool = False
    init_file: int | None = None
    init_overwrite: bool = False


@dataclass(frozen=True)
class Address:
    address: IPInterface
    dev: str | None = None
    broadcast: str | None = None
    scope: str | None = None
    label: str | None = None
    no_track: bool = False


@dataclass(frozen=True)
class Route:
    to: IPNetwork
    kind: str = "unicast"  # or blackhole, unreachable, prohibit, throw
    via: IPAddress | None = None
    dev: str | None = None
    src: IPAddress | None = None
    scope: str | None = None
    table: int | None = None
    metric: int | None = None
    protocol: str | None = None
    onlink: bool = False
    no_track: bool = False


@dataclass(frozen=True)
class Rule:
    source: IPNetwork | None = None
    destination: IPNetwork | None = None
    table: int | None = None
    priority: int | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None
    no_track: bool = False


@dataclass(frozen=True)
class TrackRef:
    """A track_interface / track_script / track_file entry, with an optional weight."""

    name: str
    where: Location
    weight: int | None = None
    reverse: bool = False


@dataclass
class Instance:
    name: str
    where: Location
    state: str | None = None
    interface: str | None = None
    vrid: int | None = None
    priority: int = 100
    advert_int: float = 1.0
    version: int | None = None
    preempt: bool = True
    preempt_delay: float = 0.0
    mcast_src_ip: IPAddress | None = None
    unicast_src_ip: IPAddress | None = None
    unicast_peers: list[IPAddress] = field(default_factory=list)
    auth_type: str | None = None
    auth_pass: str | None = None
    track_interfaces: list[TrackRef] = field(default_factory=list)
    track_scripts: list[TrackRef] = field(default_factory=list)
    track_files: list[TrackRef] = field(default_factory=list)
    vips: list[Address] = field(default_factory=list)
    excluded: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    accept: bool | None = None
    garp_master_delay: float | None = None
    garp_master_repeat: int | None = None
    garp_master_refresh: float | None = None
    garp_master_refresh_repeat: int | None = None
    notify_master: str | None = None
    notify_backup: str | None = None
    notify_fault: str | None = None
    notify_stop: str | None = None
    notify: str | None = None
    places: dict[str, Location] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class SyncGroup:
    name: str
    where: Location
    members: list[str] = field(default_factory=list)
    track_scripts: list[TrackRef] = field(default_factory=list)
    notify_master: str | None = None
    notify_backup: str | None = None
    notify_fault: str | None = None
    notify_stop: str | None = None
    notify: str | None = None
    places: dict[str, Location] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class KeepalivedConfig:
    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    scripts: dict[str, Script] = field(default_factory=dict)
    track_files: dict[str, TrackFile] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    sync_groups: dict[str, SyncGroup] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]
