"""Gratuitous ARP and unsolicited Neighbor Advertisement, built as bytes (no I/O).

RFC 5798 §6.4.1 / §8.1.2: a new master announces each virtual address so that hosts and
switches move it to the master's MAC at once instead of waiting for their caches to expire.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Final

BROADCAST_MAC: Final = b"\xff" * 6
ETH_P_ARP: Final = 0x0806
ARP_REQUEST: Final = 1
ICMPV6_NEIGHBOR_ADVERT: Final = 136
NA_FLAG_OVERRIDE: Final = 0x20000000
OPTION_TARGET_LINK_ADDRESS: Final = 2
ALL_NODES: Final = ipaddress.IPv6Address("ff02::1")


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def gratuitous_arp(mac: bytes, address: ipaddress.IPv4Address) -> bytes:
    """An Ethernet frame: ARP request, sender = target = the virtual address, to broadcast.

    keepalived sends the request form; hosts update an existing cache entry from either.
    """
    ethernet = BROADCAST_MAC + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, ARP_REQUEST)
    arp += mac + address.packed + bytes(6) + address.packed
    return ethernet + arp


def unsolicited_na(mac: bytes, address: ipaddress.IPv6Address) -> bytes:
    """The ICMPv6 body of an unsolicited NA (RFC 4861 §4.4), checksum left to the kernel."""
    header = struct.pack("!BBHI", ICMPV6_NEIGHBOR_ADVERT, 0, 0, NA_FLAG_OVERRIDE)
    option = struct.pack("!BB", OPTION_TARGET_LINK_ADDRESS, 1) + mac
    return header + address.packed + option
