"""Malformed, spoofed and foreign adverts are dropped and counted; state never changes.

RFC 5798 §7.1: TTL must be 255, the checksum must match, the version and VRID must fit.
"""

from __future__ import annotations

import ipaddress
import socket

from hanet.lab.daemons import wait_until
from hanet.linux.netns import inside
from hanet.vrrp import Advertisement, encode_ip_packet
from tests.netns.helpers import VIP4, instance

ATTACKER = ipaddress.IPv4Address("10.0.0.250")  # higher than every router: would win a tie


def advert(**kw: object) -> Advertisement:
    base: dict[str, object] = dict(
        version=3, vrid=51, priority=254, addresses=(ipaddress.IPv4Address(VIP4),),
        advert_int_cs=10, source=ATTACKER, destination=ipaddress.IPv4Address("224.0.0.18"),
    )  # fmt: skip
    base.update(kw)
    return Advertisement(**base)  # type: ignore[arg-type]


def send_raw(lab, host: str, packets: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    """Send whole IP packets, header as given (IP_HDRINCL), from inside a lab host."""
    with inside(lab.ns(host)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
        for packet in packets:
            sock.sendto(packet, ("224.0.0.18", 0))


def test_bad_adverts_are_counted_and_change_nothing(lan, daemons) -> None:
    r1 = daemons("hanet", lan, "r1", {"vr": instance(priority=200)})
    r2 = daemons("hanet", lan, "r2", {"vr": instance(priority=100)})
    r1.wait_master(VIP4)
    wait_until(lambda: r2.status().get("vr", {}).get("master") == "10.0.0.1", 5, "backup")

    good = encode_ip_packet(advert())
    spoofed_ttl = encode_ip_packet(advert(ttl=64))
    bad_checksum = good[:22] + bytes([good[22] ^ 0xFF]) + good[23:]
    truncated = good[:-2]
    wrong_vrid = encode_ip_packet(advert(vrid=99))
    wrong_version = encode_ip_packet(advert(version=2, advert_int_cs=100))
    garbage = good[:20] + b"\xff" * 40
    for _ in range(3):
        send_raw(lan, "c", [spoofed_ttl, bad_checksum, truncated, wrong_vrid, wrong_version,
                            garbage])  # fmt: skip

    expected = {"bad_ttl", "bad_checksum", "truncated", "vrid_not_ours", "version_mismatch"}
    for router in (r1, r2):
        wait_until(lambda r=router: expected <= set(r.status()["vr"]["drops"]), 5,
                   f"{router.host} to count every kind of bad packet")  # fmt: skip
        assert router.proc is not None and router.proc.poll() is None
    assert r1.status()["vr"]["state"] == "MASTER" and r1.holds(VIP4)
    assert r2.status()["vr"]["state"] == "BACKUP" and not r2.holds(VIP4)
    assert r1.status()["vr"]["transitions"] == 2  # INITIALIZE -> BACKUP -> MASTER, no more
    assert r2.status()["vr"]["master"] == "10.0.0.1"
