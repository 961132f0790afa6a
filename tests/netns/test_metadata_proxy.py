"""Each router's metadata proxy: a real HAProxy in the router's namespace in front of the
lab metadata service, asked by a VM as cloud-init asks.

vm1 (10.0.0.5) -- int  -- qr [router1: 169.254.169.254 on lo, haproxy for r1]
vm2 (10.0.0.5) -- int2 -- qr [router2: 169.254.169.254 on lo, haproxy for r2]
                           both forward to one metadata service on a unix socket

Both VMs have the same address on different networks: only the router id the proxy adds
tells the service which instance asks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hanet.agent.metadata import METADATA_ADDRESS, MetadataProxy, config
from hanet.lab.daemons import wait_until
from hanet.lab.lab import Lab, pids_in_netns
from hanet.lab.topology import Host, Link, Topology
from hanet.linux import haproxy

QR1 = "qr-5f6a7b8c-9d"
QR2 = "qr-aa11bb22-cc"
ROUTERS = {"router1": ("r1-5f6a7b8c", "vm1"), "router2": ("r2-aa11bb22", "vm2")}
INSTANCES = [
    {"router_id": "r1-5f6a7b8c", "address": "10.0.0.5", "uuid": "uuid-vm1", "name": "vm1"},
    {"router_id": "r2-aa11bb22", "address": "10.0.0.5", "uuid": "uuid-vm2", "name": "vm2"},
]

# What cloud-init does, plus a forged X-Forwarded-For that the proxy must not pass on.
CLIENT = """
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"X-Forwarded-For": "10.9.9.9"})
with urllib.request.urlopen(request, timeout=float(sys.argv[2])) as response:
    sys.stdout.write(response.read().decode())
