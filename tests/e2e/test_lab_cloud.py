"""The lab cloud as its user drives it: ``hanet lab cloud up``, the API from the machine's own
namespace, ``lab vm create``, ``lab exec``, ``lab crash``, ``lab cloud down``.

One small cloud (2 network nodes, 1 compute node) for the module; the tests of ``down`` after
a crashed or half-built ``up`` make their own. Everything has a unique prefix and is removed
even when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hanet.lab.cloud import Cloud
from hanet.lab.cloud_nodes import cloud_namespaces, destroy
from hanet.lab.cloud_state import RUN_ROOT
from hanet.lab.daemons import hanet_command, wait_until
from hanet.lab.pytest_plugin import unique_prefix
from hanet.server.client import ApiClient

OPENSTACK = shutil.which("openstack", path=str(Path(sys.executable).parent))
NUL = bytes(1)
LIFETIMES = re.compile(r"\s+(valid|preferred)_lft \S+")


def hanet(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*hanet_command(), *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def machine_network() -> dict[str, list[str]]:
    """What the machine's own namespace has: addresses (without their ticking lifetimes),
    links and routes."""
    seen = {}
    for name, argv in {"addr": ["ip", "-o", "addr"], "link": ["ip", "-o", "link"],
                       "route": ["ip", "route"]}.items():  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        seen[name] = sorted(LIFETIMES.sub("", line) for line in out.splitlines())
    return seen


def processes_of(prefix: str) -> list[str]:
    """Processes whose command line names the cloud's run directory (every daemon's does)."""
    marker = f"{RUN_ROOT}/{prefix}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"{entry.name}: {cmdline.replace(NUL, b' ').decode()}")
    return found


def assert_nothing_left(prefix: str) -> None:
    names = cloud_namespaces(prefix)
    assert not [n for n in names if n.startswith(f"{prefix}-")], names
    assert not [n for n in names if f"@{prefix}-" in n], names
    assert not processes_of(prefix)
    assert not (RUN_ROOT / prefix).exists()


@dataclass
class Up:
    prefix: str
    result: subprocess.CompletedProcess[str]
    before: dict[str, list[str]]
    after: dict[str, list[str]]

    @property
    def endpoint(self) -> str:
        match = re.search(r"^endpoint: (http://127\.0\.0\.1:\d+)$", self.result.stdout, re.M)
        assert match, self.result.stdout
        return match.group(1)

    def api(self) -> ApiClient:
        return ApiClient(self.endpoint)

    def lab(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = hanet("lab", *args, "--prefix", self.prefix)
        if ok:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    def exec(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return hanet("lab", "exec", name, "--prefix", self.prefix, "--", *argv)


@pytest.fixture(scope="module")
def cloud(request: pytest.FixtureRequest) -> Iterator[Up]:
    prefix = unique_prefix()
    before = machine_network()
    try:
        result = hanet("lab", "cloud", "up", "--prefix", prefix, "--network-nodes", "2",
                       "--compute-nodes", "1")  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        yield Up(prefix, result, before, machine_network())
    finally:
        if request.session.testsfailed and (RUN_ROOT / prefix / "cloud.json").exists():
            print(Cloud.load(prefix).logs())  # shown with the failure
        hanet("lab", "cloud", "down", "--prefix", prefix)
        destroy(prefix)


def test_up_prints_the_endpoint_and_its_progress(cloud: Up) -> None:
    assert cloud.endpoint.startswith("http://127.0.0.1:")
    assert "✓ hanet-server in ctl" in cloud.result.stderr
    assert "✓ hanet-agent on net1, net2, cmp1" in cloud.result.stderr


def test_the_endpoint_answers_from_the_machines_namespace(cloud: Up) -> None:
    with urllib.request.urlopen(cloud.endpoint + "/v2.0/networks", timeout=10) as answer:
        assert answer.status == 200


def test_up_adds_nothing_to_the_machines_namespace(cloud: Up) -> None:
    assert cloud.after == cloud.before


def test_agents_of_every_node_are_alive(cloud: Up) -> None:
    agents = cloud.api().get("/v2.0/agents").body["agents"]
    by_host = {(a["host"], a["agent_type"]): a["alive"] for a in agents}
    assert by_host[("net1", "L3 agent")] and by_host[("net2", "L3 agent")]
    assert any(alive for (host, _), alive in by_host.items() if host == "cmp1")


def test_public_is_a_flat_external_network_on_physnet_public(cloud: Up) -> None:
    (public,) = cloud.api().get("/v2.0/networks?name=public").body["networks"]
    assert public["router:external"] is True
    assert public["provider:network_type"] == "flat"
    assert public["provider:physical_network"] == "public"
    (subnet,) = cloud.api().get(f"/v2.0/subnets?network_id={public['id']}").body["subnets"]
    assert (subnet["cidr"], subnet["gateway_ip"]) == ("203.0.113.0/24", "203.0.113.1")
    assert subnet["allocation_pools"] == [{"start": "203.0.113.10", "end": "203.0.113.250"}]
    assert subnet["enable_dhcp"] is False


@pytest.mark.skipif(OPENSTACK is None, reason="python-openstackclient missing")
def test_the_openstack_client_works_against_the_endpoint(cloud: Up) -> None:
    assert OPENSTACK is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    result = subprocess.run(
        [OPENSTACK, "--os-auth-type", "none", "--os-endpoint", cloud.endpoint,
         "network", "list", "-f", "json"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "public" in [n["Name"] for n in json.loads(result.stdout)]


def test_exec_runs_in_upstream_and_passes_the_status_through(cloud: Up) -> None:
    result = cloud.exec("upstream", "ip", "-o", "addr")
    assert result.returncode == 0
    assert " 203.0.113.1/24 " in result.stdout
    assert cloud.exec("net1", "sh", "-c", "echo out; echo err >&2; exit 7").returncode == 7
    nodes = cloud.exec("ctl", "ip", "-o", "addr").stdout
    assert " 10.0.0.10/24 " in nodes


def test_no_namespace_of_the_cloud_learns_arp_from_garps(cloud: Up) -> None:
    """No ARP entry from each router's GARPs (the kernel's neighbour table is shared by all
    namespaces of the machine)."""
    read = "cat /proc/sys/net/ipv4/conf/all/arp_accept /proc/sys/net/ipv4/conf/*/arp_accept"
    for node in ("net1", "cmp1", "upstream", "ctl"):
        assert set(cloud.exec(node, "sh", "-c", read).stdout.split()) == {"0"}, node


def test_exec_in_an_unknown_host_says_which_there_are(cloud: Up) -> None:
    result = cloud.exec("net9", "true")
    assert result.returncode == 1
    assert "has no node or VM 'net9'" in result.stderr and "cmp1" in result.stderr


def test_a_second_up_with_the_prefix_is_refused(cloud: Up) -> None:
    result = hanet("lab", "cloud", "up", "--prefix", cloud.prefix)
    assert result.returncode == 1
    assert f"cloud {cloud.prefix} exists already" in result.stderr


def test_a_vm_gets_its_port_plugged_and_reaches_upstream(cloud: Up) -> None:
    api = cloud.api()
    network = api.post("/v2.0/networks", {"network": {"name": "private"}}).body["network"]
    subnet_body = {"network_id": network["id"], "ip_version": 4, "cidr": "192.168.7.0/24"}
    subnet = api.post("/v2.0/subnets", {"subnet": subnet_body}).body["subnet"]
    router = api.post("/v2.0/routers", {"router": {
        "name": "r1", "external_gateway_info": {
            "network_id": api.get("/v2.0/networks?name=public").body["networks"][0]["id"]}},
    }).body["router"]  # fmt: skip
    assert router["ha"] is True
    api.put(f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": subnet["id"]})

    made = cloud.lab("vm", "create", "vm1", "--network", "private", "--host", "cmp1")
    address = made.stdout.strip()
    (port,) = api.get("/v2.0/ports?name=vm1").body["ports"]
    assert port["fixed_ips"][0]["ip_address"] == address
    assert (port["binding:host_id"], port["device_owner"]) == ("cmp1", "compute:nova")
    eth0 = cloud.exec("vm1", "ip", "-o", "link", "show", "eth0").stdout
    assert port["mac_address"] in eth0 and "mtu 1450" in eth0
    assert f" {address}/24 " in cloud.exec("vm1", "ip", "-o", "addr").stdout
    assert "default via 192.168.7.1" in cloud.exec("vm1", "ip", "route").stdout

    # Through the HA router's active instance on net1 or net2, SNAT to upstream.
    def pings() -> bool:
        return cloud.exec("vm1", "ping", "-c1", "-W1", "203.0.113.1").returncode == 0

    wait_until(pings, 60, "vm1 to reach upstream through its router", step=0.5)

    # The router's metadata proxy and the cloud's metadata service know the VM.
    url = "http://169.254.169.254/openstack/latest/meta_data.json"
    fetch = f"import urllib.request as u; print(u.urlopen({url!r}, timeout=5).read().decode())"

    # The proxy starts when the router's instance becomes master, maybe after the ping.
    def metadata() -> subprocess.CompletedProcess[str] | None:
        answer = cloud.exec("vm1", sys.executable, "-c", fetch)
        return answer if answer.returncode == 0 else None

    answer = wait_until(metadata, 30, "vm1's metadata", step=0.5)
    data = json.loads(answer.stdout)
    assert (data["name"], data["uuid"]) == ("vm1", port["device_id"])


def test_vm_names_are_checked(cloud: Up) -> None:
    bad = cloud.lab("vm", "create", "Net_1", "--network", "public", "--host", "cmp1", ok=False)
    assert bad.returncode == 1 and "VM name 'Net_1': must match" in bad.stderr
    taken = cloud.lab("vm", "create", "net1", "--network", "public", "--host", "cmp1", ok=False)
    assert "taken by the cloud's hosts" in taken.stderr
    host = cloud.lab("vm", "create", "vm9", "--network", "public", "--host", "net1", ok=False)
    assert "--host 'net1': not a compute node" in host.stderr
    missing = cloud.lab("vm", "create", "vm9", "--network", "nosuch", "--host", "cmp1", ok=False)
    assert "no network 'nosuch'" in missing.stderr


def test_crash_kills_a_node_and_cuts_its_links(cloud: Up) -> None:
    namespace = f"{cloud.prefix}-net2"
    routers = [n for n in cloud_namespaces(cloud.prefix) if n.endswith(f"@{namespace}")]
    result = cloud.lab("crash", "net2")
    assert "cut net2's links: mgmt, tun, ext (switch side down)" in result.stdout
    assert re.search(r"killed -9 \d+ processes: .*hanet-agent", result.stdout), result.stdout
    for name in routers:
        assert name in result.stdout
    assert not [p for p in processes_of(cloud.prefix) if "/net2/" in p]
    links = cloud.exec("net2", "ip", "-o", "link").stdout.splitlines()
    for ifname in ("mgmt", "tun", "ext"):
        (line,) = [line for line in links if f" {ifname}@" in line]
        assert "NO-CARRIER" in line, line

    def net2_dead() -> bool:
        agents = cloud.api().get("/v2.0/agents").body["agents"]
        return not any(a["alive"] for a in agents if a["host"] == "net2")

    wait_until(net2_dead, 30, "the server to find net2's agent dead", step=0.5)
    cloud.lab("recover", "net2")
    agents = cloud.api().get("/v2.0/agents").body["agents"]
    assert any(a["alive"] for a in agents if a["host"] == "net2")


def test_down_removes_everything_and_twice_is_fine(cloud: Up) -> None:
    first = cloud.lab("cloud", "down")
    assert re.search(r"killed \d+ processes, removed \d+ namespaces", first.stdout)
    assert_nothing_left(cloud.prefix)
    assert f"nothing left of cloud {cloud.prefix}" in cloud.lab("cloud", "down").stdout


# down after an up that went wrong ---------------------------------------------------------


@pytest.fixture
def prefix() -> Iterator[str]:
    name = unique_prefix()
    try:
        yield name
    finally:
        destroy(name)


def test_down_after_up_was_killed_halfway(prefix: str) -> None:
    up = subprocess.Popen([*hanet_command(), "lab", "cloud", "up", "--prefix", prefix,
                           "--network-nodes", "1", "--compute-nodes", "1"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    state = RUN_ROOT / prefix / "cloud.json"

    def daemons_started() -> bool:
        try:
            roles = {p["role"] for p in json.loads(state.read_text())["processes"]}
        except (OSError, ValueError, KeyError):
            return False
        return "vrrpd" in roles

    try:
        wait_until(daemons_started, 60, "up to start vrrpd", step=0.05)
    finally:
        up.send_signal(signal.SIGKILL)
        up.wait()
    assert processes_of(prefix)  # left running by the killed up
    result = hanet("lab", "cloud", "down", "--prefix", prefix)
    assert result.returncode == 0, result.stderr
    assert_nothing_left(prefix)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_down_without_a_readable_cloud_json(prefix: str, damage: str) -> None:
    up = hanet("lab", "cloud", "up", "--prefix", prefix, "--network-nodes", "1",
               "--compute-nodes", "0")  # fmt: skip
    assert up.returncode == 0, up.stderr
    state = RUN_ROOT / prefix / "cloud.json"
    if damage == "missing":
        state.unlink()
    else:
        state.write_text('{"version": 1, "prefix": ')
    assert processes_of(prefix)
    result = hanet("lab", "cloud", "down", "--prefix", prefix)
    assert result.returncode == 0, result.stderr
    if damage == "corrupt":
        assert "not valid JSON" in result.stderr and "removing by namespace only" in result.stderr
    assert_nothing_left(prefix)


def test_nothing_waits_forever_on_a_cloud_that_is_not_there() -> None:
    started = time.monotonic()
    result = hanet("lab", "crash", "net1", "--prefix", unique_prefix())
    assert result.returncode == 1 and "no such file (is the cloud up?)" in result.stderr
    assert time.monotonic() - started < 30
