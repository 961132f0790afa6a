"""VRRP advertisements: bytes to objects and back, with no I/O.

VRRPv2 is RFC 3768 §5, VRRPv3 is RFC 5798 §5. The receive-side checks follow RFC 3768 §7.1
and RFC 5798 §7.1; every failed check raises DecodeError with a short ``reason`` slug that the
runtime uses as a drop-counter label.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Final

from hanet.vrrp.checksum import internet_checksum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PROTOCOL_VRRP: Final = 112
REQUIRED_TTL: Final = 255
GROUP_V4: Final = ipaddress.IPv4Address("224.0.0.18")
GROUP_V6: Final = ipaddress.IPv6Address("ff02::12")
ADVERTISEMENT_TYPE: Final = 1
AUTH_NONE: Final = 0
AUTH_PASS: Final = 1
V2_AUTH_DATA_LEN: Final = 8
V3_MAX_INTERVAL_CS: Final = 0x0FFF
HEADER_LEN: Final = 8
IPV4_HEADER_MIN: Final = 20
IPV6_HEADER_LEN: Final = 40


class DecodeError(ValueError):
    """A packet that is not a valid VRRP advertisement for a receiver.

    ``reason`` is a stable slug (for counters); the message says which rule failed.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class EncodeError(ValueError):
    """An Advertisement that cannot be put on the wire as given."""


@dataclass(frozen=True)
class Advertisement:
    """One VRRP advertisement, as a receiver sees it.

    ``advert_int_cs`` is always centiseconds; a v2 advert carries whole seconds, so it is a
    multiple of 100. ``source`` and ``destination`` are the IP header's addresses.
    """

    version: int
    vrid: int
    priority: int
    addresses: tuple[IPAddress, ...]
    advert_int_cs: int
    source: IPAddress
    destination: IPAddress | None = None
    auth_type: int = AUTH_NONE
    auth_data: bytes = b""
    ttl: int = field(default=REQUIRED_TTL, compare=False)

    def __post_init__(self) -> None:
        # On the wire v2 auth data is always 8 bytes, zero padded; keep one canonical form.
        if self.version == 2 and self.auth_type != AUTH_NONE:
            object.__setattr__(self, "auth_data", self.auth_data.ljust(V2_AUTH_DATA_LEN, b"\0"))

    @property
    def family(self) -> int:
        return self.source.version

    @property
    def group(self) -> IPAddress:
        return GROUP_V4 if self.source.version == 4 else GROUP_V6

    @property
    def target(self) -> IPAddress:
        return self.destination if self.destination is not None else self.group


def _fail(reason: str, message: str) -> DecodeError:
    return DecodeError(reason, message)


def pseudo_header(source: IPAddress, destination: IPAddress, length: int) -> bytes:
    """The IPv4 (RFC 768 style) or IPv6 (RFC 8200 §8.1) pseudo-header for protocol 112."""
    if source.version == 4:
        return source.packed + destination.packed + struct.pack("!BBH", 0, PROTOCOL_VRRP, length)
    return source.packed + destination.packed + struct.pack("!I3xB", length, PROTOCOL_VRRP)


def _validate_for_encode(adv: Advertisement) -> None:
    if adv.version not in (2, 3):
        raise EncodeError(f"version {adv.version} is not 2 or 3")
    if not 1 <= adv.vrid <= 255:
        raise EncodeError(f"vrid {adv.vrid} is outside 1..255")
    if not 0 <= adv.priority <= 255:
        raise EncodeError(f"priority {adv.priority} is outside 0..255")
    if not 1 <= len(adv.addresses) <= 255:
        raise EncodeError("an advertisement carries 1..255 addresses")
    if any(a.version != adv.source.version for a in adv.addresses):
        raise EncodeError("addresses and source must be of one IP family")
    if adv.destination is not None and adv.destination.version != adv.source.version:
        raise EncodeError("destination and source must be of one IP family")
    if adv.version == 2:
        if adv.source.version != 4:
            raise EncodeError("VRRPv2 is IPv4 only (RFC 3768)")
        if adv.advert_int_cs % 100 or not 100 <= adv.advert_int_cs <= 25500:
            raise EncodeError("a v2 interval is whole seconds, 1..255")
        if len(adv.auth_data) > V2_AUTH_DATA_LEN:
            raise EncodeError("v2 auth data is at most 8 bytes")
        if adv.auth_type == AUTH_NONE and adv.auth_data:
            raise EncodeError("auth data without an auth type")
        if not 0 <= adv.auth_type <= 255:
            raise EncodeError(f"auth type {adv.auth_type} is outside 0..255")
    else:
        if not 1 <= adv.advert_int_cs <= V3_MAX_INTERVAL_CS:
            raise EncodeError("a v3 interval is 1..4095 centiseconds")
        if adv.auth_type or adv.auth_data:
            raise EncodeError("VRRPv3 has no authentication (RFC 5798 §5.2.4)")