"""


def topology() -> Topology:
    def link(segment: str, address: str) -> Link:
        return Link(segment, (ipaddress.ip_interface(address),))

    return Topology(
        ("int", "int2"),
        {
            "router1": Host({QR1: link("int", "10.0.0.1/24")}),
            "router2": Host({QR2: link("int2", "10.0.0.1/24")}),
            "vm1": Host({"eth0": link("int", "10.0.0.5/24")}),
            "vm2": Host({"eth0": link("int2", "10.0.0.5/24")}),
        },
    )


def ask(lab: Lab, vm: str, path: str, timeout: float = 5) -> str | None:
    """The body the VM gets for ``path`` on 169.254.169.254; None if unreachable."""
    url = f"http://{METADATA_ADDRESS}{path}"
    result = lab.run(vm, [sys.executable, "-c", CLIENT, url, str(timeout)], check=False)
    return result.stdout if result.returncode == 0 else None


class Proxies:
    """The proxies this test started, by router host; stopped after the test by PID file."""

    def __init__(self, lab: Lab, run_dir: Path, service_socket: Path) -> None:
        self.lab, self.run_dir, self.socket = lab, run_dir, service_socket
        self.started: dict[str, tuple[Path, Path]] = {}

    def files(self, host: str) -> tuple[Path, Path]:
        router = ROUTERS[host][0]
        return self.run_dir / f"{router}.cfg", self.run_dir / f"{router}.pid"

    def start(self, host: str) -> int:
        cfg, pid_file = self.files(host)
        text = config(MetadataProxy(ROUTERS[host][0], str(self.socket), str(pid_file)))
        haproxy.write_config(cfg, text)
        self.started[host] = (cfg, pid_file)
        return asyncio.run(haproxy.start(self.lab.ns(host), cfg, pid_file))

    def stop(self, host: str) -> bool:
        cfg, pid_file = self.files(host)
        return asyncio.run(haproxy.stop(pid_file, cfg))

    def running(self, host: str) -> int | None:
        cfg, pid_file = self.files(host)
        return haproxy.running(pid_file, cfg)

    def stop_all(self) -> None:
        for cfg, pid_file in self.started.values():
            asyncio.run(haproxy.stop(pid_file, cfg))


@pytest.fixture
def setup(
    make_lab: Callable[[Topology], Lab], tmp_path: Path
) -> Iterator[tuple[Lab, Proxies, Path]]:
    lab = make_lab(topology())
    for host, (_, vm) in ROUTERS.items():
        lab.run(host, ["ip", "addr", "add", f"{METADATA_ADDRESS}/32", "dev", "lo"])
        lab.run(vm, ["ip", "route", "add", f"{METADATA_ADDRESS}/32", "via", "10.0.0.1"])
    instances = tmp_path / "instances.json"
    instances.write_text(json.dumps(INSTANCES))
    socket, log = tmp_path / "metadata.sock", tmp_path / "service.log"
    with log.open("wb") as out:
        # The service needs no network: any lab host will do, and down() stops it.
        lab.spawn("vm1", [sys.executable, "-m", "hanet.lab.metadata_service",
                          "--socket", str(socket), "--instances", str(instances)],
                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    wait_until(socket.is_socket, 10, "the metadata service's socket")
    proxies = Proxies(lab, tmp_path / "run", socket)
    try:
        yield lab, proxies, log
    finally:
        proxies.stop_all()


def seen(log: Path) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if "path" in line]


def test_each_vm_gets_its_own_data_through_its_router(setup: tuple[Lab, Proxies, Path]) -> None:
    lab, proxies, log = setup
    assert ask(lab, "vm1", "/openstack/latest/meta_data.json", timeout=1) is None

    pid = proxies.start("router1")
    assert proxies.running("router1") == pid
    assert pid in pids_in_netns(lab.ns("router1"))
    # Starting again adopts the running proxy instead of making a second one.
    assert proxies.start("router1") == pid

    body = wait_until(lambda: ask(lab, "vm1", "/openstack/latest/meta_data.json"), 10,
                      "vm1's metadata through router1")  # fmt: skip
    assert json.loads(body)["uuid"] == "uuid-vm1"
    assert ask(lab, "vm1", "/latest/meta-data/instance-id") == "uuid-vm1"
    assert ask(lab, "vm1", "/latest/meta-data/local-ipv4") == "10.0.0.5"
    # The service was told the router and the VM's real address, not the forged one.
    assert {"router": "r1-5f6a7b8c", "address": "10.0.0.5", "uuid": "uuid-vm1"}.items() <= seen(
        log
    )[-1].items()
    assert all(entry["address"] == "10.0.0.5" for entry in seen(log))

    # A second router's proxy, in its own namespace, says its own router id: the same
    # address behind it is another instance.
    assert ask(lab, "vm2", "/openstack/latest/meta_data.json", timeout=1) is None
    proxies.start("router2")
    body = wait_until(lambda: ask(lab, "vm2", "/openstack/latest/meta_data.json"), 10,
                      "vm2's metadata through router2")  # fmt: skip
    assert json.loads(body)["uuid"] == "uuid-vm2"
    assert seen(log)[-1]["router"] == "r2-aa11bb22"

    # Stopping router1's proxy: unreachable there, no process left; router2's still answers.
    assert proxies.stop("router1") is True
    assert proxies.running("router1") is None
    assert (
        not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
    )
    assert pid not in pids_in_netns(lab.ns("router1"))
    assert ask(lab, "vm1", "/openstack/latest/meta_data.json", timeout=1) is None
    assert (
        json.loads(ask(lab, "vm2", "/openstack/latest/meta_data.json") or "{}")["uuid"]
        == "uuid-vm2"
    )
    # Stopping twice is harmless.
    assert proxies.stop("router1") is False


def test_a_refused_config_says_haproxys_error(
    setup: tuple[Lab, Proxies, Path], tmp_path: Path
) -> None:
    lab, _, _ = setup
    cfg, pid_file = tmp_path / "bad.cfg", tmp_path / "bad.pid"
    cfg.write_text("listen metadata\n    bind 169.254.169.254:80\n    frobnicate yes\n")
    with pytest.raises(haproxy.HaproxyError, match=r"haproxy refused .*bad.cfg: .*frobnicate"):
        asyncio.run(haproxy.start(lab.ns("router1"), cfg, pid_file))
    assert haproxy.running(pid_file, cfg) is None


def test_an_address_it_cannot_bind_says_so(
    setup: tuple[Lab, Proxies, Path], tmp_path: Path
) -> None:
    lab, _, _ = setup
    cfg, pid_file = tmp_path / "nobind.cfg", tmp_path / "nobind.pid"
    text = config(
        MetadataProxy("r9", str(tmp_path / "x.sock"), str(pid_file), bind_address="192.0.2.77")
    )
    haproxy.write_config(cfg, text)
    with pytest.raises(haproxy.HaproxyError, match=r"did not start in namespace .*cannot bind"):
        asyncio.run(haproxy.start(lab.ns("router1"), cfg, pid_file))
    assert haproxy.running(pid_file, cfg) is None
