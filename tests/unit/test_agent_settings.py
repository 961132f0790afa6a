"""hanet-agent's settings file: a full file loads with the right types, and every key or
value the agent cannot run with is refused with ``FILE: key: reason`` (or FILE:LINE:COLUMN
for a file that is not YAML), never with another exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hanet.agent.settings import AgentSettings, SettingsError, load_settings, parse_settings

FULL = """\
host: net1
mode: l3
server_url: https://hanet.example:9696/
token_file: /etc/hanet/agent.token
run_dir: /var/lib/hanet/agent
namespace_suffix: net1
tunnel_address: 192.0.2.11
tunnel_interface: eth1
vxlan_group: 239.1.1.2
physical_interfaces: {public: eth2, physnet-2: bond0.42}
vrrpd_socket: /run/hanet/vrrpd.sock
metadata_socket: /run/hanet/metadata.sock
advert_int: 0.1
vrrp_version: 3
agent_down_time: 60
metrics: 127.0.0.1:9105
"""
MINIMAL = {"host": "net1", "tunnel_address": "192.0.2.11", "tunnel_interface": "eth1"}


def load(tmp_path: Path, text: str) -> AgentSettings:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return load_settings(path)


def refused(tmp_path: Path, **changes: Any) -> str:
    """The message for MINIMAL with ``changes`` (a value of ... deletes the key)."""
    data = {**MINIMAL, **changes}
    data = {k: v for k, v in data.items() if v is not ...}
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, yaml.safe_dump(data))
    return str(caught.value)


def test_a_full_file_loads_with_the_right_types(tmp_path: Path) -> None:
    s = load(tmp_path, FULL)
    assert s.host == "net1" and s.mode == "l3" and s.agent_type == "L3 agent"
    assert s.server_url == "https://hanet.example:9696"  # the trailing / goes
    assert s.token is None and s.token_file == Path("/etc/hanet/agent.token")
    assert s.run_dir == Path("/var/lib/hanet/agent")
    assert s.vrrpd_socket == Path("/run/hanet/vrrpd.sock")
    assert s.metadata_socket == Path("/run/hanet/metadata.sock")
    assert s.namespace_suffix == "net1"
    assert (s.tunnel_address, s.tunnel_interface) == ("192.0.2.11", "eth1")
    assert s.vxlan_group == "239.1.1.2" and s.vxlan_peers == []
    assert s.physical_interfaces == {"public": "eth2", "physnet-2": "bond0.42"}
    assert s.advert_int == 0.1 and isinstance(s.advert_int, float)
    assert s.vrrp_version == 3 and type(s.vrrp_version) is int
    assert s.agent_down_time == 60.0 and isinstance(s.agent_down_time, float)
    assert s.metrics == "127.0.0.1:9105"
    node = s.node()
    assert node.host == "net1" and node.shared_machine
    assert (node.config.advert_int, node.config.version) == (0.1, 3)


def test_defaults_and_head_end_replication(tmp_path: Path) -> None:
    s = load(tmp_path, yaml.safe_dump(MINIMAL))
    assert s.mode == "l3" and s.server_url == "http://127.0.0.1:9696"
    assert s.vxlan_group == "239.1.1.1" and s.advert_int == 2.0 and s.vrrp_version == 3
    assert s.namespace_suffix is None and not s.node().shared_machine
    peers = load(tmp_path, yaml.safe_dump({**MINIMAL, "vxlan_peers": ["192.0.2.12"]}))
    assert peers.vxlan_group is None and peers.vxlan_peers == ["192.0.2.12"]
    compute = load(tmp_path, yaml.safe_dump({**MINIMAL, "mode": "compute"}))
    assert compute.agent_type == "Linux bridge agent"


def test_a_token_or_a_token_file(tmp_path: Path) -> None:
    assert load(tmp_path, yaml.safe_dump({**MINIMAL, "token": "t0k"})).auth_token() == "t0k"
    token = tmp_path / "token"
    token.write_text("s3cret-token-value\n")
    s = load(tmp_path, yaml.safe_dump({**MINIMAL, "token_file": str(token)}))
    assert s.auth_token() == "s3cret-token-value"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"hots": "net1"}, "hots: unknown key (known: "),
        ({"mode": "dhcp"}, "mode: 'dhcp' is not one of l3, compute"),
        ({"run_dir": "var/lib/hanet"}, "run_dir: 'var/lib/hanet' is not an absolute path"),
        ({"vrrpd_socket": "vrrpd.sock"}, "vrrpd_socket: 'vrrpd.sock' is not an absolute path"),
        ({"tunnel_address": "192.0.2.300"}, "tunnel_address: '192.0.2.300' does not appear"),
        ({"vxlan_peers": ["192.0.2.12", "peer"]}, "vxlan_peers[1]: 'peer' does not appear"),
        ({"vxlan_group": "192.0.2.1"}, "vxlan_group: 192.0.2.1 is not a multicast address"),
        (
            {"vxlan_group": "239.1.1.1", "vxlan_peers": ["192.0.2.12"]},
            "vxlan_peers: flood to vxlan_group or to vxlan_peers, not both",
        ),
        ({"host": ...}, "host: missing: the name this node registers with"),
        ({"host": None}, "host: None is not 1-64 of [A-Za-z0-9_.-]"),
        ({"host": "net 1"}, "host: 'net 1' is not 1-64 of [A-Za-z0-9_.-]"),
        ({"tunnel_address": ...}, "tunnel_address: a node needs"),
        ({"vrrp_version": 2, "advert_int": 1.5}, "advert_int: VRRP version 2 takes whole"),
        ({"vrrp_version": 4}, "vrrp_version: 4 is not 2 or 3"),
        ({"advert_int": 0}, "advert_int: 0 is outside 0.01..40.95"),
        ({"advert_int": "fast"}, "advert_int: expected a number, got 'fast'"),
        ({"agent_down_time": True}, "agent_down_time: expected a number, got True"),
        ({"metrics": "9105"}, "metrics: '9105' is not HOST:PORT"),
        ({"metrics": "localhost:http"}, "metrics: 'localhost:http' is not HOST:PORT"),
        ({"metrics": "localhost:65536"}, "metrics: 'localhost:65536' is not HOST:PORT"),
        ({"token": "t", "token_file": "/etc/t"}, "token_file: give token or token_file, not"),
        ({"server_url": "hanet:9696"}, "server_url: 'hanet:9696' is not http(s)://HOST[:PORT]"),
        ({"tunnel_interface": "a-very-long-name0"}, "tunnel_interface: 'a-very-long-name0' is"),
        ({"physical_interfaces": {"public": "eth 2"}}, "physical_interfaces.public: 'eth 2' is"),
        ({"physical_interfaces": ["eth2"]}, "physical_interfaces: expected a mapping"),
    ],
)
def test_each_bad_key_or_value_is_refused_naming_it(
    tmp_path: Path, changes: dict[str, Any], expected: str
) -> None:
    message = refused(tmp_path, **changes)
    assert message.startswith(f"{tmp_path / 'agent.yaml'}: {expected}"), message


def test_a_missing_tunnel_interface_is_named(tmp_path: Path) -> None:
    message = refused(tmp_path, tunnel_interface=...)
    assert message.startswith(f"{tmp_path / 'agent.yaml'}: tunnel_interface: "), message


def test_a_vrrp_version_that_is_not_a_whole_number_is_refused(tmp_path: Path) -> None:
    """3.0 would pass as "3" here and then every HA router would be refused by vrrpd's
    schema (``version: expected an integer``): the file is the place to say so."""
    assert "vrrp_version: 3.0 is not 2 or 3" in refused(tmp_path, vrrp_version=3.0)
    assert "vrrp_version: True is not 2 or 3" in refused(tmp_path, vrrp_version=True)


def test_a_port_of_other_digits_is_refused_not_a_crash(tmp_path: Path) -> None:
    # "²".isdigit() is true, int("²") is not a number: a ValueError, not a SettingsError.
    assert "metrics: '127.0.0.1:²' is not HOST:PORT" in refused(tmp_path, metrics="127.0.0.1:²")


def test_a_flood_list_of_another_family_than_the_tunnel_is_refused(tmp_path: Path) -> None:
    # VXLAN's local address and its group or remotes must be of one family: the kernel
    # refuses each network's device otherwise, long after the agent started.
    message = refused(tmp_path, vxlan_group="ff05::1")
    assert "vxlan_group: ff05::1 is not of tunnel_address 192.0.2.11's family" in message
    message = refused(tmp_path, vxlan_peers=["2001:db8::2"])
    assert "vxlan_peers[0]: 2001:db8::2 is not of tunnel_address 192.0.2.11's family" in message


def test_invalid_yaml_gives_file_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, "host: net1\nmode: [l3\ntunnel_address: 192.0.2.1\n")
    where = str(caught.value).split(": not valid YAML")[0]
    assert where == f"{tmp_path / 'agent.yaml'}:3:15", str(caught.value)
    with pytest.raises(SettingsError, match=r"agent.yaml: expected a mapping at the top"):
        load(tmp_path, "- host: net1\n")
    with pytest.raises(SettingsError, match=r"agent.yaml: expected a mapping at the top"):
        load(tmp_path, "")


def test_a_file_that_cannot_be_read_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"missing.yaml: cannot read: No such file"):
        load_settings(tmp_path / "missing.yaml")
    binary = tmp_path / "agent.yaml"
    binary.write_bytes(b"host: net\xff1\n")
    with pytest.raises(SettingsError, match=r"agent.yaml: cannot read: not UTF-8"):
        load_settings(binary)


def test_a_token_file_that_cannot_be_used_is_a_settings_error(tmp_path: Path) -> None:
    token = tmp_path / "token"
    s = load(tmp_path, yaml.safe_dump({**MINIMAL, "token_file": str(token)}))
    with pytest.raises(SettingsError, match=r"token_file: cannot read .*No such file"):
        s.auth_token()
    token.write_text("\n")  # an agent that sent no token would be refused for ever (401)
    with pytest.raises(SettingsError, match=r"token_file: .* is empty"):
        s.auth_token()


def test_a_token_that_cannot_be_an_http_header_is_refused(tmp_path: Path) -> None:
    # aiohttp refuses a header with a control character (ValueError) on every request: the
    # agent would die at its first call rather than say so at start.
    assert "token: holds spaces or control characters (not shown)" in refused(
        tmp_path, token="abc\ndef"
    )
    assert "token: expected a non-empty string (not shown)" in refused(tmp_path, token=1234)
    token = tmp_path / "token"
    token.write_text("abc def\n")
    s = load(tmp_path, yaml.safe_dump({**MINIMAL, "token_file": str(token)}))
    with pytest.raises(SettingsError, match=r"token_file: .* holds spaces or control characters"):
        s.auth_token()


KEYS = [
    "host", "mode", "server_url", "token", "token_file", "run_dir", "namespace_suffix",
    "tunnel_address", "tunnel_interface", "vxlan_group", "vxlan_peers",
    "physical_interfaces", "vrrpd_socket", "metadata_socket", "advert_int", "vrrp_version",
    "agent_down_time", "metrics", "unknown",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(["net1", "eth0", "/abs/path", "239.1.1.9", "192.0.2.1", "ff05::1",
                       "::1", "2001:db8::1", "h:9100", "h:²", "l3", "compute", "http://h"])
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(SCALARS, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8),
    keep_minimal=st.booleans(),
)
def test_any_yaml_like_mapping_is_settings_or_a_settings_error(
    base: dict[str, Any], keep_minimal: bool
) -> None:
    data = {**MINIMAL, **base} if keep_minimal else base
    try:
        s = parse_settings(data, "agent.yaml")
    except SettingsError as exc:
        assert str(exc).startswith("agent.yaml: ")
        return
    assert isinstance(s, AgentSettings)
    s.node()  # a file that loads makes a node that renders
