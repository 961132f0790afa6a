"""The Internet checksum of RFC 1071, used by VRRP (RFC 5798 §5.2.8)."""

from __future__ import annotations


def internet_checksum(data: bytes) -> int:
    """One's complement of the one's-complement sum of 16-bit words.

    Over data that already holds a correct checksum the result is 0.
    """
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
