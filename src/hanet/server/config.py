"""hanet-server's settings: defaults and types in one place; unknown keys are refused.

A YAML file (``--config``) may set any of them; command-line options win over the file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from hanet.server.database import DEFAULT_URL
from hanet.server.segments import DEFAULT_VNI_RANGES, parse_vni_ranges


class ServerConfigError(ValueError):
    pass


DEFAULT_BIND = "127.0.0.1:9696"


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``) as (host, port); ValueError when it is not one."""
    host, _, port = text.rpartition(":")
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} is out of range")
    return host.strip("[]") or "127.0.0.1", number


@dataclass(frozen=True)
class Token:
    project: str
    role: str = "member"  # or "admin"


@dataclass(frozen=True)
class ServerConfig:
    # HOST:PORT addresses to serve on (one string or a list). None given: 127.0.0.1:9696,
    # unless the server listens on inherited sockets (hanet.server.listeners).
    bind: list[str] = field(default_factory=list)
    db: str = DEFAULT_URL
    auth: str = "noauth"  # or "token"
    noauth_project: str = "admin"
    tokens: dict[str, Token] = field(default_factory=dict)
    # host: token (or "sha256:<hex digest>"): each node's agents' own credential, good only
    # for the agents' protocol calls about that host's agents (hanet.server.api.auth).
    agent_tokens: dict[str, str] = field(default_factory=dict)
    l3_ha: bool = False
    max_l3_agents_per_router: int = 3
    dhcp_agents_per_network: int = 2
    report_interval: float = 1.0
    agent_down_time: float = 3.0
    # An L3 agent silent this long is gone: its HA routers' places (kept, beside a
    # replacement, since agent_down_time) are released (hanet.server.failover).
    agent_gone_time: float = 60.0
    # Seconds a connection may sit idle, take to send a request's headers, or take to send
    # its body: a client that stalls is cut off rather than holding a connection forever.
    client_timeout: float = 30.0
    # VNIs of tenant and HA networks, as ML2's [ml2_type_vxlan] vni_ranges (hanet.server.segments).
    vni_ranges: list[str] = field(default_factory=lambda: list(DEFAULT_VNI_RANGES))
    # The underlay's MTU, as Neutron's global_physnet_mtu: VXLAN networks get 50 less.
    global_physnet_mtu: int = 1500

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The bind addresses as (host, port)."""
        return [parse_bind(b) for b in self.bind]

    @property
    def host_port(self) -> tuple[str, int]:
        """The first address to serve on (the default if none is set)."""
        return parse_bind(self.bind[0] if self.bind else DEFAULT_BIND)


def load_config(path: Path | None, **overrides: Any) -> ServerConfig:
    """The file's settings (if any), then ``overrides`` that are not None; checked whole."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ServerConfigError(f"{path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ServerConfigError(f"{path}: expected a mapping of settings")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return check(values, str(path or "options"))