def encode_message(adv: Advertisement, *, v3_ipv4_pseudo_header: bool = True) -> bytes:
    """The VRRP message alone, checksum filled in, as handed to a raw IP socket.

    For v3 over IPv4 the checksum includes the pseudo-header by default, as keepalived 2.2.7
    does; ``v3_ipv4_pseudo_header=False`` gives RFC 9568's message-only form.
    """
    _validate_for_encode(adv)
    if adv.version == 2:
        word = struct.pack("!BB", adv.auth_type, adv.advert_int_cs // 100)
        trailer = adv.auth_data.ljust(V2_AUTH_DATA_LEN, b"\0")
    else:
        word = struct.pack("!H", adv.advert_int_cs & V3_MAX_INTERVAL_CS)
        trailer = b""
    body = b"".join(a.packed for a in adv.addresses) + trailer
    first = (adv.version << 4) | ADVERTISEMENT_TYPE
    head = struct.pack("!BBBB", first, adv.vrid, adv.priority, len(adv.addresses)) + word
    message = head + b"\0\0" + body
    covered = message
    if adv.version == 3 and (adv.source.version == 6 or v3_ipv4_pseudo_header):
        covered = pseudo_header(adv.source, adv.target, len(message)) + message
    checksum = internet_checksum(covered)
    return head + struct.pack("!H", checksum) + body


def ipv4_header(source: bytes, target: bytes, payload: int, ttl: int = 255) -> bytes:
    """The IPv4 header of a VRRP packet of ``payload`` bytes: TOS 0xc0, as keepalived."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0xC0, IPV4_HEADER_MIN + payload, 0, 0, ttl,
                         PROTOCOL_VRRP, 0, source, target)  # fmt: skip
    return header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]


def encode_ip_packet(adv: Advertisement, *, v3_ipv4_pseudo_header: bool = True) -> bytes:
    """A whole IP packet (header included), the form decode_ip_packet takes."""
    message = encode_message(adv, v3_ipv4_pseudo_header=v3_ipv4_pseudo_header)
    if adv.source.version == 4:
        return ipv4_header(adv.source.packed, adv.target.packed, len(message), adv.ttl) + message
    header = struct.pack(
        "!IHBB16s16s",
        (6 << 28) | (0xC0 << 20),
        len(message),
        PROTOCOL_VRRP,
        adv.ttl,
        adv.source.packed,
        adv.target.packed,
    )
    return header + message


def _split_ipv4(packet: bytes) -> tuple[IPAddress, IPAddress, int, bytes]:
    if len(packet) < IPV4_HEADER_MIN:
        raise _fail("truncated", f"IPv4 header needs 20 bytes, got {len(packet)}")
    ihl = (packet[0] & 0x0F) * 4
    if ihl < IPV4_HEADER_MIN or ihl > len(packet):
        raise _fail("bad_ip_header", f"IPv4 header length {ihl} does not fit the packet")
    total = struct.unpack_from("!H", packet, 2)[0]
    if total < ihl or total > len(packet):
        raise _fail("truncated", f"IPv4 total length {total}, packet has {len(packet)} bytes")
    ttl, proto = packet[8], packet[9]
    if proto != PROTOCOL_VRRP:
        raise _fail("bad_protocol", f"IP protocol {proto}, VRRP is {PROTOCOL_VRRP}")
    if ttl != REQUIRED_TTL:
        raise _fail("bad_ttl", f"TTL {ttl}, must be 255 (RFC 5798 §7.1)")
    source = ipaddress.IPv4Address(packet[12:16])
    destination = ipaddress.IPv4Address(packet[16:20])
    return source, destination, ttl, packet[ihl:total]


def _split_ipv6(packet: bytes) -> tuple[IPAddress, IPAddress, int, bytes]:
    if len(packet) < IPV6_HEADER_LEN:
        raise _fail("truncated", f"IPv6 header needs 40 bytes, got {len(packet)}")
    payload_len, next_header, hop_limit = struct.unpack_from("!HBB", packet, 4)
    if IPV6_HEADER_LEN + payload_len > len(packet):
        raise _fail("truncated", f"IPv6 payload length {payload_len} exceeds the packet")
    if next_header != PROTOCOL_VRRP:
        raise _fail("bad_protocol", f"IPv6 next header {next_header}, VRRP is {PROTOCOL_VRRP}")
    if hop_limit != REQUIRED_TTL:
        raise _fail("bad_ttl", f"hop limit {hop_limit}, must be 255 (RFC 5798 §7.1)")
    source = ipaddress.IPv6Address(packet[8:24])
    destination = ipaddress.IPv6Address(packet[24:40])
    return source, destination, hop_limit, packet[40 : 40 + payload_len]


def decode_ip_packet(packet: bytes) -> Advertisement:
    """Decode one captured IPv4 or IPv6 packet carrying a VRRP advertisement.

    Raises DecodeError, and nothing else, for anything a receiver must drop.
    """
    if not isinstance(packet, bytes | bytearray | memoryview):
        raise _fail("not_bytes", f"expected bytes, got {type(packet).__name__}")
    packet = bytes(packet)
    if not packet:
        raise _fail("truncated", "empty packet")
    ip_version = packet[0] >> 4
    if ip_version == 4:
        source, destination, ttl, message = _split_ipv4(packet)
    elif ip_version == 6:
        source, destination, ttl, message = _split_ipv6(packet)
    else:
        raise _fail("bad_ip_version", f"IP version {ip_version} is neither 4 nor 6")
    return decode_message(message, source, destination, ttl=ttl)


def decode_message(
    message: bytes, source: IPAddress, destination: IPAddress, *, ttl: int = REQUIRED_TTL
) -> Advertisement:
    """Decode the VRRP message alone, given the IP header's fields."""
    if ttl != REQUIRED_TTL:
        raise _fail("bad_ttl", f"TTL {ttl}, must be 255 (RFC 5798 §7.1)")
    if len(message) < HEADER_LEN:
        raise _fail("truncated", f"VRRP header needs 8 bytes, got {len(message)}")
    first, vrid, priority, count = message[0], message[1], message[2], message[3]
    version, kind = first >> 4, first & 0x0F
    if version not in (2, 3):
        raise _fail("bad_version", f"VRRP version {version} is not 2 or 3")
    if kind != ADVERTISEMENT_TYPE:
        raise _fail("bad_type", f"VRRP type {kind}, only 1 (ADVERTISEMENT) exists")
    if version == 2 and source.version != 4:
        raise _fail("bad_version", "VRRPv2 over IPv6 does not exist (RFC 3768)")
    if vrid == 0:
        raise _fail("bad_vrid", "VRID 0 is not valid (1..255)")
    if count == 0:
        raise _fail("no_addresses", "an advertisement must carry at least one address")
    address_len = 4 if source.version == 4 else 16
    trailer = V2_AUTH_DATA_LEN if version == 2 else 0
    expected = HEADER_LEN + count * address_len + trailer
    if len(message) < expected:
        raise _fail("truncated", f"{count} addresses need {expected} bytes, got {len(message)}")
    if len(message) > expected:
        raise _fail("bad_length", f"{count} addresses need {expected} bytes, got {len(message)}")
    _check_checksum(message, version, source, destination)
    addresses = tuple(
        ipaddress.ip_address(message[off : off + address_len])
        for off in range(HEADER_LEN, HEADER_LEN + count * address_len, address_len)
    )
    if version == 2:
        auth_type, interval_s = message[4], message[5]
        if interval_s == 0:
            raise _fail("bad_interval", "advertisement interval 0")
        auth_data = message[expected - V2_AUTH_DATA_LEN : expected]
        if auth_type == AUTH_NONE:
            auth_data = b""
        return Advertisement(
            version, vrid, priority, addresses, interval_s * 100, source, destination,
            auth_type, auth_data, ttl,
        )  # fmt: skip
    interval_cs = struct.unpack_from("!H", message, 4)[0] & V3_MAX_INTERVAL_CS
    if interval_cs == 0:
        raise _fail("bad_interval", "advertisement interval 0")
    return Advertisement(version, vrid, priority, addresses, interval_cs, source, destination)


def _check_checksum(message: bytes, version: int, source: IPAddress, dest: IPAddress) -> None:
    if version == 2:
        forms = [message]
    elif source.version == 6:
        forms = [pseudo_header(source, dest, len(message)) + message]
    else:
        # keepalived 2.2.7 includes the IPv4 pseudo-header; RFC 9568 says it must not.
        forms = [pseudo_header(source, dest, len(message)) + message, message]
    if not any(internet_checksum(data) == 0 for data in forms):
        raise _fail("bad_checksum", "checksum does not match the message")


def identity_key(packet: bytes) -> bytes | None:
    """What makes two packets the same advert: addresses plus the whole VRRP message.

    Returns None unless the IP-level checks that such a key cannot carry (version, TTL,
    protocol, lengths) pass. A receiver may keep the decoded result of a key and reuse it
    for a later packet with the same key: a master sends the same bytes every interval, so
    the full decode and checksum are then done once, not ten times a second.
    """
    if len(packet) < IPV4_HEADER_MIN:
        return None
    if packet[0] >> 4 == 4:
        ihl = (packet[0] & 0x0F) * 4
        total = (packet[2] << 8) | packet[3]
        if packet[8] != REQUIRED_TTL or packet[9] != PROTOCOL_VRRP:
            return None
        if ihl < IPV4_HEADER_MIN or not ihl <= total <= len(packet):
            return None
        if ihl == IPV4_HEADER_MIN:
            return packet[12:total]  # addresses then message, in one slice
        return packet[12:20] + packet[ihl:total]
    if packet[0] >> 4 == 6 and len(packet) >= IPV6_HEADER_LEN:
        payload = (packet[4] << 8) | packet[5]
        if packet[6] != PROTOCOL_VRRP or packet[7] != REQUIRED_TTL:
            return None
        if IPV6_HEADER_LEN + payload > len(packet):
            return None
        return packet[8:40] + packet[40 : 40 + payload]
    return None
