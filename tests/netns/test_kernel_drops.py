"""Every packet sent to a daemon is accounted for, including those the kernel drops.

A flood that overflows the socket's receive buffer used to lose packets that no counter
showed. Now the kernel's count (SO_RXQ_OVFL) is a drop reason of its own, so what the
daemon accepted plus every drop reason add up to what was sent.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys

from hanet.lab.daemons import HanetVrrpd, hanet_command, wait_until
from hanet.linux.netns import inside
from hanet.vrrp import Advertisement, encode_ip_packet
from tests.netns.helpers import VIP4

ATTACKER = ipaddress.IPv4Address("10.0.0.250")
FLOOD = 20_000  # several times what the 4 MiB receive buffer holds (about 5,000)
CONFIG = (
    "global_defs {\n  vrrp_version 3\n}\n"
    "vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n"
    f"  priority 100\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP4}/24\n  }}\n}}\n"
)


def advert(vrid: int) -> bytes:
    return encode_ip_packet(Advertisement(
        version=3, vrid=vrid, priority=254, addresses=(ipaddress.IPv4Address(VIP4),),
        advert_int_cs=100, source=ATTACKER, destination=ipaddress.IPv4Address("224.0.0.18"),
    ))  # fmt: skip


def accounted(entry: dict[str, object]) -> int:
    drops = entry["drops"]
    assert isinstance(drops, dict)
    return int(entry["adverts_received"]) + sum(drops.values())  # type: ignore[call-overload]


def test_a_flood_is_accounted_for_in_full(lan) -> None:
    r1 = HanetVrrpd(lan, "r1").start(CONFIG, extra=["--metrics", "127.0.0.1:9650"])
    try:
        flood(lan, r1)
    finally:
        r1.stop()
        r1.cleanup()


def flood(lan, r1: HanetVrrpd) -> None:  # type: ignore[no-untyped-def]
    r1.wait_state("VI_1", "BACKUP")  # its socket is open: from now on every packet counts
    assert r1.proc is not None
    with inside(lan.ns("c")):
        sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    ours, foreign = advert(51), advert(99)  # accepted, and dropped as vrid_not_ours
    sent = 0
    with sender:
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")

        def send(packet: bytes) -> None:
            nonlocal sent
            sender.sendto(packet, ("224.0.0.18", 0))
            sent += 1

        # A stopped daemon reads nothing: the kernel fills the buffer, then drops the rest,
        # however fast this machine is.
        os.kill(r1.proc.pid, signal.SIGSTOP)
        try:
            for i in range(FLOOD):
                send(foreign if i % 4 == 0 else ours)
        finally:
            os.kill(r1.proc.pid, signal.SIGCONT)

        def caught_up() -> bool:
            entry = r1.status().get("VI_1")
            if entry is None:
                return False  # busy reading the flood: ask again
            if accounted(entry) == sent:
                return True
            # The kernel tells its count with the next packet it queues: keep one coming.
            send(ours)
            return False

        wait_until(caught_up, 30, "received plus dropped to equal what was sent", step=0.2)
    status = r1.status()["VI_1"]
    overflows = status["drops"]["receive_buffer_overflow"]
    assert overflows > 0 and status["drops"]["vrid_not_ours"] > 0, status
    assert "receive buffer full: the kernel dropped" in r1.log()
    # Where an operator looks: the status table and the metrics.
    table = lan.run("r1", [*hanet_command(), "vrrp", "status",
                           "--control-socket", str(r1.control)]).stdout  # fmt: skip
    assert f"receive_buffer_overflow={overflows}" in table, table
    fetch = (
        "import urllib.request as u;"
        "print(u.urlopen('http://127.0.0.1:9650/metrics', timeout=5).read().decode())"
    )
    body = lan.run("r1", [sys.executable, "-c", fetch]).stdout
    assert (f'hanet_vrrp_drops_total{{instance="VI_1",reason="receive_buffer_overflow"}} '
            f"{float(overflows)}") in body  # fmt: skip
