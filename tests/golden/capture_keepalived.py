"""Capture golden VRRP adverts from the real keepalived, in a lab, into keepalived.json.

Run as root from the project root: ``.venv/bin/python -m tests.golden.capture_keepalived``.
Each case starts one keepalived alone on a LAN (so it becomes master), records the first
advert it sends as master, and for the priority-0 case the advert it sends on SIGTERM.
The decoded fields are written next to the bytes, as keepalived's config states them, and
the unit tests check that hanet's decoder agrees.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

from hanet.lab.daemons import Keepalived, wait_until
from hanet.lab.lab import Lab
from hanet.lab.pytest_plugin import unique_prefix
from hanet.lab.topology import lan_topology
from hanet.linux.netns import inside

OUT = Path(__file__).with_name("keepalived.json")
ETH_P_ALL = 0x0003

CASES = {
    "v2_auth_pass": dict(
        conf="""
vrrp_instance G {
  state BACKUP
  interface eth0
  virtual_router_id 42
  priority 150
  advert_int 1
  authentication { auth_type PASS
    auth_pass secret }
  virtual_ipaddress { 10.0.0.200/24
    10.0.0.201/24 }
}""",
        version=2,
        family=4,
        fields=dict(
            version=2,
            vrid=42,
            priority=150,
            advert_int_cs=100,
            auth_type=1,
            auth_data="736563726574" + "0000",
            addresses=["10.0.0.200", "10.0.0.201"],
            source="10.0.0.1",
        ),
    ),
    "v3_ipv4": dict(
        conf="""
vrrp_instance G {
  state BACKUP
  interface eth0
  virtual_router_id 43
  priority 120
  advert_int 0.5
  virtual_ipaddress { 10.0.0.200/24 }
}""",
        version=3,
        family=4,
        fields=dict(
            version=3,
            vrid=43,
            priority=120,
            advert_int_cs=50,
            auth_type=0,
            auth_data="",
            addresses=["10.0.0.200"],
            source="10.0.0.1",
        ),
    ),
    "v3_ipv6": dict(
        conf="""
vrrp_instance G {
  state BACKUP
  interface eth0
  virtual_router_id 44
  priority 130
  advert_int 1
  virtual_ipaddress { fe80::200/64
    fd00::200/64 }
}""",
        version=3,
        family=6,
        fields=dict(
            version=3,
            vrid=44,
            priority=130,
            advert_int_cs=100,
            auth_type=0,
            auth_data="",
            addresses=["fe80::200", "fd00::200"],
            source=None,
        ),
    ),
}


def sniff(lab: Lab, host: str) -> socket.socket:
    with inside(lab.ns(host)):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", ETH_P_ALL))
    sock.settimeout(0.2)
    return sock


def vrrp_packets(sock: socket.socket, seconds: float) -> list[bytes]:
    found, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = sock.recv(65535)
        except TimeoutError:
            continue
        ethertype = int.from_bytes(frame[12:14], "big")
        ip = frame[14:]
        if (ethertype == 0x0800 and ip[9] == 112) or (ethertype == 0x86DD and ip[6] == 112):
            found.append(ip)
    return found


def capture_case(name: str, case: dict[str, object]) -> list[dict[str, object]]:
    lab = Lab(lan_topology(routers=1), unique_prefix()).up()
    keepalived = Keepalived(lab, "r1")
    records = []
    try:
        conf = f"global_defs {{\n  vrrp_version {case['version']}\n}}\n{case['conf']}\n"
        sock = sniff(lab, "c")
        keepalived.start(conf)
        wait_until(lambda: vrrp_packets(sock, 0.3), 15, f"{name}: keepalived's first advert")
        packet = vrrp_packets(sock, 2.5)[-1]
        fields = dict(case["fields"])  # type: ignore[arg-type]
        records.append({"name": name, "hex": packet.hex(), "fields": fields})
        if name == "v3_ipv4":
            keepalived.stop()
            zero = [p for p in vrrp_packets(sock, 0.5) if p[22] == 0]
            if not zero:
                raise RuntimeError("keepalived sent no priority-0 advert on SIGTERM")
            records.append({"name": "v3_ipv4_priority0", "hex": zero[0].hex(),
                            "fields": dict(fields, priority=0)})  # fmt: skip
        sock.close()
    finally:
        keepalived.cleanup()
        lab.down()
    return records


def main() -> None:
    version = subprocess.run(["keepalived", "--version"], capture_output=True, text=True)
    records = []
    for name, case in CASES.items():
        records += capture_case(name, case)
    banner = (version.stderr or version.stdout).splitlines()[0]
    OUT.write_text(json.dumps({"captured_from": banner, "packets": records}, indent=1) + "\n")
    print(f"wrote {len(records)} packets to {OUT}")


if __name__ == "__main__":
    main()
