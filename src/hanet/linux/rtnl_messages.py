"""rtnetlink messages as bytes, both ways (pure): what vrrpd asks the kernel and reads back.

Only what vrrpd needs: links (name, index, flags, Ethernet address), addresses, the end
of a dump and the kernel's errors and acknowledgements; requests for those, and for
adding and removing addresses, routes and policy rules (hanet.linux.rtnl_requests). The
layouts are those of linux/netlink.h (nlmsghdr), linux/rtnetlink.h (ifinfomsg, ifaddrmsg,
rtmsg, rtattr), linux/if_link.h, linux/if_addr.h and linux/fib_rules.h, described in
rtnetlink(7) and netlink(7). A pyroute2 socket per router namespace cost vrrpd about
19 KB of memory for each of its sockets; a plain socket and this module cost a few
hundred bytes.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFA_ADDRESS = 1
IFA_LOCAL = 2
RTMGRP_LINK = 0x1

HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
IFINFO = struct.Struct("=BxHiII")  # family, device type, index, flags, change mask
IFADDR = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
ATTR = struct.Struct("=HH")  # length, type
_ERRNO = struct.Struct("=i")
_FAMILIES = {2: 4, 10: 6}  # AF_INET, AF_INET6 -> IP version


class MalformedMessage(ValueError):
    """A message that does not hold together; the text says at which byte and why."""


@dataclass(frozen=True)
class LinkSeen:
    """A link as a dump, a get or an event shows it; ``deleted`` for RTM_DELLINK."""

    name: str
    index: int
    flags: int
    deleted: bool
    seq: int
    mac: bytes = b""


@dataclass(frozen=True)
class AddressSeen:
    """An address of a link (IFA_LOCAL, else IFA_ADDRESS: a point-to-point link's
    IFA_ADDRESS is its peer's)."""

    index: int
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    prefixlen: int
    seq: int


@dataclass(frozen=True)
class DumpDone:
    """The end of the dump that request ``seq`` asked for; ``interrupted`` when the
    kernel says the links changed under it (the dump must be asked again)."""

    seq: int
    interrupted: bool


@dataclass(frozen=True)
class KernelError:
    """An NLMSG_ERROR answering request ``seq`` (errno 0 is an acknowledgement)."""

    seq: int
    errno: int


Message = LinkSeen | AddressSeen | DumpDone | KernelError


def attribute(kind: int, value: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    raw = ATTR.pack(ATTR.size + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return HEADER.pack(HEADER.size + len(body), kind, flags, seq, 0) + body


def link_dump_request(seq: int) -> bytes:
    """RTM_GETLINK for every link of the socket's namespace."""
    return message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, IFINFO.pack(0, 0, 0, 0, 0))


def link_get_request(seq: int, name: str) -> bytes:
    """RTM_GETLINK for the link called ``name``: its RTM_NEWLINK, then an acknowledgement
    (ENODEV when there is none)."""
    body = IFINFO.pack(0, 0, 0, 0, 0) + attribute(IFLA_IFNAME, name.encode() + b"\0")
    return message(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK, seq, body)


def address_dump_request(seq: int) -> bytes:
    """RTM_GETADDR for every address of every link (the kernel does not filter a dump by
    link unless strict checking is on: the reader does)."""
    return message(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, IFADDR.pack(0, 0, 0, 0, 0))


def parse_messages(data: bytes) -> list[Message]:
    """Every message of one datagram that vrrpd cares about, in order; other types are
    skipped. Raises MalformedMessage for one that does not hold together."""
    found: list[Message] = []
    offset = 0
    while offset + HEADER.size <= len(data):
        length, kind, flags, seq, _port = HEADER.unpack_from(data, offset)
        if length < HEADER.size or offset + length > len(data):
            raise MalformedMessage(f"message at byte {offset}: length {length} does not fit "
                                   f"the {len(data) - offset} bytes left")  # fmt: skip
        body = data[offset + HEADER.size : offset + length]
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            found.append(_link(body, kind == RTM_DELLINK, seq, offset))
        elif kind == RTM_NEWADDR:
            seen = _address(body, seq, offset)
            if seen is not None:
                found.append(seen)
        elif kind == NLMSG_DONE:
            found.append(DumpDone(seq, bool(flags & NLM_F_DUMP_INTR)))
        elif kind == NLMSG_ERROR:
            if len(body) < _ERRNO.size:
                raise MalformedMessage(f"error message at byte {offset}: no error code")
            found.append(KernelError(seq, -_ERRNO.unpack_from(body)[0]))
        offset += (length + 3) & ~3
    if offset < len(data):
        raise MalformedMessage(f"{len(data) - offset} bytes at byte {offset} are no message")
    return found


def _attributes(body: bytes, start: int, what: str) -> dict[int, bytes]:
    """The attributes after a fixed header, by type (the top bits, NLA_F_NESTED and
    NLA_F_NET_BYTEORDER, cleared); the first of a type wins."""
    found: dict[int, bytes] = {}
    offset = start
    while offset + ATTR.size <= len(body):
        length, kind = ATTR.unpack_from(body, offset)
        if length < ATTR.size or offset + length > len(body):
            raise MalformedMessage(f"{what}: attribute at byte {offset} has length {length}, "
                                   f"{len(body) - offset} bytes left")  # fmt: skip
        found.setdefault(kind & 0x3FFF, body[offset + ATTR.size : offset + length])
        offset += (length + 3) & ~3
    return found


def _link(body: bytes, deleted: bool, seq: int, at: int) -> LinkSeen:
    if len(body) < IFINFO.size:
        raise MalformedMessage(f"link message at byte {at}: {len(body)} bytes, "
                               f"shorter than its {IFINFO.size}-byte header")  # fmt: skip
    _family, _type, index, flags, _change = IFINFO.unpack_from(body)
    attrs = _attributes(body, IFINFO.size, f"link message at byte {at}")
    if IFLA_IFNAME not in attrs:
        raise MalformedMessage(f"link message at byte {at} (index {index}) has no name")
    raw = attrs[IFLA_IFNAME].split(b"\0", 1)[0]
    try:
        name = raw.decode()
    except UnicodeDecodeError:
        raise MalformedMessage(f"link message at byte {at}: "
                               f"interface name {raw!r} is not text") from None  # fmt: skip
    return LinkSeen(name, index, flags, deleted, seq, attrs.get(IFLA_ADDRESS, b""))


def _address(body: bytes, seq: int, at: int) -> AddressSeen | None:
    """None for a family other than IPv4 and IPv6."""
    if len(body) < IFADDR.size:
        raise MalformedMessage(f"address message at byte {at}: {len(body)} bytes, "
                               f"shorter than its {IFADDR.size}-byte header")  # fmt: skip
    family, prefixlen, _flags, _scope, index = IFADDR.unpack_from(body)
    version = _FAMILIES.get(family)
    if version is None:
        return None
    attrs = _attributes(body, IFADDR.size, f"address message at byte {at}")
    raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
    size = 4 if version == 4 else 16
    if raw is None or len(raw) != size:
        raise MalformedMessage(f"address message at byte {at} (index {index}): "
                               f"no {size}-byte address")  # fmt: skip
    return AddressSeen(index, ipaddress.ip_address(raw), prefixlen, seq)
