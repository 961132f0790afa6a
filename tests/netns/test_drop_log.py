"""Dropped packets are logged with their reason and source, and a flood of them is not.

keepalived logs every advert with a wrong password; hanet logged none. Now the first of a
kind is logged at once and then at most one line per 10 s, saying how many were held back.
"""

from __future__ import annotations

import ipaddress
import math
import time

from hanet.lab.daemons import wait_until
from hanet.vrrp import Advertisement, encode_ip_packet
from tests.netns.helpers import VIP4
from tests.netns.test_bad_packets import send_raw

ATTACKER = ipaddress.IPv4Address("10.0.0.250")
CONFIG = (
    "global_defs {\n  vrrp_version 2\n}\n"
    "vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n"
    "  priority 100\n  advert_int 1\n  authentication {\n    auth_type PASS\n"
    f"    auth_pass secret\n  }}\n  virtual_ipaddress {{\n    {VIP4}/24\n  }}\n}}\n"
)
COUNT = 50


def test_refused_and_malformed_packets_are_logged_rate_limited(lan, daemons) -> None:
    r1 = daemons("vrrpd", lan, "r1", CONFIG)
    r1.wait_state("VI_1", "BACKUP")
    wrong = encode_ip_packet(Advertisement(
        version=2, vrid=51, priority=254, addresses=(ipaddress.IPv4Address(VIP4),),
        advert_int_cs=100, source=ATTACKER, destination=ipaddress.IPv4Address("224.0.0.18"),
        auth_type=1, auth_data=b"guessed\0",
    ))  # fmt: skip
    bad_checksum = wrong[:22] + bytes([wrong[22] ^ 0xFF]) + wrong[23:]
    started = time.monotonic()
    send_raw(lan, "c", [wrong, bad_checksum] * COUNT)
    wait_until(lambda: r1.status().get("VI_1", {}).get("drops") ==
               {"auth_mismatch": COUNT, "bad_checksum": COUNT}, 10,
               "every packet to be counted")  # fmt: skip
    elapsed = time.monotonic() - started
    log = r1.log().splitlines()
    refused = [line for line in log if "auth_mismatch" in line]
    malformed = [line for line in log if "bad_checksum" in line]
    assert refused and malformed, log
    assert "WARNING" in refused[0] and "INFO" in malformed[0]
    assert ("VI_1: dropped an advert from 10.0.0.250: auth_mismatch "
            "(authentication type or password differs)") in refused[0]  # fmt: skip
    assert "eth0: dropped a packet from 10.0.0.250: bad_checksum" in malformed[0]
    # One line at once, then at most one per 10 s: however long the packets took to arrive.
    most = 1 + math.ceil(elapsed / 10)
    assert len(refused) <= most and len(malformed) <= most, (refused, malformed)
