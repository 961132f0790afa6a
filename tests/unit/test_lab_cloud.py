"""The lab cloud's pure parts: layout, the files it renders, names it accepts, its state file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from hanet.agent.settings import parse_settings
from hanet.cli.main import main
from hanet.lab import cloud_config as config
from hanet.lab.cloud import server_knows
from hanet.lab.cloud_faults import CrashReport
from hanet.lab.cloud_state import (
    CloudError,
    CloudState,
    NodeRecord,
    ProcessRecord,
    StateError,
    VmRecord,
    check_counts,
    check_prefix,
    check_vm_name,
    load_state,
    parse_state,
    save_state,
    start_time,
)
from hanet.lab.cloud_vms import tap_name, vm_namespace
from hanet.server.config import check as check_server_settings

PATHS = config.CloudPaths.of("demo", Path("/run/hanet-lab"))


def test_topology_places_every_host_on_its_segments() -> None:
    topology = config.cloud_topology("demo", 3, 2)
    assert list(topology.hosts) == ["ctl", "net1", "net2", "net3", "cmp1", "cmp2", "upstream"]
    addresses = {
        host: {i: [str(a) for a in link.addresses] for i, link in spec.interfaces.items()}
        for host, spec in topology.hosts.items()
    }
    assert addresses["ctl"] == {"mgmt": ["10.0.0.10/24"]}
    assert addresses["net2"] == {"mgmt": ["10.0.0.12/24"], "tun": ["172.16.0.12/24"], "ext": []}
    assert addresses["cmp2"] == {"mgmt": ["10.0.0.22/24"], "tun": ["172.16.0.22/24"]}
    assert addresses["upstream"] == {"eth0": ["203.0.113.1/24"]}
    assert topology.hosts["upstream"].interfaces["eth0"].segment == "ext"


def test_every_file_lives_under_the_run_directory() -> None:
    assert PATHS.state == Path("/run/hanet-lab/demo/cloud.json")
    assert PATHS.server_db == Path("/run/hanet-lab/demo/server/hanet.db")
    assert PATHS.log("ctl", "server") == Path("/run/hanet-lab/demo/server/server.log")
    assert PATHS.metadata_socket == Path("/run/hanet-lab/demo/metadata/metadata.sock")
    assert PATHS.vrrpd_socket("net1") == Path("/run/hanet-lab/demo/net1/vrrpd.sock")
    assert PATHS.agent_run("cmp1") == Path("/run/hanet-lab/demo/cmp1/agent")
    assert config.VRRPD_CONF == "global_defs {\n  vrrp_priority -10\n}\n"


@pytest.mark.parametrize("gone_time", [False, True])
def test_server_settings_are_what_the_server_accepts(gone_time: bool) -> None:
    if gone_time and not server_knows("agent_gone_time"):
        pytest.skip("this server has no agent_gone_time: the lab does not send it")
    settings = config.server_settings(PATHS, gone_time)
    parsed = check_server_settings(dict(settings), "server.yaml")
    assert parsed.auth == "noauth" and parsed.l3_ha is True
    assert parsed.max_l3_agents_per_router == 3
    assert (parsed.report_interval, parsed.agent_down_time) == (1.0, 5.0)
    assert parsed.db == "sqlite:////run/hanet-lab/demo/server/hanet.db"
    assert (parsed.agent_gone_time == 60.0) if gone_time else "agent_gone_time" not in settings


def test_the_server_serves_the_inherited_socket_and_the_controllers_address() -> None:
    assert config.server_arguments(PATHS, 7) == [
        "--listen-fd", "7", "--bind", "10.0.0.10:9696",
        "--config", "/run/hanet-lab/demo/server/server.yaml", "--log-level", "info",
    ]  # fmt: skip


def test_agent_settings_are_what_the_agent_accepts() -> None:
    l3 = parse_settings(config.agent_settings(PATHS, "demo", "net2"), "agent.yaml")
    assert (l3.host, l3.mode, l3.agent_type) == ("net2", "l3", "L3 agent")
    assert l3.server_url == "http://10.0.0.10:9696" and l3.token is None
    assert l3.namespace_suffix == "demo-net2"
    assert (l3.tunnel_address, l3.tunnel_interface) == ("172.16.0.12", "tun")
    assert l3.physical_interfaces == {"public": "ext"}
    assert l3.vrrpd_socket == Path("/run/hanet-lab/demo/net2/vrrpd.sock")
    assert l3.metadata_socket == Path("/run/hanet-lab/demo/metadata/metadata.sock")
    assert l3.run_dir == Path("/run/hanet-lab/demo/net2/agent")
    compute = parse_settings(config.agent_settings(PATHS, "demo", "cmp1"), "agent.yaml")
    assert (compute.mode, compute.tunnel_address) == ("compute", "172.16.0.21")
    assert compute.physical_interfaces == {} and compute.metadata_socket is None
    text = config.dump_yaml(config.agent_settings(PATHS, "demo", "cmp1"))
    assert text.startswith("host: cmp1\nmode: compute\n")


def test_the_public_network_is_flat_on_physnet_public_without_dhcp() -> None:
    assert config.PUBLIC_NETWORK["provider:network_type"] == "flat"
    assert config.PUBLIC_NETWORK["provider:physical_network"] == "public"
    assert config.PUBLIC_NETWORK["router:external"] is True
    subnet = config.public_subnet("n1")
    assert subnet["cidr"] == "203.0.113.0/24" and subnet["gateway_ip"] == "203.0.113.1"
    assert subnet["allocation_pools"] == [{"start": "203.0.113.10", "end": "203.0.113.250"}]
    assert subnet["enable_dhcp"] is False


@pytest.mark.parametrize("name", ["vm1", "web-2", "a", "abcdefghijkl"])
def test_good_vm_names(name: str) -> None:
    assert check_vm_name(name) == name
    assert vm_namespace("demo", name) == f"demo-vm-{name}"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("VM1", "must match"),
        ("1vm", "must match"),
        ("vm_1", "must match"),
        ("abcdefghijklm", "must match"),
        ("", "must match"),
        ("net1", "taken by the cloud's hosts"),
        ("cmp7", "taken by the cloud's hosts"),
        ("ctl", "taken by the cloud's hosts"),
        ("upstream", "taken by the cloud's hosts"),
    ],
)
def test_bad_vm_names_say_why(name: str, message: str) -> None:
    with pytest.raises(CloudError, match=message):
        check_vm_name(name)


def test_prefix_and_counts_are_checked() -> None:
    with pytest.raises(CloudError, match="prefix 'a-b': must match"):
        check_prefix("a-b")
    with pytest.raises(CloudError, match="network nodes: 0: expected 1 to 9"):
        check_counts(0, 1)
    with pytest.raises(CloudError, match="compute nodes: 100: expected 0 to 99"):
        check_counts(1, 100)


def test_tap_is_named_as_nova_names_it() -> None:
    assert tap_name("dd3136bf-8dcd-4ce0-84ab-0f5c619e67f0") == "tapdd3136bf-8d"


def _state() -> CloudState:
    state = CloudState("demo", 2, 1, endpoint="http://127.0.0.1:4242")
    state.nodes["net1"] = NodeRecord("net1", "network", "demo-net1", {"mgmt": "10.0.0.11/24"})
    state.processes.append(ProcessRecord("agent", "net1", 1234, 99, ("hanet-agent", "run")))
    state.vms["vm1"] = VmRecord("vm1", "cmp1", "demo-vm-vm1", "n", "p", "d",
                                "fa:16:3e:00:00:01", "192.168.1.5/24", "tapp")  # fmt: skip
    state.crashed.append("net2")
    return state


def test_state_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cloud.json"
    save_state(path, _state())
    assert load_state(path) == _state()
    assert [p.name for p in tmp_path.iterdir()] == ["cloud.json"]  # no temporary left


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("prefix"), "cloud.json: missing key 'prefix'"),
        (lambda d: d.update(version=2), "cloud.json: version: 2 is not 1"),
        (lambda d: d.update(prefix="A-b"), "cloud.json: prefix: 'A-b' must match"),
        (lambda d: d.update(network_nodes="2"), "cloud.json.network_nodes: expected an integer"),
        (lambda d: d.update(network_nodes=0), "cloud.json: network nodes: 0: expected 1 to 9"),
        (lambda d: d["processes"][0].update(pid="x"), r"processes\[0\].pid: expected an integer"),
        (lambda d: d["processes"][0].update(pid=1), r"processes\[0\].pid: 1 is not a process"),
        (lambda d: d["processes"][0].update(argv=[1]), r"processes\[0\].argv: expected a list"),
        (lambda d: d["vms"]["vm1"].pop("tap"), "cloud.json: vms.vm1: missing key 'tap'"),
        (lambda d: d["nodes"].update(net1=[]), "cloud.json: nodes.net1: expected an object"),
        (lambda d: d.update(crashed=[1]), "cloud.json: crashed: expected a list of node names"),
        (lambda d: d.update(with_agents="yes"), "cloud.json.with_agents: expected true or false"),
    ],
)
def test_state_errors_say_where(change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = _state().to_json()
    change(data)
    with pytest.raises(StateError, match=message):
        parse_state(data, "cloud.json")


def test_unreadable_state_says_where(tmp_path: Path) -> None:
    path = tmp_path / "cloud.json"
    with pytest.raises(StateError, match=r"cloud.json: no such file \(is the cloud up\?\)"):
        load_state(path)
    path.write_text('{\n  "prefix": ,\n}')
    with pytest.raises(StateError, match=r"cloud.json:2:13: not valid JSON"):
        load_state(path)


def test_a_recorded_process_is_known_by_its_start_time() -> None:
    me = start_time(os.getpid())
    assert me is not None
    assert ProcessRecord("x", "n", os.getpid(), me, ()).alive()
    # The same PID with another start time is someone else (a PID used again).
    assert not ProcessRecord("x", "n", os.getpid(), me + 1, ()).alive()
    assert start_time(2**22 + 1) is None


def test_crash_report_says_what_it_did() -> None:
    report = CrashReport("net1", 0.0, ("mgmt", "tun", "ext"), {12: "hanet-agent", 11: "hanet"},
                         ("qrouter-1@demo-net1",))  # fmt: skip
    assert report.lines() == [
        "cut net1's links: mgmt, tun, ext (switch side down)",
        "killed -9 2 processes: 11 hanet, 12 hanet-agent",
        "router namespaces: qrouter-1@demo-net1",
    ]


def test_cli_commands_and_options_of_the_contract() -> None:
    runner = CliRunner()
    up = runner.invoke(main, ["lab", "cloud", "up", "--help"])
    for option in ("--prefix", "--network-nodes", "--compute-nodes", "--port"):
        assert option in up.output
    create = runner.invoke(main, ["lab", "vm", "create", "--help"])
    for option in ("--network", "--host", "--prefix"):
        assert option in create.output
    for command in (["exec"], ["crash"], ["cloud", "down"]):
        assert "--prefix" in runner.invoke(main, ["lab", *command, "--help"]).output


def test_cli_names_a_cloud_that_is_not_there(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["lab", "exec", "net1", "--prefix", "nosuch1", "--", "true"])
    assert result.exit_code == 1
    assert "cloud nosuch1: /run/hanet-lab/nosuch1/cloud.json: no such file" in result.output


def test_state_json_is_plain(tmp_path: Path) -> None:
    path = tmp_path / "cloud.json"
    save_state(path, _state())
    data = json.loads(path.read_text())
    assert data["processes"][0] == {"role": "agent", "node": "net1", "pid": 1234,
                                    "start_time": 99, "argv": ["hanet-agent", "run"]}  # fmt: skip
    assert data["endpoint"] == "http://127.0.0.1:4242"
