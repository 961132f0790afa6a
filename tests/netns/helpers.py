"""Small helpers shared by the lab tests."""

from __future__ import annotations

from typing import Any

from hanet.lab.daemons import wait_until
from hanet.lab.lab import Lab

VIP4 = "10.0.0.200"
VIP6 = "fd00::200"


def instance(vrid: int = 51, priority: int = 100, vips: tuple[str, ...] = (f"{VIP4}/24",),
             **extra: Any) -> dict[str, Any]:  # fmt: skip
    config: dict[str, Any] = {
        "interface": "eth0", "vrid": vrid, "priority": priority, "addresses": list(vips),
        "advert_int": 0.1, "garp_refresh_delay": 0,
    }  # fmt: skip
    config.update(extra)
    return config


def reaches(lab: Lab, client: str, address: str) -> bool:
    return lab.run(client, ["ping", "-c1", "-W1", address], check=False).returncode == 0


def mac_of(lab: Lab, host: str, ifname: str = "eth0") -> str:
    out = lab.run(host, ["cat", f"/sys/class/net/{ifname}/address"]).stdout
    return out.strip()


def client_sends_to(lab: Lab, client: str, address: str, router: str) -> bool:
    """The client reaches ``address`` and its neighbour entry points at ``router``'s MAC."""
    if not reaches(lab, client, address):
        return False
    neigh = lab.run(client, ["ip", "neigh", "show", address], check=False).stdout
    return mac_of(lab, router) in neigh


def wait_client_uses(lab: Lab, address: str, router: str, timeout: float = 10) -> None:
    wait_until(lambda: client_sends_to(lab, "c", address, router), timeout,
               f"client to reach {address} through {router}")  # fmt: skip
