"""The pieces bench.cloud is made of: routers through the API, and what the agents and
vrrpds say about them.

Nothing here decides a figure: each function returns what it saw (times are wall clock,
``time.time()``, as vrrpd's ``master_since`` and the crash report's ``at`` are).
"""

from __future__ import annotations

import concurrent.futures
import shutil
import statistics
import threading
import time
import urllib.error
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hanet.lab import cloud_config, cloud_nodes
from hanet.lab.cloud import Cloud
from hanet.lab.daemons import control_request
from hanet.server.client import ApiClient, Reply

UPSTREAM = "203.0.113.1"
# The lab's public subnet has 241 addresses; the bench's routers take their gateways from
# one more subnet of 'public', whose gateway upstream answers for.
EXTRA_PUBLIC = {"cidr": "100.64.0.0/20", "gateway": "100.64.0.1"}
CLIENTS = 8  # concurrent API clients, as bench.server
LIVE = ("MASTER", "BACKUP")


class BenchError(RuntimeError):
    """A step did not do what it should; the message says which and what was seen."""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


# The API -----------------------------------------------------------------------------------


def call(api: ApiClient, method: str, path: str, body: Any = None, tries: int = 5) -> Reply:
    """One request; a timeout or refused connection (a busy server) is tried again."""
    for attempt in range(tries):
        try:
            return api.request(method, path, body)
        except (OSError, urllib.error.URLError) as exc:
            if attempt == tries - 1:
                raise BenchError(f"{method} {path}: {exc}") from None
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


def made(reply: Reply, what: str, key: str) -> dict[str, Any]:
    if reply.status not in (200, 201):
        raise BenchError(f"{what}: {reply.status} {reply.body}")
    body: dict[str, Any] = reply.body[key]
    return body


def public_network(api: ApiClient) -> str:
    return str(made(call(api, "GET", "/v2.0/networks?name=public"), "public", "networks")[0]["id"])


def add_public_subnet(cloud: Cloud, api: ApiClient) -> str:
    """A second subnet on 'public' for the routers' gateways; upstream gets its gateway."""
    subnet = made(
        call(
            api,
            "POST",
            "/v2.0/subnets",
            {
                "subnet": {
                    "name": "bench-public",
                    "network_id": public_network(api),
                    "ip_version": 4,
                    "cidr": EXTRA_PUBLIC["cidr"],
                    "gateway_ip": EXTRA_PUBLIC["gateway"],
                    "enable_dhcp": False,
                }
            },
        ),
        "the bench's public subnet",
        "subnet",
    )
    prefix = EXTRA_PUBLIC["cidr"].split("/")[1]
    cloud.exec(
        "upstream",
        ["ip", "addr", "add", f"{EXTRA_PUBLIC['gateway']}/{prefix}", "dev", "eth0"],
        check=True,
    )
    return str(subnet["id"])


def tenant_cidr(index: int) -> str:
    """Router ``index``'s own subnet (up to 32,768 of them)."""
    return f"10.{128 + index // 256}.{index % 256}.0/24"


def project(index: int, per_project: int) -> str:
    """Router ``index``'s project: an HA network (one VRRP segment) is per project."""
    return f"bench-p{index // per_project}"


def make_subnets(api: ApiClient, routers: int, per_project: int) -> list[str]:
    """A tenant network and subnet for each router, in the router's project."""

    def one(i: int) -> str:
        owner = project(i, per_project)
        body: dict[str, Any] = {"network": {"name": f"bench-net{i}", "project_id": owner}}
        network = made(call(api, "POST", "/v2.0/networks", body), f"network {i}", "network")
        body = {
            "subnet": {
                "name": f"bench-sub{i}",
                "network_id": network["id"],
                "cidr": tenant_cidr(i),
                "ip_version": 4,
                "project_id": owner,
            }
        }
        return str(made(call(api, "POST", "/v2.0/subnets", body), f"subnet {i}", "subnet")["id"])

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(routers)))


def router_body(
    name: str, public: str, gateway_subnet: str | None, owner: str | None = None
) -> dict[str, Any]:
    gateway: dict[str, Any] = {"network_id": public}
    if gateway_subnet is not None:
        gateway["external_fixed_ips"] = [{"subnet_id": gateway_subnet}]
    router: dict[str, Any] = {"name": name, "ha": True, "external_gateway_info": gateway}
    if owner is not None:
        router["project_id"] = owner
    return {"router": router}


