"""A small metadata service for the lab: what Neutron's metadata agent answers behind each
router's proxy (neutron/agent/metadata/agent.py; ../shared/reference/neutron-agents.md).

It listens on a unix socket, which the proxies of every router namespace reach through the
filesystem. An instance is found from the two headers the proxy adds: ``X-Neutron-Router-ID``
and ``X-Forwarded-For`` (the instance's address), in one of two ways:

- ``--instances FILE``: a mapping given at start says which instance is (router, address);
- ``--server URL``: asked of hanet-server as Neutron's metadata agent asks Neutron
  (``_get_router_networks`` then ``_get_ports_for_remote_address``): the router's interface
  ports give its networks, the one port on those networks holding the address gives the
  instance (its ``device_id`` is the instance's uuid, its ``name`` the instance's name, as
  the lab's ``vm create`` makes it). The lab cloud runs it so, in its controller namespace.

A request without those headers did not come through a proxy and is refused (400); an
address the router does not know gets 404; a server that cannot be asked gets 503.

Answers, in the shapes cloud-init reads:
- ``GET /latest/meta-data/`` (the keys, one a line) and ``/latest/meta-data/<key>``;
- ``GET /openstack/latest/meta_data.json``.

Each answered request is logged as one JSON line on stdout (router, address, path, status),
so tests and operators see what the service was told.

Run: ``python -m hanet.lab.metadata_service --socket PATH --instances FILE.json``, where the
file is a list of ``{"router_id", "address", "uuid", "name"}`` objects (optional
``hostname``, ``availability_zone``, ``project_id``); or ``--server http://HOST:PORT``
(optional ``--token-file``).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import signal
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import ClientError, ClientSession, ClientTimeout, web

ROUTER_HEADER = "X-Neutron-Router-ID"
ADDRESS_HEADER = "X-Forwarded-For"


class InstancesError(ValueError):
    pass


@dataclass(frozen=True)
class Instance:
    uuid: str
    name: str
    hostname: str
    availability_zone: str = "nova"
    project_id: str = ""

    def meta_data(self, address: str) -> dict[str, str]:
        """EC2-style keys (``/latest/meta-data/<key>``)."""
        return {
            "ami-launch-index": "0",
            "hostname": self.hostname,
            "instance-id": self.uuid,
            "local-hostname": self.hostname,
            "local-ipv4": address,
            "placement/availability-zone": self.availability_zone,
        }

    def openstack(self) -> dict[str, Any]:
        """``/openstack/latest/meta_data.json``."""
        return {
            "uuid": self.uuid,
            "name": self.name,
            "hostname": self.hostname,
            "availability_zone": self.availability_zone,
            "project_id": self.project_id,
            "launch_index": 0,
        }


Key = tuple[str, str]  # (router id, instance address)


def parse_instances(entries: object, where: str = "instances") -> dict[Key, Instance]:
    """The mapping from a JSON list; errors name the entry and field."""
    if not isinstance(entries, list):
        raise InstancesError(f"{where}: must be a list of objects")
    found: dict[Key, Instance] = {}
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise InstancesError(f"{at}: must be an object")
        fields: dict[str, str] = {}
        for name in ("router_id", "address", "uuid", "name"):
            value = entry.get(name)
            if not isinstance(value, str) or not value:
                raise InstancesError(f"{at}.{name}: must be a non-empty string")
            fields[name] = value
        for name in ("hostname", "availability_zone", "project_id"):
            value = entry.get(name, "")
            if not isinstance(value, str):
                raise InstancesError(f"{at}.{name}: must be a string")
            fields[name] = value
        try:
            address = str(ipaddress.ip_address(fields["address"]))
        except ValueError:
            raise InstancesError(f"{at}.address: {fields['address']!r} is not an IP") from None
        key = (fields["router_id"], address)
        if key in found:
            raise InstancesError(f"{at}: router {key[0]} address {address} is given twice")
        found[key] = Instance(
            fields["uuid"],
            fields["name"],
            fields["hostname"] or fields["name"],
            fields["availability_zone"] or "nova",
            fields["project_id"],
        )
    return found


def _log(**fields: object) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


class ServerUnavailable(RuntimeError):
    """The server could not be asked: the caller answers 503, not 404."""


class Finder(Protocol):
    async def find(self, router: str, address: str) -> Instance | None: ...


class StaticFinder:
    """Instances given at start (``--instances``)."""

    def __init__(self, instances: Mapping[Key, Instance]) -> None:
        self.instances = instances

    async def find(self, router: str, address: str) -> Instance | None:
        return self.instances.get((router, address))


# The router's own ports, as Neutron's metadata agent lists them
# (neutron_lib.constants.ROUTER_INTERFACE_OWNERS).
ROUTER_INTERFACE_OWNERS = (
    "network:router_interface",
    "network:ha_router_replicated_interface",
    "network:router_interface_distributed",
)


class ServerFinder:
    """The instance at (router, address) as hanet-server's ports say, asked per request
    (nothing cached: a VM made a moment ago is found at once)."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 5) -> None:
        self.url = url.rstrip("/")
        self.headers = {"X-Auth-Token": token} if token else {}
        self.timeout = ClientTimeout(total=timeout)
        self.session: ClientSession | None = None

    async def _ports(self, query: list[tuple[str, str]]) -> list[dict[str, Any]]:
        if self.session is None:
            self.session = ClientSession(timeout=self.timeout, headers=self.headers)
        try:
            async with self.session.get(f"{self.url}/v2.0/ports", params=query) as answer:
                if answer.status != 200:
                    raise ServerUnavailable(f"GET /v2.0/ports: {answer.status}")
                body = await answer.json()
        except (ClientError, TimeoutError, ValueError) as exc:
            raise ServerUnavailable(f"GET /v2.0/ports: {exc or type(exc).__name__}") from None
        return list(body["ports"])

    async def find(self, router: str, address: str) -> Instance | None:
        interfaces = await self._ports(
            [("device_id", router)] + [("device_owner", o) for o in ROUTER_INTERFACE_OWNERS]
        )
        networks = sorted({p["network_id"] for p in interfaces})
        if not networks:
            return None
        ports = await self._ports(
            [("network_id", n) for n in networks] + [("fixed_ips", f"ip_address={address}")]
        )
        # Not the router's own ports (its gateway address on the subnet); exactly one left,
        # else nobody can tell which instance asked (Neutron answers 404 too).
        ports = [p for p in ports if p.get("device_id") and p["device_id"] != router]
        if len(ports) != 1:
            return None
        port = ports[0]
        name = port.get("name") or port["device_id"]
        return Instance(port["device_id"], name, name, project_id=port.get("project_id") or "")

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def make_app(source: Mapping[Key, Instance] | Finder) -> web.Application:
    finder: Finder = StaticFinder(source) if isinstance(source, Mapping) else source

    async def caller(request: web.Request) -> tuple[str, str, Instance]:
        router = request.headers.get(ROUTER_HEADER, "").strip()
        # A proxy appends the address it saw last; earlier values are the client's own.
        forwarded = request.headers.get(ADDRESS_HEADER, "").split(",")[-1].strip()
        if not router or not forwarded:
            _log(path=request.path, router=router, address=forwarded, status=400)
            raise web.HTTPBadRequest(
                text=f"needs the {ROUTER_HEADER} and {ADDRESS_HEADER} headers of a proxy\n"
            )
        try:
            address = str(ipaddress.ip_address(forwarded))
        except ValueError:
            _log(path=request.path, router=router, address=forwarded, status=400)
            raise web.HTTPBadRequest(text=f"{ADDRESS_HEADER}: not an IP address\n") from None
        try:
            instance = await finder.find(router, address)
        except ServerUnavailable as exc:
            _log(path=request.path, router=router, address=address, status=503, error=str(exc))
            raise web.HTTPServiceUnavailable(text=f"cannot ask the server: {exc}\n") from None
        if instance is None:
            _log(path=request.path, router=router, address=address, status=404)
            raise web.HTTPNotFound(text=f"no instance at {address} behind router {router}\n")
        _log(path=request.path, router=router, address=address, uuid=instance.uuid, status=200)
        return router, address, instance

    async def meta_data(request: web.Request) -> web.Response:
        _, address, instance = await caller(request)
        data = instance.meta_data(address)
        key = request.match_info.get("key", "").strip("/")
        if not key:
            tops = sorted({k.split("/")[0] + ("/" if "/" in k else "") for k in data})
            return web.Response(text="\n".join(tops))
        if key in data:
            return web.Response(text=data[key])
        below = sorted(k[len(key) + 1 :] for k in data if k.startswith(key + "/"))
        if below:
            return web.Response(text="\n".join(below))
        raise web.HTTPNotFound(text=f"no meta-data key {key}\n")

    async def openstack(request: web.Request) -> web.Response:
        _, _, instance = await caller(request)
        return web.json_response(instance.openstack())

    app = web.Application()
    app.router.add_get("/latest/meta-data/{key:.*}", meta_data)
    app.router.add_get("/latest/meta-data", meta_data)
    app.router.add_get("/openstack/latest/meta_data.json", openstack)
    return app


