"""Watch an interface for gratuitous ARPs: ``python -m hanet.lab.arpwatch IFNAME``.

Run inside a lab host, it prints ``ready`` once listening, then one JSON line per
gratuitous ARP (sender address equal to target address), with a monotonic timestamp, so
that a test can see how many announcements a new master sent, and when.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import time
from typing import Any

ETH_P_ARP = 0x0806
ARP_FRAME_LEN = 14 + 28


def gratuitous(frame: bytes) -> dict[str, Any] | None:
    """The announcement in an Ethernet frame, or None if it is not a gratuitous ARP."""
    if len(frame) < ARP_FRAME_LEN or frame[12:14] != b"\x08\x06":
        return None
    arp = frame[14:ARP_FRAME_LEN]
    if arp[0:6] != b"\x00\x01\x08\x00\x06\x04":  # Ethernet, IPv4, their address lengths
        return None
    sender_ip, target_ip = arp[14:18], arp[24:28]
    if sender_ip != target_ip:
        return None
    return {
        "ip": str(ipaddress.IPv4Address(sender_ip)),
        "mac": arp[8:14].hex(":"),
        "op": "reply" if arp[7] == 2 else "request",
    }


def main(ifname: str) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((ifname, 0))
    print("ready", flush=True)
    while True:
        frame = sock.recv(2048)
        seen = gratuitous(frame)
        if seen is not None:
            print(json.dumps({"time": time.monotonic(), **seen}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
