"""Lab files and instance files: bad input is refused with where and why, never a crash."""

from __future__ import annotations

import contextlib
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hanet.lab.topology import LabFileError, lan_topology, load_topology, parse_topology
from hanet.runtime.config import ConfigError, load_instances, parse_instances

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_example_files_are_valid() -> None:
    topology = load_topology(EXAMPLES / "lab.yaml")
    assert set(topology.hosts) == {"r1", "r2", "c"}
    names = [c.name for c in load_instances(EXAMPLES / "vrrp.yaml")]
    assert names == ["web", "web6"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"segments": ["lan"], "hosts": {"r1": {"interfaces": {"eth0": {"segment": "wan"}}}}},
         "lab.yaml: hosts.r1.interfaces.eth0.segment: unknown segment 'wan'"),
        ({"segments": ["lan"], "hosts": {"r1": {"ifaces": {}}}},
         "lab.yaml: hosts.r1: unknown key 'ifaces'"),
        ({"segments": ["lan"], "hosts": {"r1": {"interfaces": {"eth0": {
            "segment": "lan", "addresses": ["10.0.0.300/24"]}}}}},
         "lab.yaml: hosts.r1.interfaces.eth0.addresses[0]:"),
        ({"segments": ["lan"], "hosts": {}}, "lab.yaml: hosts: at least one host"),
        ({"segments": ["lan"], "hosts": {"R1!": {}}}, "lab.yaml: hosts.R1!:"),
        ({"prefix": "Bad-Prefix", "segments": [], "hosts": {"a": {}}}, "lab.yaml: prefix:"),
        (["not", "a", "mapping"], "lab.yaml: expected a mapping"),
    ],
)  # fmt: skip
def test_lab_errors_name_file_and_entry(data: object, message: str) -> None:
    with pytest.raises(LabFileError) as err:
        parse_topology(data, "lab.yaml")
    assert str(err.value).startswith(message)


def test_lab_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("segments: [lan\nhosts: {}\n")
    with pytest.raises(LabFileError, match=r"bad.yaml:\d+:\d+: not valid YAML"):
        load_topology(path)


def test_lan_topology_addresses() -> None:
    topology = lan_topology(routers=2, clients=1)
    assert str(topology.hosts["r2"].interfaces["eth0"].addresses[0]) == "10.0.0.2/24"
    assert str(topology.hosts["c"].interfaces["eth0"].addresses[0]) == "10.0.0.101/24"


def good_instance(**extra: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "interface": "eth0", "vrid": 1, "priority": 100, "addresses": ["10.0.0.1/24"],
    }  # fmt: skip
    entry.update(extra)
    return entry


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (good_instance(prio=1), "f.yaml: instances.a: unknown key 'prio'"),
        ({"interface": "eth0"}, "f.yaml: instances.a: missing key 'addresses'"),
        (good_instance(vrid="one"), "f.yaml: instances.a.vrid: expected int, got str"),
        (good_instance(vrid=0), "f.yaml: instance a: vrid 0 is outside 1..255"),
        (good_instance(priority=256), "f.yaml: instance a: priority 256"),
        (good_instance(preempt=1), "f.yaml: instances.a.preempt: expected bool"),
        (good_instance(addresses=["10.0.0.1/24", "fd00::1/64"]), "f.yaml: instance a: addresses"),
        (good_instance(version=2, advert_int=0.5), "f.yaml: instance a: a v2 advert interval"),
        (good_instance(auth_pass="x"), "f.yaml: instance a: auth_pass: authentication exists"),
        (good_instance(version=2, advert_int=1, auth_pass="123456789"),
         "f.yaml: instance a: auth_pass: 1 to 8 bytes"),
        (good_instance(addresses=["nonsense"]), "f.yaml: instances.a.addresses:"),
        (good_instance(routes=[{"via": "10.0.0.9"}]), "f.yaml: instances.a.routes[0]: missing"),
        (good_instance(routes=[{"to": "10.9.0.0/16", "gw": "x"}]),
         "f.yaml: instances.a.routes[0]: unknown key 'gw'"),
        (good_instance(routes=[{"to": "10.9.0.0/16", "metric": -1}]),
         "f.yaml: instances.a.routes[0].metric: expected an integer"),
    ],
)  # fmt: skip
def test_instance_errors_name_file_instance_and_key(entry: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_instances({"instances": {"a": entry}}, "f.yaml")
    assert str(err.value).startswith(message)


def test_routes_are_parsed() -> None:
    routes = [{"to": "default", "via": "10.0.0.254", "metric": 5, "table": 100}]
    (config,) = parse_instances({"instances": {"a": good_instance(routes=routes)}}, "f.yaml")
    (route,) = config.routes
    assert str(route.to) == "0.0.0.0/0" and str(route.via) == "10.0.0.254"
    assert (route.metric, route.table) == (5, 100)


def test_duplicate_vrid_on_one_interface_is_refused() -> None:
    with pytest.raises(ConfigError, match="vrid 1 on eth0 is already used by a"):
        parse_instances({"instances": {"a": good_instance(), "b": good_instance()}}, "f.yaml")


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-300, 300) | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip


@given(yaml_values)
@settings(max_examples=300)
def test_any_yaml_value_gives_a_lab_error_or_a_topology(data: object) -> None:
    try:
        parse_topology(data, "fuzz.yaml")
    except LabFileError as exc:
        assert str(exc).startswith("fuzz.yaml")


@given(st.dictionaries(st.sampled_from([*good_instance(), "version", "advert_int", "preempt",
                                        "auth_pass", "garp_repeat", "netns", "x"]),
                       yaml_values, max_size=8))  # fmt: skip
@settings(max_examples=300)
def test_any_instance_entry_gives_a_config_error_or_a_config(entry: dict[str, object]) -> None:
    try:
        parse_instances({"instances": {"a": entry}}, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml")


@given(st.text(max_size=200))
@settings(max_examples=200)
def test_any_text_file_gives_a_lab_error_or_a_topology(tmp_path_factory, text: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("fuzz") / "lab.yaml"
    path.write_text(text)
    with contextlib.suppress(LabFileError):
        load_topology(path)


def test_arpwatch_reports_only_gratuitous_arps() -> None:
    from hanet.lab.arpwatch import gratuitous
    from hanet.vrrp.announce import gratuitous_arp

    mac = bytes.fromhex("02aabbccddee")
    frame = gratuitous_arp(mac, ipaddress.IPv4Address("10.0.0.100"))
    assert gratuitous(frame) == {"ip": "10.0.0.100", "mac": "02:aa:bb:cc:dd:ee", "op": "request"}
    asking = frame[:38] + bytes([10, 0, 0, 7])  # target differs from sender: a query
    assert gratuitous(asking) is None
    assert gratuitous(frame[:30]) is None
    assert gratuitous(b"\x00" * 60) is None
