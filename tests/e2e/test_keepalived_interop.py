"""hanet and keepalived 2.2.7 in one VRRP group, in both roles, for VRRPv2 and VRRPv3."""

from __future__ import annotations

from typing import Any

import pytest

from hanet.lab.daemons import keepalived_available, wait_until
from hanet.lab.daemons import keepalived_conf as render_keepalived
from tests.netns.helpers import VIP4, VIP6, instance, wait_client_uses

pytestmark = pytest.mark.skipif(not keepalived_available(), reason="keepalived not installed")

VERSIONS = {
    # VRRPv2 at its smallest interval, with a password; VRRPv3 at 100 ms.
    2: {"advert_int": 1.0, "auth_pass": "s3cret"},
    3: {"advert_int": 0.1},
}


def keepalived_conf(version: int, priority: int, vip: str = f"{VIP4}/24") -> str:
    return render_keepalived(version=version, priority=priority, vip=vip, **VERSIONS[version])


def hanet_conf(version: int, priority: int, vip: str = f"{VIP4}/24") -> dict[str, Any]:
    return {"vr": instance(priority=priority, vips=(vip,), version=version, **VERSIONS[version])}


@pytest.fixture(params=["run", "vrrpd"])
def start_hanet(request, daemons):  # type: ignore[no-untyped-def]
    """Start hanet as `hanet vrrp run` (its own YAML) or as `hanet vrrpd` (the very same
    keepalived.conf as the keepalived peer); returns (daemon, instance name)."""

    def start(lan, host: str, version: int, priority: int, vip: str = f"{VIP4}/24"):  # type: ignore[no-untyped-def]
        if request.param == "run":
            return daemons("hanet", lan, host, hanet_conf(version, priority, vip)), "vr"
        return daemons("vrrpd", lan, host, keepalived_conf(version, priority, vip)), "VI_51"

    return start


@pytest.mark.parametrize("version", [2, 3])
def test_hanet_backs_up_keepalived_and_takes_over(lan, daemons, start_hanet, version: int) -> None:
    keepalived = daemons("keepalived", lan, "r1", keepalived_conf(version, 200))
    keepalived.wait_master(VIP4, timeout=15)
    hanet, vr = start_hanet(lan, "r2", version, 100)
    wait_until(lambda: hanet.status().get(vr, {}).get("master") == "10.0.0.1", 10,
               "hanet to follow keepalived as master")  # fmt: skip
    assert hanet.status()[vr]["drops"] == {}
    assert not hanet.holds(VIP4)
    lan.crash("r1")
    hanet.wait_master(VIP4)
    wait_client_uses(lan, VIP4, "r2")


@pytest.mark.parametrize("version", [2, 3])
def test_keepalived_backs_up_hanet_and_takes_over(lan, daemons, start_hanet, version: int) -> None:
    hanet, vr = start_hanet(lan, "r1", version, 200)
    hanet.wait_master(VIP4)
    keepalived = daemons("keepalived", lan, "r2", keepalived_conf(version, 100))
    # keepalived's Master_Down_Interval is under 4 s for both versions: after 5 s of hanet
    # adverts with no answer, keepalived has settled as backup.
    interval = VERSIONS[version]["advert_int"]
    wait_until(lambda: hanet.status().get(vr), 5, "hanet's status")
    sent = hanet.status()[vr]["adverts_sent"]
    wait_until(lambda: hanet.status()[vr]["adverts_sent"] >= sent + 5 / interval, 15,
               "hanet to keep advertising")  # fmt: skip
    assert hanet.status()[vr]["adverts_received"] == 0
    assert hanet.status()[vr]["state"] == "MASTER"
    assert not keepalived.holds(VIP4)
    lan.crash("r1")
    keepalived.wait_master(VIP4, timeout=15)
    wait_client_uses(lan, VIP4, "r2")


@pytest.mark.parametrize("version", [2, 3])
def test_higher_priority_hanet_preempts_keepalived(lan, daemons, start_hanet, version: int) -> None:
    keepalived = daemons("keepalived", lan, "r1", keepalived_conf(version, 100))
    keepalived.wait_master(VIP4, timeout=15)
    hanet, _ = start_hanet(lan, "r2", version, 200)
    hanet.wait_master(VIP4, timeout=15)
    keepalived.wait_backup(VIP4)
    wait_client_uses(lan, VIP4, "r2")


@pytest.mark.parametrize("version", [2, 3])
def test_higher_priority_keepalived_preempts_hanet(lan, daemons, start_hanet, version: int) -> None:
    hanet, vr = start_hanet(lan, "r1", version, 100)
    hanet.wait_master(VIP4, timeout=15)
    keepalived = daemons("keepalived", lan, "r2", keepalived_conf(version, 200))
    keepalived.wait_master(VIP4, timeout=15)
    hanet.wait_backup(VIP4)
    wait_until(lambda: hanet.status()[vr]["master"] == "10.0.0.2", 5, "hanet to follow")
    wait_client_uses(lan, VIP4, "r2")


def test_ipv6_group_with_keepalived(lan, daemons, start_hanet) -> None:
    keepalived = daemons("keepalived", lan, "r1", keepalived_conf(3, 200, f"{VIP6}/64"))
    keepalived.wait_master(VIP6, timeout=15)
    hanet, vr = start_hanet(lan, "r2", 3, 100, f"{VIP6}/64")
    wait_until(lambda: (hanet.status().get(vr, {}).get("master") or "").startswith("fe80:"),
               10, "hanet to follow keepalived over IPv6")  # fmt: skip
    assert not hanet.holds(VIP6)
    lan.crash("r1")
    hanet.wait_master(VIP6)
    wait_client_uses(lan, VIP6, "r2")
