"""``make demo``: a lab cloud from nothing, an HA router and two VMs, the active network
node crashed, and what the VMs and the API saw. Everything is removed at the end, whatever
happens (also on Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from hanet.lab.cloud import Cloud
from hanet.lab.daemons import control_request, wait_until
from hanet.lab.lab import clean_up_on_sigterm
from hanet.lab.probe import Pinger
from hanet.lab.timeline import Mark, Span, svg
from hanet.server.client import ApiClient

UPSTREAM = "203.0.113.1"
PROBE_INTERVAL = 0.01
PICTURE = Path("build/demo-failover.svg")


class DemoError(RuntimeError):
    pass


def _ok(reply: Any, what: str, status: int = 201) -> dict[str, Any]:
    if reply.status != status:
        raise DemoError(f"{what}: {reply.status} {reply.body}")
    body: dict[str, Any] = reply.body
    return body


@dataclass
class RouterView:
    id: str
    name: str

    def active_hosts(self, api: ApiClient) -> list[str]:
        body = api.get(f"/v2.0/routers/{self.id}/l3-agents").body or {}
        return sorted(a["host"] for a in body.get("agents", []) if a.get("ha_state") == "active")


def _master_since(cloud: Cloud, node: str, router_id: str) -> float | None:
    answer = control_request(cloud.paths.vrrpd_socket(node), {"command": "status"}, timeout=2)
    for instance in answer.get("instances", []):
        if instance.get("name") == f"router-{router_id}" and instance.get("state") == "MASTER":
            since = instance.get("master_since")
            return float(since) if since is not None else None
    return None


def _ping(cloud: Cloud, vm: str, target: str) -> bool:
    return cloud.exec(vm, ["ping", "-c1", "-W1", target]).returncode == 0


def _check(console: Console, what: str, test: Callable[[], bool], timeout: float = 20) -> None:
    wait_until(test, timeout, what, step=0.2)
    console.print(f"  [green]ok[/] {what}")


def run_cloud_demo(prefix: str | None = None) -> int:
    clean_up_on_sigterm()
    console = Console(highlight=False)
    cloud = Cloud(prefix or f"demo{os.getpid() % 100000}", network_nodes=3, compute_nodes=2)
    pingers: list[Pinger] = []
    try:
        console.print(f"[bold]hanet demo[/]: a lab cloud in namespaces {cloud.prefix}-*")
        cloud.up(progress=lambda step: console.print(f"  {step}"))
        console.print(f"endpoint: {cloud.endpoint}")
        api = cloud.client()
        router, vms = _build_project(console, cloud, api)
        vm2 = vms[1]
        console.print("\n[bold]checks[/] (as a user would see them)")
        _check(
            console,
            f"vm1 reaches upstream {UPSTREAM} (SNAT)",
            lambda: _ping(cloud, "vm1", UPSTREAM),
        )
        _check(
            console, f"vm1 reaches vm2 at {vm2} across subnets", lambda: _ping(cloud, "vm1", vm2)
        )
        floating = _floating_ip(api, cloud)
        _check(
            console,
            f"upstream reaches vm1 at its floating IP {floating}",
            lambda: _ping(cloud, "upstream", floating),
        )
        return _fail_over(console, cloud, api, router, floating, pingers)
    finally:
        for pinger in pingers:
            pinger.kill()
        console.print(f"\ntearing down {cloud.prefix}-* ...")
        report = cloud.down()
        console.print(
            f"  removed {len(report.namespaces)} namespaces, stopped "
            f"{len(report.killed)} processes; nothing is left"
        )


def _build_project(console: Console, cloud: Cloud, api: ApiClient) -> tuple[RouterView, list[str]]:
    console.print("\n[bold]project[/]: networks, an HA router with a gateway, two VMs")
    public = next(n for n in _ok(api.get("/v2.0/networks?name=public"), "public", 200)["networks"])
    subnets = []
    for index, cidr in ((1, "10.10.1.0/24"), (2, "10.10.2.0/24")):
        network = _ok(
            api.post("/v2.0/networks", {"network": {"name": f"demo-net{index}"}}), "network"
        )["network"]
        subnet = _ok(
            api.post(
                "/v2.0/subnets",
                {
                    "subnet": {
                        "network_id": network["id"],
                        "cidr": cidr,
                        "ip_version": 4,
                        "name": f"demo-sub{index}",
                    }
                },
            ),
            "subnet",
        )["subnet"]
        subnets.append(subnet)
        console.print(f"  network demo-net{index} {cidr} (VXLAN)")
    body = {
        "router": {
            "name": "demo-router",
            "ha": True,
            "external_gateway_info": {"network_id": public["id"]},
        }
    }
    created = _ok(api.post("/v2.0/routers", body), "router")["router"]
    router = RouterView(created["id"], created["name"])
    for subnet in subnets:
        _ok(
            api.put(f"/v2.0/routers/{router.id}/add_router_interface", {"subnet_id": subnet["id"]}),
            "router interface",
            200,
        )
    hosts = _ok(api.get(f"/v2.0/routers/{router.id}/l3-agents"), "l3-agents", 200)["agents"]
    console.print(f"  router demo-router (HA) on {', '.join(sorted(a['host'] for a in hosts))}")
    addresses = []
    for name, network, host in (("vm1", "demo-net1", "cmp1"), ("vm2", "demo-net2", "cmp2")):
        vm = cloud.vm_create(name, network, host)
        addresses.append(vm.address.split("/")[0])
        console.print(f"  {name} on {host}: {vm.address}")
    active = wait_until(lambda: router.active_hosts(api), 30, "the router to be active", 0.1)
    console.print(f"  demo-router is active on {active[0]}")
    return router, addresses


def _floating_ip(api: ApiClient, cloud: Cloud) -> str:
    public = _ok(api.get("/v2.0/networks?name=public"), "public", 200)["networks"][0]
    port = next(p for p in _ok(api.get("/v2.0/ports"), "ports", 200)["ports"] if p["name"] == "vm1")
    body = {"floatingip": {"floating_network_id": public["id"], "port_id": port["id"]}}
    return str(
        _ok(api.post("/v2.0/floatingips", body), "floating IP")["floatingip"]["floating_ip_address"]
    )


def _fail_over(
    console: Console,
    cloud: Cloud,
    api: ApiClient,
    router: RouterView,
    floating: str,
    pingers: list[Pinger],
) -> int:
    console.print(
        "\n[bold]fail-over[/]: vm1 pings upstream and upstream pings vm1's floating IP "
        f"every {PROBE_INTERVAL * 1000:.0f} ms"
    )
    before = router.active_hosts(api)[0]
    out = Pinger(None, "vm1", UPSTREAM, PROBE_INTERVAL, namespace=cloud.namespace("vm1")).start()
    back = Pinger(
        None, "upstream", floating, PROBE_INTERVAL, namespace=cloud.namespace("upstream")
    ).start()
    pingers += [out, back]
    out.wait_answered()
    back.wait_answered()
    time.sleep(1.0)  # a second of steady replies before the crash, for the picture
    crash = cloud.crash(before)
    console.print(
        f"  [red]crash {before}[/]: links cut and every process killed -9 "
        f"({len(crash.killed)} processes)"
    )
    after = wait_until(
        lambda: [h for h in router.active_hosts(api) if h != before],
        15,
        "another node to be active",
        0.02,
    )[0]
    api_seen = time.time()
    took_over = _master_since(cloud, after, router.id)
    time.sleep(1.0)  # keep probing after the take-over, so the first good replies are seen
    for pinger in (out, back):
        pinger.stop()
    pingers.clear()
    worst_ms, lost = 0, 0
    console.print("\n[bold]timeline[/] (ms after the crash)")
    moments = [(crash.at, f"{before} crashed (was active)")]
    if took_over is not None:
        moments.append((took_over, f"{after} became master (VRRP, 3 x 100 ms + skew)"))
    moments.append((api_seen, f"the API shows {after} active"))
    for name, pinger in (("vm1 -> upstream", out), ("upstream -> floating IP", back)):
        outage = pinger.outage()
        if outage is not None:
            moments += [
                (outage.start, f"{name}: last reply before the outage"),
                (outage.end, f"{name}: first reply after it ({outage.lost} lost)"),
            ]
            worst_ms = max(worst_ms, outage.ms)
        lost += pinger.lost
    for moment, what in sorted(moments):
        console.print(f"  {(moment - crash.at) * 1000:>+8.0f}  {what}")
    picture = _draw(router, before, after, crash.at, took_over, api_seen, out)
    console.print(f"\ntimeline picture: {picture}")
    console.print(f"failover: routers=1 outage_ms={worst_ms} lost={lost}")
    return 0


def _draw(
    router: RouterView,
    before: str,
    after: str,
    crashed: float,
    took_over: float | None,
    api_seen: float,
    pinger: Pinger,
) -> Path:
    answered = {seq for seq, _ in pinger.replies}
    replies = [at for _, at in pinger.replies]
    lost = [at for seq, at in enumerate(pinger.sent) if seq not in answered]
    start, end = crashed - 0.3, max(api_seen, took_over or crashed) + 0.5
    new_from = took_over or api_seen
    spans = [
        Span(router.name, start, crashed, f"active on {before}"),
        Span(router.name, new_from, end, f"active on {after}"),
    ]
    marks = [Mark(crashed, f"crash {before}"), Mark(api_seen, "API shows it")]
    if took_over is not None:
        marks.insert(1, Mark(took_over, f"{after} master"))
    text = svg(
        "hanet demo: the active network node crashes",
        spans,
        marks,
        replies,
        lost,
        crashed,
        start,
        end,
    )
    path = PICTURE.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
