"""hanet-agent's settings: every key, its type and its default in one place; unknown keys
are refused, and every error names the file and the key (``agent.yaml: advert_int: ...``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hanet.agent.render import HOST, AgentConfig, Node
from hanet.yaml_file import read_yaml

MODES = ("l3", "compute")
AGENT_TYPES = {"l3": "L3 agent", "compute": "Linux bridge agent"}
IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
PHYSNET = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# A token goes in an HTTP header: aiohttp refuses control characters there (ValueError, on
# every request), and the server's tokens hold no spaces.
TOKEN = re.compile(r"^[\x21-\x7e]+$")


class SettingsError(ValueError):
    """A settings file the agent cannot run with; the message says where and why."""


@dataclass(frozen=True)
class AgentSettings:
    host: str
    mode: str = "l3"
    server_url: str = "http://127.0.0.1:9696"
    token: str | None = None
    token_file: Path | None = None
    run_dir: Path = Path("/var/lib/hanet/agent")
    # Where several nodes share one machine (the lab): router namespaces are then
    # qrouter-<id>@<suffix>. On a node of its own: none, qrouter-<id> as Neutron names them.
    namespace_suffix: str | None = None
    tunnel_address: str | None = None
    tunnel_interface: str | None = None
    # Neutron's linuxbridge agent floods VXLAN to a multicast group without l2population;
    # with vxlan_peers (and no group) it is head-end replication to those addresses.
    vxlan_group: str | None = "239.1.1.1"
    vxlan_peers: list[str] = field(default_factory=list)
    physical_interfaces: dict[str, str] = field(default_factory=dict)
    vrrpd_socket: Path = Path("/run/hanet/vrrpd.sock")
    metadata_socket: Path | None = None
    advert_int: float = 2.0  # Neutron's ha_vrrp_advert_int
    vrrp_version: int = 3
    # Without the server for this long, legacy routers are stopped: the server moves them.
    agent_down_time: float = 75.0  # Neutron's default agent_down_time
    metrics: str | None = None  # HOST:PORT for Prometheus

    @property
    def agent_type(self) -> str:
        return AGENT_TYPES[self.mode]

    def node(self) -> Node:
        return Node(
            self.namespace_suffix or self.host,
            shared_machine=self.namespace_suffix is not None,
            config=AgentConfig(advert_int=self.advert_int, version=self.vrrp_version),
        )

    def auth_token(self) -> str | None:
        """The token to send; a token file that cannot be read, or is empty, is a
        SettingsError: without a token the agent would be refused (401) for ever."""
        if self.token_file is None:
            return self.token
        try:
            token = self.token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8"
            raise _fail(
                "settings", "token_file", f"cannot read {self.token_file}: {reason}"
            ) from None
        if not token:
            raise _fail("settings", "token_file", f"{self.token_file} is empty")
        if not TOKEN.fullmatch(token):
            raise _fail("settings", "token_file",
                        f"{self.token_file} holds spaces or control characters")  # fmt: skip
        return token


def _fail(where: str, key: str, reason: str) -> SettingsError:
    return SettingsError(f"{where}: {key}: {reason}")


def _text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(where, key, f"expected a non-empty string, got {value!r}")
    return value


def _number(where: str, key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, key, f"expected a number, got {value!r}")
    if not low <= value <= high:
        raise _fail(where, key, f"{value} is outside {low}..{high}")
    return float(value)


def _address(where: str, key: str, value: Any) -> str:
    try:
        return str(ipaddress.ip_address(_text(where, key, value)))
    except ValueError as exc:
        raise _fail(where, key, str(exc)) from None


def parse_settings(data: Any, where: str) -> AgentSettings:
    """Settings from loaded YAML; ``where`` names the source in errors."""
    if not isinstance(data, dict):
        raise SettingsError(f"{where}: expected a mapping at the top")
    known = {f.name for f in fields(AgentSettings)}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise _fail(where, unknown[0], f"unknown key (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if value is None and key != "host":
            if key == "vxlan_group":  # explicitly none: head-end replication only
                values[key] = None
            continue
        if key in ("host", "namespace_suffix"):
            if not isinstance(value, str) or not HOST.fullmatch(value):
                raise _fail(where, key, f"{value!r} is not 1-64 of [A-Za-z0-9_.-]")
            values[key] = value
        elif key == "mode":
            if value not in MODES:
                raise _fail(where, key, f"{value!r} is not one of {', '.join(MODES)}")
            values[key] = value
        elif key == "server_url":
            text = _text(where, key, value)
            if not re.match(r"^https?://[^/\s]+/?$", text):
                raise _fail(where, key, f"{text!r} is not http(s)://HOST[:PORT]")
            values[key] = text.rstrip("/")
        elif key == "token":  # never in a message: error output ends up in logs
            if not isinstance(value, str) or not value:
                raise _fail(where, key, "expected a non-empty string (not shown)")
            if not TOKEN.fullmatch(value):
                raise _fail(where, key, "holds spaces or control characters (not shown)")
            values[key] = value
        elif key in ("token_file", "run_dir", "vrrpd_socket", "metadata_socket"):
            path = Path(_text(where, key, value))
            if not path.is_absolute():
                raise _fail(where, key, f"{value!r} is not an absolute path")
            values[key] = path
        elif key == "tunnel_address":
            values[key] = _address(where, key, value)
        elif key == "vxlan_group":
            values[key] = _address(where, key, value)
            if not ipaddress.ip_address(values[key]).is_multicast:
                raise _fail(where, key, f"{value} is not a multicast address")
        elif key == "vxlan_peers":
            if not isinstance(value, list):
                raise _fail(where, key, "expected a list of addresses")
            values[key] = [_address(where, f"{key}[{i}]", v) for i, v in enumerate(value)]
        elif key == "tunnel_interface":
            if not isinstance(value, str) or not IFNAME.fullmatch(value):
                raise _fail(where, key, f"{value!r} is not an interface name")
            values[key] = value
        elif key == "physical_interfaces":
            if not isinstance(value, dict):
                raise _fail(where, key, "expected a mapping of physical network: interface")
            for physnet, ifname in value.items():
                if not isinstance(physnet, str) or not PHYSNET.fullmatch(physnet):
                    raise _fail(where, f"{key}.{physnet}", "not a physical network name")
                if not isinstance(ifname, str) or not IFNAME.fullmatch(ifname):
                    raise _fail(where, f"{key}.{physnet}", f"{ifname!r} is not an interface name")
            values[key] = dict(value)
        elif key == "advert_int":
            values[key] = _number(where, key, value, 0.01, 40.95)
        elif key == "vrrp_version":
            # Not 3.0 or True (== 1): vrrpd's schema takes an integer only.
            if type(value) is not int or value not in (2, 3):
                raise _fail(where, key, f"{value!r} is not 2 or 3")
            values[key] = value
        elif key == "agent_down_time":
            values[key] = _number(where, key, value, 1, 86400)
        elif key == "metrics":
            text = _text(where, key, value)
            host, _, port = text.rpartition(":")
            # isascii: "²".isdigit() is true, but int("²") fails.
            if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
                raise _fail(where, key, f"{text!r} is not HOST:PORT")
            values[key] = text
    if "host" not in values:
        raise _fail(where, "host", "missing: the name this node registers with")
    if values.get("vxlan_peers"):
        if values.get("vxlan_group") is not None:
            raise _fail(where, "vxlan_peers", "flood to vxlan_group or to vxlan_peers, not both")
        values["vxlan_group"] = None
    settings = AgentSettings(**values)
    _check_whole(settings, where)
    return settings


def _check_whole(settings: AgentSettings, where: str) -> None:
    if settings.token is not None and settings.token_file is not None:
        raise _fail(where, "token_file", "give token or token_file, not both")
    for key in ("tunnel_address", "tunnel_interface"):
        if getattr(settings, key) is None:
            raise _fail(where, key, "a node needs tunnel_address and tunnel_interface")
    # VXLAN's local address and its group or remote addresses are of one family: the kernel
    # would refuse each network's device otherwise, long after the agent started.
    assert settings.tunnel_address is not None
    family = ipaddress.ip_address(settings.tunnel_address).version
    flood = [("vxlan_group", settings.vxlan_group)] if settings.vxlan_group else []
    flood += [(f"vxlan_peers[{i}]", peer) for i, peer in enumerate(settings.vxlan_peers)]
    for key, address in flood:
        if ipaddress.ip_address(address).version != family:
            raise _fail(where, key, f"{address} is not of tunnel_address "
                        f"{settings.tunnel_address}'s family")  # fmt: skip
    if settings.vrrp_version == 2 and settings.advert_int != int(settings.advert_int):
        raise _fail(where, "advert_int", "VRRP version 2 takes whole seconds")


def load_settings(path: Path) -> AgentSettings:
    return parse_settings(read_yaml(path, SettingsError), str(path))
