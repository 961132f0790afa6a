"""The VRRP codec: RFC 3768 §5 (v2), RFC 5798 §5 (v3), receive checks of §7.1."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hanet.vrrp import (
    Advertisement,
    DecodeError,
    EncodeError,
    decode_ip_packet,
    encode_ip_packet,
    encode_message,
)
from hanet.vrrp.checksum import internet_checksum
from hanet.vrrp.codec import pseudo_header

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


def v3_v4(**kw: object) -> Advertisement:
    base: dict[str, object] = dict(
        version=3, vrid=51, priority=100, addresses=(V4("10.0.0.100"),), advert_int_cs=10,
        source=V4("10.0.0.1"), destination=V4("224.0.0.18"),
    )  # fmt: skip
    base.update(kw)
    return Advertisement(**base)  # type: ignore[arg-type]


def test_v3_ipv4_layout_rfc5798_5_2() -> None:
    message = encode_message(v3_v4())
    assert message[0] == 0x31  # version 3, type 1 (§5.2.1, §5.2.2)
    assert message[1:4] == bytes([51, 100, 1])
    assert struct.unpack("!H", message[4:6])[0] == 10  # 12-bit Max Adver Int, cs (§5.2.7)
    assert message[8:] == V4("10.0.0.100").packed
    assert len(message) == 12


def test_v3_ipv4_checksum_includes_pseudo_header_by_default() -> None:
    adv = v3_v4()
    message = encode_message(adv)
    assert internet_checksum(pseudo_header(adv.source, adv.target, len(message)) + message) == 0
    assert internet_checksum(message) != 0


def test_v3_ipv4_message_only_checksum_is_accepted_rfc9568() -> None:
    adv = v3_v4()
    packet = encode_ip_packet(adv, v3_ipv4_pseudo_header=False)
    assert decode_ip_packet(packet) == adv


def test_v2_layout_with_auth_rfc3768_5_3() -> None:
    adv = v3_v4(version=2, advert_int_cs=100, auth_type=1, auth_data=b"secret")
    message = encode_message(adv)
    assert message[0] == 0x21
    assert message[4] == 1 and message[5] == 1  # auth type, adver int in seconds
    assert message[-8:] == b"secret\0\0"
    assert internet_checksum(message) == 0  # §5.3.8: the message only
    assert decode_ip_packet(encode_ip_packet(adv)).auth_data == b"secret\0\0"


def test_v3_ipv6_round_trip() -> None:
    adv = v3_v4(
        addresses=(V6("fe80::100"), V6("2001:db8::100")), source=V6("fe80::1"),
        destination=V6("ff02::12"),
    )  # fmt: skip
    packet = encode_ip_packet(adv)
    assert packet[0] >> 4 == 6
    assert decode_ip_packet(packet) == adv


def corrupt(packet: bytes, offset: int, value: int) -> bytes:
    return packet[:offset] + bytes([value]) + packet[offset + 1 :]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: corrupt(p, 8, 64), "bad_ttl"),  # RFC 5798 §7.1: TTL must be 255
        (lambda p: corrupt(p, 9, 17), "bad_protocol"),
        (lambda p: corrupt(p, 20, 0x41), "bad_version"),
        (lambda p: corrupt(p, 20, 0x32), "bad_type"),
        (lambda p: corrupt(p, 22, 99), "bad_checksum"),
        (lambda p: p[:-2], "truncated"),
        (lambda p: p[:10], "truncated"),
        (lambda p: corrupt(p, 23, 2), "truncated"),
        (lambda p: corrupt(p, 21, 0), "bad_vrid"),
        (lambda p: b"", "truncated"),
        (lambda p: corrupt(p, 0, 0x15), "bad_ip_version"),
    ],
)
def test_receive_checks_name_the_rule(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError) as err:
        decode_ip_packet(mutate(encode_ip_packet(v3_v4())))
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)


def test_length_mismatch_with_extra_bytes() -> None:
    packet = encode_ip_packet(v3_v4())
    longer = packet + b"\0\0\0\0"
    longer = longer[:2] + struct.pack("!H", len(longer)) + longer[4:]
    with pytest.raises(DecodeError, match="bad_length"):
        decode_ip_packet(longer)


def test_v2_over_ipv6_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_message(
            v3_v4(
                version=2,
                advert_int_cs=100,
                source=V6("fe80::1"),
                destination=None,
                addresses=(V6("fe80::9"),),
            )
        )


@pytest.mark.parametrize(
    "kw",
    [
        dict(vrid=0),
        dict(priority=256),
        dict(addresses=()),
        dict(advert_int_cs=0),
        dict(advert_int_cs=4096),
        dict(auth_type=1, auth_data=b"x"),
        dict(version=2, advert_int_cs=150),
        dict(version=4),
    ],
)
def test_encoder_refuses_what_cannot_go_on_the_wire(kw: dict[str, object]) -> None:
    with pytest.raises(EncodeError):
        encode_message(v3_v4(**kw))


# Property tests -------------------------------------------------------------------------

v4_addresses = st.builds(V4, st.integers(0, 2**32 - 1))
v6_addresses = st.builds(V6, st.integers(0, 2**128 - 1))


@st.composite
def advertisements(draw: st.DrawFn) -> Advertisement:
    family = draw(st.sampled_from([4, 6]))
    version = 3 if family == 6 else draw(st.sampled_from([2, 3]))
    pool = v4_addresses if family == 4 else v6_addresses
    addresses = tuple(draw(st.lists(pool, min_size=1, max_size=20)))
    if version == 2:
        interval = draw(st.integers(1, 255)) * 100
        auth_type = draw(st.sampled_from([0, 1, 2]))
        auth = draw(st.binary(min_size=1, max_size=8)) if auth_type else b""
    else:
        interval, auth_type, auth = draw(st.integers(1, 4095)), 0, b""
    return Advertisement(
        version=version, vrid=draw(st.integers(1, 255)), priority=draw(st.integers(0, 255)),
        addresses=addresses, advert_int_cs=interval, source=draw(pool),
        destination=draw(pool), auth_type=auth_type, auth_data=auth,
    )  # fmt: skip


@given(advertisements(), st.booleans())
def test_round_trip(adv: Advertisement, pseudo: bool) -> None:
    assert decode_ip_packet(encode_ip_packet(adv, v3_ipv4_pseudo_header=pseudo)) == adv


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_ip_packet(data)


@given(advertisements(), st.data())
@settings(max_examples=500)
def test_mutated_packets_only_raise_decode_error(adv: Advertisement, data: st.DataObject) -> None:
    packet = bytearray(encode_ip_packet(adv))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(packet) - 1))
        packet[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(packet)))
    with contextlib.suppress(DecodeError):
        decode_ip_packet(bytes(packet[:cut]))


@given(advertisements())
def test_identity_key_is_the_same_for_the_same_advert_only(adv: Advertisement) -> None:
    from hanet.vrrp import identity_key

    packet = encode_ip_packet(adv)
    key = identity_key(packet)
    assert key is not None and key == identity_key(packet)
    other_ttl = encode_ip_packet(dataclasses.replace(adv, ttl=64))
    assert identity_key(other_ttl) is None  # RFC 5798 §7.1: never cached past the TTL check
    if adv.source.version == 4:
        # The IPv4 ID field may change from packet to packet; the key ignores it.
        assert identity_key(packet[:4] + b"\x12\x34" + packet[6:]) == key