def make_router(
    api: ApiClient,
    name: str,
    public: str,
    gateway_subnet: str | None,
    subnet: str,
    owner: str | None = None,
) -> str:
    """An HA router with a gateway on public and one interface: two requests."""
    body = router_body(name, public, gateway_subnet, owner)
    router = str(made(call(api, "POST", "/v2.0/routers", body), f"router {name}", "router")["id"])
    reply = call(api, "PUT", f"/v2.0/routers/{router}/add_router_interface", {"subnet_id": subnet})
    if reply.status != 200:
        raise BenchError(f"router {name}: add_router_interface: {reply.status} {reply.body}")
    return router


def make_routers(
    api: ApiClient, public: str, gateway_subnet: str, subnets: list[str], per_project: int
) -> tuple[list[str], float, float]:
    """Every router at once (CLIENTS at a time): ids, time of the first request, and of the
    last answer."""
    first = time.time()

    def one(i: int) -> str:
        owner = project(i, per_project)
        return make_router(api, f"bench-r{i}", public, gateway_subnet, subnets[i], owner)

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        ids = list(pool.map(one, range(len(subnets))))
    return ids, first, time.time()


def places(api: ApiClient, router: str) -> list[dict[str, Any]]:
    reply = call(api, "GET", f"/v2.0/routers/{router}/l3-agents")
    if reply.status != 200:
        raise BenchError(f"GET l3-agents of {router}: {reply.status} {reply.body}")
    return list(reply.body["agents"])


def has_active(found: list[dict[str, Any]]) -> bool:
    return any(p.get("ha_state") == "active" for p in found)


def three_alive(found: list[dict[str, Any]], dead: str | None = None) -> bool:
    """Three places on live agents; ``dead`` is a crashed node the API may still show alive
    (until agent_down_time has passed)."""
    return len([p for p in found if p.get("alive") and p.get("host") != dead]) >= 3


def watch_routers(
    api: ApiClient, routers: Iterable[str], done: Callable[[list[Any]], bool], timeout: float
) -> dict[str, float]:
    """When each router's l3-agents first satisfied ``done`` (only those still waiting are
    asked again: a poll of 1,000 routers is 1,000 requests). Routers not done within
    ``timeout`` are missing from the answer."""
    waiting, seen = set(routers), {}
    deadline = time.monotonic() + timeout
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        while waiting and time.monotonic() < deadline:
            batch = sorted(waiting)
            for router, found in zip(batch, pool.map(lambda r: places(api, r), batch), strict=True):
                if done(found):
                    seen[router] = time.time()
                    waiting.discard(router)
            if waiting:
                time.sleep(1.0)
    return seen


def watch_active(
    cloud: Cloud, api: ApiClient, nodes: list[str], routers: Iterable[str], deadline: float
) -> dict[str, float]:
    """When the API first showed each router active: only routers some vrrpd already calls
    MASTER are asked (a round of 1,000 API requests would slow the agents down on this
    machine), and vrrpd's status every 5 s (each is a reply of every instance, made in
    vrrpd's event loop), so each time is late by up to about 5 s."""
    waiting, seen = set(routers), {}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        while waiting and time.time() < deadline:
            mastered = set().union(*masters(cloud, nodes).values())
            batch = sorted(waiting & mastered)
            for router, found in zip(batch, pool.map(lambda r: places(api, r), batch), strict=True):
                if has_active(found):
                    seen[router] = time.time()
                    waiting.discard(router)
            time.sleep(5.0)
    return seen


class Progress:
    """Every ``every`` seconds, for each node: router namespaces made, and instances vrrpd
    runs as MASTER or BACKUP, None if it did not answer (for a slow build, how it went)."""

    def __init__(self, cloud: Cloud, nodes: list[str], since: float, every: float = 60) -> None:
        self.cloud, self.nodes, self.since, self.every = cloud, nodes, since, every
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Progress:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            sample: dict[str, Any] = {"at_s": round(time.time() - self.since)}
            for node in self.nodes:
                socket = self.cloud.paths.vrrpd_socket(node)
                answer = control_request(socket, {"command": "status"}, timeout=20)
                states = [i.get("state") for i in answer.get("instances", [])]
                # None: vrrpd did not answer within 20 s (not that it runs nothing).
                running = sum(1 for s in states if s in LIVE) if answer else None
                # A router's namespace is its build's first step: how far a batch has got,
                # before the batch's instances go to vrrpd together at its end.
                made = len(cloud_nodes.router_namespaces(self.cloud.prefix, node))
                sample[node] = [made, running]
            self.samples.append(sample)
            log(f"  progress: {sample}")

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        return self.samples


