"""A router's NAT as one nftables table: what Neutron's L3 agent does with iptables
(neutron/agent/l3/router_info.py: the snat, float-snat and PREROUTING/OUTPUT DNAT rules;
../shared/reference/neutron-agents.md), written as the complete text of the router's own
table.

- SNAT (``enable_snat``): traffic from an internal subnet that leaves by the ``qg-`` device
  takes the gateway address. Traffic between internal subnets is routed untouched.
- Floating IPs, 1:1: traffic to the floating address is DNATed to the fixed address, in
  prerouting and, for what the router itself sends, output; traffic from the fixed address
  that leaves by ``qg-`` takes the floating address, not the gateway's.
- Hairpin, as Neutron's ``-m mark ! --mark 0x2/0xffff -m conntrack --ctstate DNAT -j SNAT
  --to-source GATEWAY``: traffic DNATed to a fixed address that did not come in by ``qg-``
  (from a VM of the router, or from the router itself) takes the gateway address, or the
  sender's floating address if it has one (Neutron's float-snat comes first). The target
  VM then answers the router, which undoes the DNAT, even from the same subnet. With or
  without ``enable_snat``, as in Neutron; a router without a gateway has no floating IP and
  no hairpin.
- IPv6 is routed, never translated, as in Neutron: IPv6 internal subnets are accepted and
  get no rule; floating, fixed and gateway addresses must be IPv4.

The text replaces the table whole in one transaction (``nft -f`` applies a file as one):
it declares the table (so the delete cannot fail on a missing one), deletes it and
declares it again with every chain. A change is atomic, and applying the same text twice
leaves the same ruleset.

Pure: no I/O. Bad input raises ``NatError`` naming the router and the field; the ordering of
rules is fixed (sorted), so equal settings always give equal text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from hanet.agent.errors import RouterError

TABLE = "hanet-router"
# nftables identifiers that need no quoting; a device name goes between quotes, so it must
# not hold one (or anything else that could end the string or the statement).
TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
DEVICE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")


class NatError(RouterError):
    """NAT settings that cannot become a ruleset; says which router and field."""


@dataclass(frozen=True)
class FloatingIp:
    floating_ip_address: str
    fixed_ip_address: str


@dataclass(frozen=True)
class RouterNat:
    """What one router's NAT is made of.

    ``gateway_device`` and ``gateway_address`` are the ``qg-`` device and its address (both
    None for a router without a gateway, which translates nothing).
    """

    router: str
    gateway_device: str | None
    gateway_address: str | None
    enable_snat: bool = True
    internal_subnets: Sequence[str] = ()
    floating_ips: Sequence[FloatingIp] = ()


@dataclass(frozen=True)
class _Checked:
    device: str | None
    gateway: ipaddress.IPv4Address | None
    snat_subnets: tuple[ipaddress.IPv4Network, ...]
    floating: tuple[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address], ...]


def _ipv4(router: str, where: str, value: object) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise NatError(router, where, f"{value!r} is not an address string")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise NatError(router, where, f"{value!r} is not an IP address") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise NatError(router, where, f"{value} is IPv6; only IPv4 is translated")
    if address.is_unspecified or address.is_multicast or address.is_loopback:
        raise NatError(router, where, f"{value} cannot be a host's address")
    return address


def _check(nat: RouterNat) -> _Checked:
    router = nat.router if isinstance(nat.router, str) and nat.router else "?"
    if not isinstance(nat.enable_snat, bool):
        raise NatError(router, "enable_snat", f"{nat.enable_snat!r} is not true or false")

    device: str | None = None
    gateway: ipaddress.IPv4Address | None = None
    if (nat.gateway_device is None) != (nat.gateway_address is None):
        missing = "gateway_address" if nat.gateway_address is None else "gateway_device"
        raise NatError(router, missing, "a gateway needs both its device and its address")
    if nat.gateway_device is not None:
        if not isinstance(nat.gateway_device, str) or not DEVICE_NAME.match(nat.gateway_device):
            raise NatError(router, "gateway_device",
                           f"{nat.gateway_device!r} is not an interface name")  # fmt: skip
        device = nat.gateway_device
        gateway = _ipv4(router, "gateway_address", nat.gateway_address)

    if isinstance(nat.internal_subnets, str | bytes):
        raise NatError(router, "internal_subnets", "must be a list of subnets")
    subnets: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, int] = {}
    for i, value in enumerate(nat.internal_subnets):
        where = f"internal_subnets[{i}]"
        if not isinstance(value, str):
            raise NatError(router, where, f"{value!r} is not a subnet string")
        try:
            subnet = ipaddress.ip_network(value)
        except ValueError as exc:
            raise NatError(router, where, f"{value!r} is not a subnet ({exc})") from None
        if subnet in subnets:
            first = f"internal_subnets[{subnets[subnet]}]"
            raise NatError(router, where, f"{subnet} is given twice (also {first})")
        subnets[subnet] = i

    if isinstance(nat.floating_ips, str | bytes):
        raise NatError(router, "floating_ips", "must be a list of floating IPs")
    by_floating: dict[ipaddress.IPv4Address, int] = {}
    by_fixed: dict[ipaddress.IPv4Address, int] = {}
    pairs: list[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]] = []
    for i, fip in enumerate(nat.floating_ips):
        where = f"floating_ips[{i}]"
        if not isinstance(fip, FloatingIp):
            raise NatError(router, where, f"{fip!r} is not a floating IP")
        if gateway is None:
            raise NatError(router, where, "a floating IP needs the router's gateway")
        floating = _ipv4(router, f"{where}.floating_ip_address", fip.floating_ip_address)
        fixed = _ipv4(router, f"{where}.fixed_ip_address", fip.fixed_ip_address)
        if floating == gateway:
            raise NatError(router, f"{where}.floating_ip_address",
                           f"{floating} is the gateway address")  # fmt: skip
        if floating in by_floating:
            first = f"floating_ips[{by_floating[floating]}]"
            raise NatError(router, f"{where}.floating_ip_address",
                           f"{floating} is given twice (also {first})")  # fmt: skip
        if fixed in by_fixed:
            # One fixed address with two floating addresses: its outgoing SNAT would be
            # ambiguous (Neutron refuses the second association).
            first = f"floating_ips[{by_fixed[fixed]}]"
            raise NatError(router, f"{where}.fixed_ip_address",
                           f"{fixed} already has floating IP {first}")  # fmt: skip
        by_floating[floating] = i
        by_fixed[fixed] = i
        pairs.append((floating, fixed))

    snat_subnets: tuple[ipaddress.IPv4Network, ...] = ()
    if nat.enable_snat and gateway is not None:
        snat_subnets = tuple(sorted(s for s in subnets if isinstance(s, ipaddress.IPv4Network)))
    return _Checked(device, gateway, snat_subnets, tuple(sorted(pairs)))


def check_table_name(table: str) -> str:
    if not isinstance(table, str) or not TABLE_NAME.match(table):
        raise ValueError(f"table name {table!r} must match {TABLE_NAME.pattern}")
    return table


def ruleset(nat: RouterNat, table: str = TABLE) -> str:
    """The transaction that makes ``table`` exactly the router's NAT (see the module doc)."""
    table = check_table_name(table)
    checked = _check(nat)
    lines = [f"table ip {table} {{}}", f"delete table ip {table}", f"table ip {table} {{"]
    device, gateway = checked.device, checked.gateway
    if device is not None and gateway is not None:
        lines += [
            "\tchain prerouting {",
            "\t\ttype nat hook prerouting priority dstnat; policy accept;",
            *(f"\t\tip daddr {fl} dnat to {fx}" for fl, fx in checked.floating),
            "\t}",
            # What the router's own processes send to a floating IP (Neutron's OUTPUT DNAT).
            "\tchain output {",
            "\t\ttype nat hook output priority -100; policy accept;",
            *(f"\t\tip daddr {fl} dnat to {fx}" for fl, fx in checked.floating),
            "\t}",
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            # What comes in by the gateway keeps its address: upstream's connections to a
            # floating IP reach the VM from upstream (Neutron's mark 0x2 on qg- ingress).
            # The router's own packets have no input device (iifname ""), so they are
            # not accepted here: they get the hairpin below like a VM's.
            f'\t\tiifname "{device}" accept',
            # Internal subnets reach each other with their own addresses, unless the
            # traffic was DNATed to a floating IP's fixed address (hairpin, below).
            # "ct status & dnat == 0", not "ct status != dnat": nft compares the latter
            # with the whole status word, which holds other bits too (dnat-done, ...).
            f'\t\toifname != "{device}" ct status & dnat == 0 accept',
            # Leaving by the gateway or hairpinned: a fixed address with a floating IP
            # takes it (the first NAT verdict wins, so before the gateway address), as
            # Neutron's float-snat comes first.
            *(f"\t\tip saddr {fx} snat to {fl}" for fl, fx in checked.floating),
            # Hairpin: anything else reaching a floating IP from inside, or from the
            # router itself, takes the gateway address, so the VM answers the router,
            # which undoes the DNAT; a VM of the same subnet answered directly would see
            # the fixed address, not the floating one it called. Neutron does it with or
            # without SNAT (its floating IP rules).
            f'\t\toifname != "{device}" snat to {gateway}',
            *(f"\t\tip saddr {s} snat to {gateway}" for s in checked.snat_subnets),
            "\t}",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def removal(table: str = TABLE) -> str:
    """The transaction that removes ``table``, whether or not it exists."""
    table = check_table_name(table)
    return f"table ip {table} {{}}\ndelete table ip {table}\n"
