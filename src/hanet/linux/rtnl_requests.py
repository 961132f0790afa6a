"""rtnetlink requests that change addresses, routes and policy rules, as bytes (pure).

Each asks for an acknowledgement. Defaults where the caller gives nothing, chosen as
iproute2 and pyroute2 (which vrrpd used before) both do:
- an address: scope 0 (global); IPv6 addresses without duplicate address detection
  (IFA_F_NODAD: a VIP moving between nodes must answer at once); IFA_LOCAL and
  IFA_ADDRESS both set, as for any address that is not point-to-point;
- a route: table main (254); protocol ``static`` when added (as pyroute2 did, so that
  routes left by an earlier vrrpd match), unspecified (any) when removed; scope 0;
  a table above 255 travels in RTA_TABLE with the header's table unspecified, as ip-route
  does;
- a rule: action ``to table`` when it names a table.
Sources: rtnetlink(7), linux/rtnetlink.h, linux/if_addr.h, linux/fib_rules.h.
"""

from __future__ import annotations

import ipaddress
import struct

from hanet.linux.rtnl_messages import (
    IFA_ADDRESS,
    IFA_LOCAL,
    IFADDR,
    NLM_F_ACK,
    NLM_F_REQUEST,
    message,
)
from hanet.linux.rtnl_messages import attribute as attr

RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTM_NEWRULE, RTM_DELRULE = 32, 33
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
IFA_LABEL, IFA_BROADCAST = 3, 4
IFA_F_NODAD = 0x02
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_PRIORITY, FRA_FWMARK, FRA_TABLE, FRA_OIFNAME = (
    1, 2, 3, 6, 10, 15, 17)  # fmt: skip
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
FR_ACT_TO_TBL = 1
AF_INET, AF_INET6 = 2, 10

_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst/src length, tos, table, protocol,
# scope, type, flags; fib_rule_hdr has the same layout (its 5th-7th bytes: table, two
# reserved, then the action).
_U32 = struct.Struct("=I")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _family(version: int) -> int:
    return AF_INET if version == 4 else AF_INET6


def _change_flags(adding: bool, replace: bool = False) -> int:
    if not adding:
        return NLM_F_REQUEST | NLM_F_ACK
    extra = NLM_F_REPLACE if replace else NLM_F_EXCL
    return NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | extra


def address_request(seq: int, adding: bool, index: int, address: IPInterface, *,
                    broadcast: IPAddress | None = None, scope: int | None = None,
                    label: str | None = None) -> bytes:  # fmt: skip
    """RTM_NEWADDR (create, refused with EEXIST when there) or RTM_DELADDR."""
    flags = IFA_F_NODAD if address.version == 6 else 0
    body = IFADDR.pack(_family(address.version), address.network.prefixlen, flags,
                       scope or 0, index)  # fmt: skip
    packed = address.ip.packed
    body += attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    if broadcast is not None:
        body += attr(IFA_BROADCAST, broadcast.packed)
    if label is not None:
        body += attr(IFA_LABEL, label.encode() + b"\0")
    return message(RTM_NEWADDR if adding else RTM_DELADDR, _change_flags(adding), seq, body)


def route_request(seq: int, adding: bool, to: IPNetwork, kind: int, *,
                  oif: int | None = None, gateway: IPAddress | None = None,
                  priority: int | None = None, table: int | None = None,
                  prefsrc: IPAddress | None = None, scope: int | None = None,
                  protocol: int | None = None) -> bytes:  # fmt: skip
    """RTM_NEWROUTE as a replace (a route an earlier run left is taken over) or
    RTM_DELROUTE."""
    table = RT_TABLE_MAIN if table is None else table
    if protocol is None:
        protocol = RTPROT_STATIC if adding else 0
    body = _RTMSG.pack(_family(to.version), to.prefixlen, 0, 0, table if table < 256 else 0,
                       protocol, scope or 0, kind, 0)  # fmt: skip
    if to.prefixlen:
        body += attr(RTA_DST, to.network_address.packed)
    if table >= 256:
        body += attr(RTA_TABLE, _U32.pack(table))
    if oif is not None:
        body += attr(RTA_OIF, _U32.pack(oif))
    if gateway is not None:
        body += attr(RTA_GATEWAY, gateway.packed)
    if priority is not None:
        body += attr(RTA_PRIORITY, _U32.pack(priority))
    if prefsrc is not None:
        body += attr(RTA_PREFSRC, prefsrc.packed)
    return message(RTM_NEWROUTE if adding else RTM_DELROUTE,
                   _change_flags(adding, replace=True), seq, body)  # fmt: skip


def rule_request(seq: int, adding: bool, version: int, *,
                 source: IPNetwork | None = None, destination: IPNetwork | None = None,
                 table: int | None = None, priority: int | None = None,
                 iif: str | None = None, oif: str | None = None,
                 fwmark: int | None = None) -> bytes:  # fmt: skip
    """RTM_NEWRULE (create, refused with EEXIST when there) or RTM_DELRULE."""
    header_table = table if table is not None and table < 256 else 0
    action = FR_ACT_TO_TBL if table is not None else 0
    body = _RTMSG.pack(_family(version), destination.prefixlen if destination else 0,
                       source.prefixlen if source else 0, 0, header_table, 0, 0, action,
                       0)  # fmt: skip
    if destination is not None:
        body += attr(FRA_DST, destination.network_address.packed)
    if source is not None:
        body += attr(FRA_SRC, source.network_address.packed)
    if table is not None:
        body += attr(FRA_TABLE, _U32.pack(table))
    if priority is not None:
        body += attr(FRA_PRIORITY, _U32.pack(priority))
    if iif is not None:
        body += attr(FRA_IIFNAME, iif.encode() + b"\0")
    if oif is not None:
        body += attr(FRA_OIFNAME, oif.encode() + b"\0")
    if fwmark is not None:
        body += attr(FRA_FWMARK, _U32.pack(fwmark))
    return message(RTM_NEWRULE if adding else RTM_DELRULE, _change_flags(adding), seq, body)