# vrrpd and the agents ----------------------------------------------------------------------


def vrrp_instances(cloud: Cloud, node: str) -> dict[str, dict[str, Any]]:
    """Router id -> vrrpd's instance on ``node`` ({} if vrrpd does not answer)."""
    answer = control_request(cloud.paths.vrrpd_socket(node), {"command": "status"}, timeout=20)
    return {
        str(i["name"])[len("router-") :]: i
        for i in answer.get("instances", [])
        if str(i.get("name", "")).startswith("router-")
    }


def masters(cloud: Cloud, nodes: Iterable[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for node in nodes:
        instances = vrrp_instances(cloud, node)
        found[node] = {r for r, i in instances.items() if i.get("state") == "MASTER"}
    return found


def agent_ready(cloud: Cloud, node: str, routers: Iterable[str], since: float = 0) -> bool:
    """The agent's status (written after ``since``) shows each router built without error,
    and vrrpd runs its instance, as MASTER or BACKUP: the agent hands instances to vrrpd only
    once it has built them. (The status file's own "vrrp" field is only rewritten at the
    agent's next change or report, so it can lag vrrpd by many seconds.)"""
    status = cloud.agent_status(node)
    if status.get("updated_at", 0) < since:
        return False
    hosted = status.get("routers", {})
    if not all(hosted.get(r, {}).get("state") == "ready" for r in routers):
        return False
    instances = vrrp_instances(cloud, node)
    return all(instances.get(r, {}).get("state") in LIVE for r in routers)


def agent_counts(cloud: Cloud, node: str) -> str:
    hosted = cloud.agent_status(node).get("routers", {})
    ready = sum(1 for r in hosted.values() if r.get("state") == "ready")
    instances = vrrp_instances(cloud, node)
    live = sum(1 for i in instances.values() if i.get("state") in LIVE)
    errors = [r.get("error") for r in hosted.values() if r.get("state") == "error"]
    first = f"; first error: {errors[0]}" if errors else ""
    return (
        f"{node}: the agent has {len(hosted)} routers, {ready} ready; vrrpd runs "
        f"{len(instances)}, {live} master or backup{first}"
    )


def set_advert_int(value: float) -> None:
    """The advert interval the cloud writes into each agent.yaml from now on.

    The lab cloud has no setting for it: its agent_settings is wrapped here (Cloud looks it
    up at each agent start), so that an agent restarted after this runs at ``value``."""
    original = getattr(cloud_config, "_bench_original_agent_settings", None)
    if original is None:
        original = cloud_config.agent_settings
        cloud_config._bench_original_agent_settings = original  # type: ignore[attr-defined]

    def settings(paths: Any, prefix: str, node: str) -> dict[str, Any]:
        rendered: dict[str, Any] = original(paths, prefix, node)
        rendered["advert_int"] = value
        return rendered

    cloud_config.agent_settings = settings  # type: ignore[assignment]


# Figures -----------------------------------------------------------------------------------


@dataclass
class Spread:
    """First, median and last of per-router delays (seconds), and how many were seen."""

    first: float
    median: float
    last: float
    count: int

    @classmethod
    def of(cls, delays: list[float]) -> Spread | None:
        if not delays:
            return None
        return cls(min(delays), statistics.median(delays), max(delays), len(delays))

    def text(self, unit: str = "s") -> str:
        if unit == "ms":
            return (
                f"first {self.first * 1000:.0f} ms, median {self.median * 1000:.0f} ms, "
                f"last {self.last * 1000:.0f} ms"
            )
        return f"first {self.first:.2f} s, median {self.median:.2f} s, last {self.last:.2f} s"


@dataclass
class Results:
    """Everything measured, filled in as the run goes; errors kept with the step's name."""

    routers: int
    figures: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def keep_logs(cloud: Cloud, into: Path) -> Path | None:
    """Copy the cloud's logs and status files before down removes its run directory."""
    root = cloud.paths.root
    if not root.exists():
        return None
    target = into / cloud.prefix
    shutil.rmtree(target, ignore_errors=True)
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".json", ".yaml"):
            copy = target / path.relative_to(root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
    return target
