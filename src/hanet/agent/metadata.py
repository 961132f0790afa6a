"""A router's metadata proxy: the haproxy.cfg for one router, as Neutron's L3 agent writes it
(neutron/agent/metadata/driver.py; ../shared/reference/neutron-agents.md, "Metadata proxy").

Neutron runs one HAProxy per router inside ``qrouter-<id>`` (HA routers on the primary
only). It listens where instances send metadata requests, adds ``X-Forwarded-For`` (the
instance's address, ``option forwardfor``) and ``X-Neutron-Router-ID``, removes any
``X-Neutron-Network-ID`` a client sent, and forwards over a unix socket to the metadata
agent, which finds the instance from (router, address). Neutron binds port 9697 and
redirects 169.254.169.254:80 to it with iptables; here the proxy binds
169.254.169.254:80 itself (the address is put on the namespace's loopback by the caller),
which needs no NAT rule.

Differences from Neutron's file, on purpose:
- Identity headers a client sent are removed before ours are added (``X-Forwarded-For``,
  ``X-Neutron-Router-ID``, ``X-Neutron-Network-ID``): a VM must not be able to ask for
  another instance's data by sending them itself.
- Nothing comes from the machine's defaults: no ``/dev/log`` logging, no user switch, no
  stats socket, and the pid file is the one given (under the node's run directory), so many
  lab nodes on one machine never share a file.

Pure: the text only. Bad input raises ``MetadataProxyError`` naming the router and field.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from hanet.agent.errors import RouterError

METADATA_ADDRESS = "169.254.169.254"
METADATA_PORT = 80
# A router id goes into a header value and file names: no spaces, quotes or separators.
ROUTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# haproxy splits its lines on blanks and treats '#', quotes and backslashes specially.
_UNSAFE_IN_PATH = re.compile(r"[\s#'\"\\]")
# sun_path is 108 bytes with the terminating NUL.
UNIX_PATH_MAX = 107


class MetadataProxyError(RouterError):
    """Settings that cannot become a proxy configuration; says which router and field."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds; Neutron's are 30 s for the request, connect and keep-alive and 32 s for the
    client and server (a little over the metadata agent's own 30 s)."""

    http_request: int = 30
    connect: int = 30
    client: int = 32
    server: int = 32
    http_keep_alive: int = 30


@dataclass(frozen=True)
class MetadataProxy:
    router_id: str
    service_socket: str  # the metadata service's unix socket
    pid_file: str
    bind_address: str = METADATA_ADDRESS
    bind_port: int = METADATA_PORT
    max_connections: int = 1024
    timeouts: Timeouts = Timeouts()


def _router(proxy: MetadataProxy) -> str:
    router = proxy.router_id
    if not isinstance(router, str) or not ROUTER_ID.match(router):
        shown = router if isinstance(router, str) and router else repr(router)
        raise MetadataProxyError(
            str(shown), "router_id", "must be 1-64 letters, digits, '.', '_' or '-'"
        )
    return router


def _path(router: str, where: str, value: object, limit: int | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise MetadataProxyError(router, where, f"must be a path, not {value!r}")
    if not value.startswith("/"):
        raise MetadataProxyError(router, where, f"{value!r} is not an absolute path")
    if _UNSAFE_IN_PATH.search(value) or "\x00" in value:
        raise MetadataProxyError(router, where, f"{value!r} holds a blank, quote, '#' or backslash")
    if limit is not None and len(value.encode()) > limit:
        raise MetadataProxyError(
            router, where, f"{value!r} is longer than a unix socket path may be ({limit} bytes)"
        )
    return value


def _positive(router: str, where: str, value: object, top: int = 86400) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        raise MetadataProxyError(router, where, f"must be a whole number 1..{top}, not {value!r}")
    return value


def config(proxy: MetadataProxy) -> str:
    """The whole haproxy.cfg for ``proxy``'s router."""
    router = _router(proxy)
    socket = _path(router, "service_socket", proxy.service_socket, UNIX_PATH_MAX)
    pid_file = _path(router, "pid_file", proxy.pid_file)
    try:
        bind = ipaddress.ip_address(proxy.bind_address)
    except ValueError:
        raise MetadataProxyError(
            router, "bind_address", f"{proxy.bind_address!r} is not an IP address"
        ) from None
    port = _positive(router, "bind_port", proxy.bind_port, 65535)
    maxconn = _positive(router, "max_connections", proxy.max_connections, 1_000_000)
    times = {
        name: _positive(router, f"timeouts.{name}", getattr(proxy.timeouts, name))
        for name in ("http_request", "connect", "client", "server", "http_keep_alive")
    }
    listen = f"[{bind}]:{port}" if bind.version == 6 else f"{bind}:{port}"
    lines = [
        f"# metadata proxy of router {router}, written by hanet-agent",
        "global",
        f"    pidfile {pid_file}",
        f"    maxconn {maxconn}",
        "",
        "defaults",
        "    mode http",
        "    option http-server-close",
        "    option forwardfor",
        "    retries 3",
        *(f"    timeout {name.replace('_', '-')} {seconds}s" for name, seconds in times.items()),
        "",
        "listen metadata",
        f"    bind {listen}",
        "    http-request del-header X-Forwarded-For",
        "    http-request del-header X-Neutron-Network-ID",
        "    http-request del-header X-Neutron-Router-ID",
        f"    http-request set-header X-Neutron-Router-ID {router}",
        f"    server metadata {socket}",
        "",
    ]
    return "\n".join(lines)
