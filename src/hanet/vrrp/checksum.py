"""The Internet checksum of RFC 1071, used by VRRP (RFC 5798 §5.2.8)."""

from __future__ import annotations

import struct


def internet_checksum(data: bytes) -> int:
    """One's complement of the one's-complement sum of 16-bit words.

    Over data that already holds a correct checksum the result is 0.
    """
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