async def serve(socket_path: str, source: Mapping[Key, Instance] | Finder) -> None:
    """Serve until SIGTERM or SIGINT; the socket file is removed on the way out."""
    path = Path(socket_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        path.unlink()  # left by an earlier run of this service
    runner = web.AppRunner(make_app(source), access_log=None)
    await runner.setup()
    site = web.UnixSite(runner, str(path))
    await site.start()
    # haproxy runs as root here; the socket needs no wider access.
    os.chmod(path, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if isinstance(source, Mapping):
        _log(event="listening", socket=str(path), instances=len(source))
    else:
        _log(event="listening", socket=str(path), server=getattr(source, "url", None))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if isinstance(source, ServerFinder):
            await source.close()
        if path.is_socket():
            path.unlink()


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hanet.lab.metadata_service")
    parser.add_argument("--socket", required=True, help="unix socket to listen on")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--instances", help="JSON file: the instances")
    source.add_argument("--server", help="hanet-server's URL: find instances by its ports")
    parser.add_argument("--token-file", help="with --server: a file holding an admin token")
    args = parser.parse_args(list(argv) if argv is not None else None)
    found: Mapping[Key, Instance] | Finder
    try:
        if args.server is not None:
            if not args.server.startswith(("http://", "https://")):
                raise InstancesError(f"--server {args.server!r}: expected http://HOST:PORT")
            token = Path(args.token_file).read_text().strip() if args.token_file else None
            found = ServerFinder(args.server, token)
        else:
            if args.token_file:
                raise InstancesError("--token-file goes with --server")
            data = json.loads(Path(args.instances).read_text())
            found = parse_instances(data, args.instances)
    except (OSError, json.JSONDecodeError, InstancesError) as exc:
        print(f"metadata service: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(args.socket, found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
