"""rtnetlink link messages, as bytes: the dump request and what comes back (pure).

Only what a carrier watcher needs: each link's name, index and flags, when a dump is done,
and the kernel's errors. The layouts are those of linux/netlink.h (nlmsghdr),
linux/rtnetlink.h (ifinfomsg, rtattr) and linux/if_link.h (IFLA_IFNAME), described in
rtnetlink(7) and netlink(7). A whole AsyncIPRoute per namespace cost vrrpd about 19 KB of
memory a router; a plain socket and this module cost a few hundred bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLM_F_REQUEST = 0x1
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
IFLA_IFNAME = 3
RTMGRP_LINK = 0x1

_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFINFO = struct.Struct("=BxHiII")  # family, device type, index, flags, change mask
_ATTR = struct.Struct("=HH")  # length, type
_ERRNO = struct.Struct("=i")


class MalformedMessage(ValueError):
    """A message that does not hold together; the text says at which byte and why."""


@dataclass(frozen=True)
class LinkSeen:
    """A link as a dump or an event shows it; ``deleted`` for RTM_DELLINK."""

    name: str
    index: int
    flags: int
    deleted: bool
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


Message = LinkSeen | DumpDone | KernelError


def link_dump_request(seq: int) -> bytes:
    """RTM_GETLINK for every link of the socket's namespace."""
    body = _IFINFO.pack(0, 0, 0, 0, 0)
    return _HEADER.pack(_HEADER.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                        seq, 0) + body  # fmt: skip


def parse_messages(data: bytes) -> list[Message]:
    """Every message of one datagram that a link watcher cares about, in order; other
    types are skipped. Raises MalformedMessage for one that does not hold together."""
    found: list[Message] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, seq, _port = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            raise MalformedMessage(f"message at byte {offset}: length {length} does not fit "
                                   f"the {len(data) - offset} bytes left")  # fmt: skip
        body = data[offset + _HEADER.size : offset + length]
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            found.append(_link(body, kind == RTM_DELLINK, seq, offset))
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


def _link(body: bytes, deleted: bool, seq: int, at: int) -> LinkSeen:
    if len(body) < _IFINFO.size:
        raise MalformedMessage(f"link message at byte {at}: {len(body)} bytes, "
                               f"shorter than its {_IFINFO.size}-byte header")  # fmt: skip
    _family, _type, index, flags, _change = _IFINFO.unpack_from(body)
    name = None
    offset = _IFINFO.size
    while offset + _ATTR.size <= len(body):
        length, kind = _ATTR.unpack_from(body, offset)
        if length < _ATTR.size or offset + length > len(body):
            raise MalformedMessage(f"link message at byte {at}: attribute at byte "
                                   f"{offset} has length {length}, "
                                   f"{len(body) - offset} bytes left")  # fmt: skip
        if kind & 0x3FFF == IFLA_IFNAME:  # the top bits are NLA_F_NESTED/NET_BYTEORDER
            raw = body[offset + _ATTR.size : offset + length].split(b"\0", 1)[0]
            try:
                name = raw.decode()
            except UnicodeDecodeError:
                raise MalformedMessage(f"link message at byte {at}: "
                                       f"interface name {raw!r} is not text") from None  # fmt: skip
        offset += (length + 3) & ~3
    if name is None:
        raise MalformedMessage(f"link message at byte {at} (index {index}) has no name")
    return LinkSeen(name, index, flags, deleted, seq)
