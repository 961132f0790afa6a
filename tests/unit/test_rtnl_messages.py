"""rtnetlink messages (hanet.linux.rtnl_messages, rtnl_requests): hand-built bytes in the
kernel's layout, and anything else refused with its place."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hanet.linux.rtnl_messages import (
    AddressSeen,
    DumpDone,
    KernelError,
    LinkSeen,
    MalformedMessage,
    link_dump_request,
    parse_messages,
)
from hanet.linux.rtnl_requests import address_request, route_request, rule_request

pytestmark = pytest.mark.unit


def attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def message(kind: int, body: bytes, seq: int = 0, flags: int = 0) -> bytes:
    raw = struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body
    return raw + b"\0" * (-len(raw) % 4)


def link(kind: int, name: bytes, index: int = 4, flags: int = 0x11043, seq: int = 0) -> bytes:
    ifinfo = struct.pack("=BxHiII", 0, 1, index, flags, 0)
    return message(kind, ifinfo + attr(4, struct.pack("=I", 1500)) + attr(3, name + b"\0"), seq)


def test_the_dump_request_is_rtm_getlink_with_the_dump_flags() -> None:
    raw = link_dump_request(9)
    assert struct.unpack_from("=IHHII", raw) == (32, 18, 0x301, 9, 0) and len(raw) == 32


def test_a_dump_and_events_read_back() -> None:
    data = (link(16, b"qr-1", index=5, seq=3) + link(17, b"qg-2", index=6, flags=0)
            + message(3, struct.pack("=i", 0), seq=3, flags=0x12)
            + message(2, struct.pack("=i", -16) + b"\0" * 16, seq=4))  # fmt: skip
    assert parse_messages(data) == [
        LinkSeen("qr-1", 5, 0x11043, False, 3),
        LinkSeen("qg-2", 6, 0, True, 0),
        DumpDone(3, interrupted=True),
        KernelError(4, 16),
    ]


def test_other_message_types_are_skipped() -> None:
    assert parse_messages(message(20, b"\0" * 8) + link(16, b"eth0")) == [
        LinkSeen("eth0", 4, 0x11043, False, 0)
    ]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (struct.pack("=IHHII", 8, 16, 0, 0, 0), "message at byte 0: length 8"),
        (link(16, b"a") + struct.pack("=IHHII", 99, 16, 0, 0, 0), "message at byte 48: length 99"),
        (message(16, b"\0" * 8), "link message at byte 0: 8 bytes"),
        (message(16, struct.pack("=BxHiII", 0, 1, 7, 0, 0)), "(index 7) has no name"),
        (
            message(16, struct.pack("=BxHiII", 0, 1, 7, 0, 0) + struct.pack("=HH", 40, 3)),
            "attribute at byte 16 has length 40",
        ),
        (
            message(16, struct.pack("=BxHiII", 0, 1, 7, 0, 0) + attr(3, b"\xff\xfe")),
            "is not text",
        ),
        (message(2, b""), "error message at byte 0: no error code"),
        (link(16, b"a") + b"\0\0\0", "3 bytes at byte 48 are no message"),
    ],
    ids=[
        "short header",
        "past the end",
        "short link",
        "no name",
        "long attribute",
        "name not text",
        "empty error",
        "trailing bytes",
    ],
)
def test_a_broken_message_is_refused_with_its_place(data: bytes, where: str) -> None:
    with pytest.raises(MalformedMessage, match=re.escape(where)):
        parse_messages(data)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused(data: bytes) -> None:
    with contextlib.suppress(MalformedMessage):
        parse_messages(data)


@given(st.lists(st.binary(min_size=1, max_size=15), max_size=5), st.binary(max_size=40))
def test_a_valid_datagram_followed_by_garbage_is_refused_whole(
    names: list[bytes], tail: bytes
) -> None:
    names = [name.replace(b"\0", b"x") for name in names]
    valid = b"".join(link(16, name.decode("latin-1").encode()) for name in names)
    try:
        parsed = parse_messages(valid + tail)
    except MalformedMessage:
        return
    assert [m.name for m in parsed[: len(names)] if isinstance(m, LinkSeen)] == [
        name.decode("latin-1") for name in names
    ]


def test_address_messages_read_local_before_address() -> None:
    ifaddr = struct.pack("=BBBBI", 2, 32, 0, 0, 9)
    ptp = message(20, ifaddr + attr(1, bytes([10, 0, 0, 2])) + attr(2, bytes([10, 0, 0, 1])))
    v6 = message(
        20, struct.pack("=BBBBI", 10, 64, 0, 253, 9) + attr(1, b"\xfe\x80" + b"\0" * 13 + b"\x01")
    )
    other = message(20, struct.pack("=BBBBI", 17, 0, 0, 0, 9))  # AF_PACKET: skipped
    assert parse_messages(ptp + v6 + other) == [
        AddressSeen(9, ipaddress.ip_address("10.0.0.1"), 32, 0),
        AddressSeen(9, ipaddress.ip_address("fe80::1"), 64, 0),
    ]
    with pytest.raises(MalformedMessage, match="no 4-byte address"):
        parse_messages(message(20, ifaddr + attr(1, b"\x01\x02")))


def test_change_requests_ask_for_an_acknowledgement_and_say_how_to_create() -> None:
    net = ipaddress.ip_network("10.9.0.0/16")
    flags = {
        "address add": address_request(1, True, 3, ipaddress.ip_interface("10.0.0.5/24")),
        "address del": address_request(1, False, 3, ipaddress.ip_interface("10.0.0.5/24")),
        "route replace": route_request(1, True, net, 1),
        "route del": route_request(1, False, net, 1),
        "rule add": rule_request(1, True, 4, source=net, table=100),
    }
    read = {what: struct.unpack_from("=H", raw, 6)[0] for what, raw in flags.items()}
    assert read == {"address add": 0x605, "address del": 0x5, "route replace": 0x505,
                    "route del": 0x5, "rule add": 0x605}  # fmt: skip


def test_a_table_above_255_travels_in_its_attribute() -> None:
    raw = route_request(1, True, ipaddress.ip_network("10.9.0.0/16"), 1, table=1000)
    assert raw[16 + 4] == 0  # rtm_table: unspecified
    assert attr(15, struct.pack("=I", 1000)) in raw  # RTA_TABLE
    assert route_request(1, True, ipaddress.ip_network("10.9.0.0/16"), 1)[16 + 4] == 254