def check(values: dict[str, Any], where: str) -> ServerConfig:
    known = {f.name: f for f in fields(ServerConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ServerConfigError(f"{where}: unknown setting '{unknown[0]}'")
    if "tokens" in values:
        values["tokens"] = _tokens(values["tokens"], where)
    if "agent_tokens" in values:
        values["agent_tokens"] = _agent_tokens(values["agent_tokens"], where)
        admin = {digest_of(token) for token in values.get("tokens", {})}
        for host, token in values["agent_tokens"].items():
            if digest_of(token) in admin:
                raise ServerConfigError(f"{where}: agent_tokens.{host}: the same as one of tokens")
    if isinstance(values.get("bind"), str):
        values["bind"] = [values["bind"]]
    if "bind" in values and (
        not isinstance(values["bind"], list | tuple)
        or not all(isinstance(b, str) for b in values["bind"])
    ):
        raise ServerConfigError(f"{where}: bind: expected HOST:PORT or a list of them")
    if "bind" in values:
        values["bind"] = list(values["bind"])
    if "vni_ranges" in values:
        try:
            ranges = parse_vni_ranges(values["vni_ranges"])
        except ValueError as exc:
            raise ServerConfigError(f"{where}: vni_ranges: {exc}") from None
        values["vni_ranges"] = [f"{low}:{high}" for low, high in ranges]
    defaults = ServerConfig()
    for name, value in values.items():
        expected = type(getattr(defaults, name))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = values[name] = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ServerConfigError(f"{where}: {name}: expected {expected.__name__}")
    config = ServerConfig(**values)
    if config.auth not in ("noauth", "token"):
        raise ServerConfigError(f"{where}: auth: 'noauth' or 'token'")
    for address in config.bind:
        try:
            parse_bind(address)
        except ValueError:
            raise ServerConfigError(f"{where}: bind: {address!r}: expected HOST:PORT") from None
    if config.max_l3_agents_per_router < 1 or config.dhcp_agents_per_network < 1:
        raise ServerConfigError(f"{where}: agents per router / network must be at least 1")
    if not 1280 <= config.global_physnet_mtu <= 9216:
        raise ServerConfigError(f"{where}: global_physnet_mtu: expected 1280 to 9216")
    if config.client_timeout <= 0:
        raise ServerConfigError(f"{where}: client_timeout must be positive")
    if config.agent_down_time <= config.report_interval:
        raise ServerConfigError(f"{where}: agent_down_time must exceed report_interval")
    if config.agent_gone_time <= config.agent_down_time:
        raise ServerConfigError(
            f"{where}: agent_gone_time ({config.agent_gone_time:g}) must exceed "
            f"agent_down_time ({config.agent_down_time:g})"
        )
    return config


MIN_AGENT_TOKEN = 16  # characters: a token is a password nobody types; 16 hex is 64 bits
DIGEST = "sha256:"


def digest_of(token: str) -> str:
    """What the server keeps of a token: ``sha256:<hex>``, whichever form the file gave."""
    if token.startswith(DIGEST):
        return token.lower()
    return DIGEST + hashlib.sha256(token.encode()).hexdigest()


def _agent_tokens(raw: Any, where: str) -> dict[str, str]:
    """host: token. The messages name the host, never the token: they reach logs."""
    if not isinstance(raw, dict):
        raise ServerConfigError(f"{where}: agent_tokens: expected host: token")
    seen: dict[str, str] = {}
    for host, token in raw.items():
        if not isinstance(host, str) or not 0 < len(host) <= 255:
            raise ServerConfigError(f"{where}: agent_tokens: a host must be a non-empty string")
        name = f"{where}: agent_tokens.{host}"
        if not isinstance(token, str) or not token.isascii() or not token.isprintable():
            raise ServerConfigError(f"{name}: expected a token of printable ASCII")
        if token.startswith(DIGEST):
            hexdigest = token[len(DIGEST) :]
            if len(hexdigest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hexdigest):
                raise ServerConfigError(f"{name}: expected sha256: and 64 hex digits")
        elif len(token) < MIN_AGENT_TOKEN or " " in token:
            raise ServerConfigError(
                f"{name}: expected at least {MIN_AGENT_TOKEN} characters without spaces "
                "(e.g. from 'openssl rand -hex 16')"
            )
        digest = digest_of(token)
        if digest in seen:
            raise ServerConfigError(f"{name}: the same token as {seen[digest]}'s")
        seen[digest] = host
    return dict(raw)


def _tokens(raw: Any, where: str) -> dict[str, Token]:
    if not isinstance(raw, dict):
        raise ServerConfigError(f"{where}: tokens: expected token: {{project, role}}")
    tokens = {}
    for number, (token, entry) in enumerate(raw.items(), 1):
        # Named by position, never by the token itself: this message reaches logs.
        name = f"{where}: tokens (entry {number})"
        if (
            not isinstance(entry, dict)
            or set(entry) - {"project", "role"}
            or not isinstance(entry.get("project"), str)
        ):
            raise ServerConfigError(f"{name}: expected {{project, role}}")
        role = entry.get("role", "member")
        if role not in ("member", "admin"):
            raise ServerConfigError(f"{name}: role: 'member' or 'admin'")
        tokens[str(token)] = Token(entry["project"], role)
    return tokens
