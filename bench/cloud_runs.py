"""The two clouds of bench.cloud and what is done to them, step by step.

A small cloud (3 network nodes, 1 compute node, one router) for the client's outage, crashed
``trials`` times; a big one (4 network nodes, the fourth off until the crash, 1 compute
node, N routers) for everything that depends on the number of routers.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cloud_steps import (
    UPSTREAM,
    BenchError,
    Progress,
    Results,
    Spread,
    add_public_subnet,
    agent_counts,
    agent_ready,
    call,
    has_active,
    keep_logs,
    log,
    made,
    make_router,
    make_routers,
    make_subnets,
    masters,
    public_network,
    set_advert_int,
    three_alive,
    vrrp_instances,
    watch_active,
    watch_routers,
)
from bench.cloud_usage import usage
from hanet.lab.cloud import Cloud
from hanet.lab.daemons import wait_until
from hanet.lab.probe import Pinger
from hanet.lab.pytest_plugin import unique_prefix
from hanet.server.client import ApiClient

FAST, SLOW = 0.1, 1.0  # advert intervals: the lab cloud's, and the 1 s of the CPU figure
PROBE_CIDR = "10.99.0.0/24"


def probe_network(cloud: Cloud, api: ApiClient) -> str:
    """Network 'probe' with vm1 on cmp1; the id of its subnet (no router yet)."""
    network = made(
        call(api, "POST", "/v2.0/networks", {"network": {"name": "probe"}}),
        "network probe",
        "network",
    )
    subnet = made(
        call(
            api,
            "POST",
            "/v2.0/subnets",
            {
                "subnet": {
                    "network_id": network["id"],
                    "cidr": PROBE_CIDR,
                    "ip_version": 4,
                    "name": "probe",
                }
            },
        ),
        "subnet probe",
        "subnet",
    )
    cloud.vm_create("vm1", "probe", "cmp1", timeout=120)
    return str(subnet["id"])


def pinger(cloud: Cloud) -> Pinger:
    return Pinger(None, "vm1", UPSTREAM, 0.01, namespace=cloud.namespace("vm1"))


def create_and_ping(cloud: Cloud, api: ApiClient, public: str, subnet: str) -> dict[str, Any]:
    """POST the router, add its interface, and time vm1's first reply from upstream through
    it (vm1 probes every 10 ms from before the POST); also when the API shows it active."""
    probe = pinger(cloud).start()
    seen: dict[str, float] = {}
    try:
        time.sleep(0.5)  # the prober is sending before the clock starts
        started = time.time()
        router = make_router(api, "probe", public, None, subnet)
        answered = time.time()
        watcher = threading.Thread(
            target=lambda: seen.update(watch_routers(api, [router], has_active, 300))
        )
        watcher.start()
        probe.wait_answered(timeout=300)
        watcher.join()
    finally:
        probe.stop()
    if not probe.replies:
        raise BenchError("vm1 never reached upstream through the new router")
    return {
        "router": router,
        "requests_s": answered - started,
        "forwarding_s": probe.replies[0][1] - started,
        "active_api_s": seen[router] - started if router in seen else None,
    }


def master_of(cloud: Cloud, nodes: list[str], router: str) -> str | None:
    found = [n for n in nodes if vrrp_instances(cloud, n).get(router, {}).get("state") == "MASTER"]
    return found[0] if len(found) == 1 else None


def steady_master(cloud: Cloud, nodes: list[str], router: str) -> tuple[str, int] | None:
    """The one node where vrrpd has the router MASTER, once some other node is its BACKUP
    and not held there (a held backup cannot take over: a crash with only held backups
    would measure the hold, not VRRP); and how many nodes hold it."""
    instances = {n: vrrp_instances(cloud, n).get(router, {}) for n in nodes}
    found = [n for n, i in instances.items() if i.get("state") == "MASTER"]
    free = [n for n, i in instances.items() if i.get("state") == "BACKUP" and not i.get("held")]
    if len(found) != 1 or not free:
        return None
    return found[0], sum(1 for i in instances.values() if i.get("held"))


def agent_dead(cloud: Cloud, node: str) -> bool:
    return not any(a["host"] == node and a.get("alive") for a in cloud.agents())


def crash_trial(cloud: Cloud, router: str) -> dict[str, Any]:
    """Crash the router's active node at a random point of the advert cycle; the client's
    longest silence until the server has declared the node's agent dead (what the server
    does meanwhile may move the router again)."""
    nodes = cloud.network_nodes
    active, held = wait_until(lambda: steady_master(cloud, nodes, router), 60, "a free backup")
    probe = pinger(cloud).start().wait_answered()
    try:
        time.sleep(0.3 + random.uniform(0, FAST))
        crash = cloud.crash(active)
        others = [n for n in nodes if n != active]
        after = wait_until(lambda: master_of(cloud, others, router), 30, "a new master", 0.05)
        since = vrrp_instances(cloud, after)[router].get("master_since")
        wait_until(lambda: agent_dead(cloud, active), 30, f"{active}'s agent declared dead", 0.5)
        time.sleep(1.0)  # replies after the last move close the outage
    finally:
        probe.stop()
    outage = probe.outage()
    return {
        "crashed": active,
        "held_before": held,
        "new_master": after,
        "master_when_dead": master_of(cloud, others, router),
        "outage_ms": outage.ms if outage else 0,
        "lost": probe.lost,
        "took_over_s": since - crash.at if since else None,
    }


def small_cloud(results: Results, trials: int, logs: Path) -> None:
    """Each crash on a fresh cloud, as bench.failover's trials: the server's split-brain
    arbitration can leave a backup held in standby after a crash (see the docs' notes), and
    a later crash in the same cloud would measure that hold."""
    outages: list[dict[str, Any]] = []
    results.figures["crashes"] = outages
    for n in range(trials):
        cloud = Cloud(unique_prefix(), network_nodes=3, compute_nodes=1)
        try:
            log(f"small cloud {cloud.prefix} ({n + 1} of {trials}): 3 network nodes, 1 compute")
            cloud.up()
            api = cloud.client()
            subnet = probe_network(cloud, api)
            one = create_and_ping(cloud, api, public_network(api), subnet)
            if n == 0:
                results.figures["create_one_empty"] = one
                log(f"one router, empty cloud: {one}")
            outages.append(crash_trial(cloud, one["router"]))
            log(f"crash {n + 1}: {outages[-1]}")
        finally:
            if n == 0 or len(outages) <= n:  # the first cloud's, and a failed one's
                log(f"logs kept in {keep_logs(cloud, logs)}")
            cloud.down()


# The big cloud -------------------------------------------------------------------------------


def step(results: Results, name: str, action: Callable[[], Any]) -> Any:
    """Run one step; its failure is recorded and raised (later steps depend on it)."""
    started = time.monotonic()
    log(f"{name} ...")
    try:
        value = action()
    except Exception as exc:
        results.errors[name] = f"{type(exc).__name__}: {exc}"
        log(f"{name} FAILED after {time.monotonic() - started:.1f} s: {exc}")
        raise
    log(f"{name}: done in {time.monotonic() - started:.1f} s")
    return value


def wait_ready(
    cloud: Cloud, nodes: list[str], routers: list[str], since: float, timeout: float
) -> dict[str, float]:
    """When each node's agent status first showed every router ready and in vrrpd."""
    seen: dict[str, float] = {}

    def check() -> bool:
        for node in nodes:
            if node not in seen and agent_ready(cloud, node, routers, since):
                seen[node] = time.time()
        return len(seen) == len(nodes)

    try:
        wait_until(check, timeout, f"{', '.join(nodes)} to run {len(routers)} routers", 2.0)
    except Exception:
        raise BenchError("; ".join(agent_counts(cloud, n) for n in nodes)) from None
    return seen


def one_master_each(cloud: Cloud, nodes: list[str], routers: list[str]) -> dict[str, set[str]]:
    def check() -> dict[str, set[str]] | None:
        found = masters(cloud, nodes)
        counts = [sum(r in found[n] for n in nodes) for r in routers]
        return found if all(c == 1 for c in counts) else None

    found: dict[str, set[str]] = wait_until(check, 120, "one master per router", 1.0)
    return found


def restart_all(cloud: Cloud, nodes: list[str], routers: list[str], advert_int: float) -> float:
    """Every agent restarted at ``advert_int``; seconds until all run every router again."""
    set_advert_int(advert_int)
    started = time.time()
    for node in nodes:
        cloud.restart_agent(node, timeout=300)
    wait_ready(cloud, nodes, routers, started, 900)
    one_master_each(cloud, nodes, routers)
    return time.time() - started


def big_cloud(
    results: Results,
    count: int,
    per_project: int,
    idle: float,
    build_minutes: float,
    logs: Path,
    build_interval: float = FAST,
) -> None:
    """Built at ``build_interval`` (FAST or SLOW): at SLOW, the idle figures and the agent
    restart are taken at 1 s first, and the agents then go to 0.1 s for the rest."""
    set_advert_int(build_interval)
    cloud = Cloud(unique_prefix(), network_nodes=4, compute_nodes=1)
    hosts, spare = cloud.network_nodes[:3], cloud.network_nodes[3]
    figures = results.figures
    try:
        log(f"big cloud {cloud.prefix}: {count} routers on {', '.join(hosts)}; spare {spare}")
        step(results, "cloud up", lambda: cloud.up(progress=lambda s: log(f"  {s}"), timeout=180))
        # The spare is off while the routers are placed, so that they all go to the three.
        cloud.crash(spare)
        cloud.wait_agents([spare], alive=False, timeout=60)
        api = cloud.client()
        public = public_network(api)
        gateway_subnet = add_public_subnet(cloud, api)
        started = time.time()
        subnets = step(results, "subnets", lambda: make_subnets(api, count, per_project))
        figures["subnets_s"] = time.time() - started
        ids, first, last = step(
            results,
            "routers",
            lambda: make_routers(api, public, gateway_subnet, subnets, per_project),
        )
        figures["create_requests_s"] = last - first
        ready = build(results, cloud, api, hosts, ids, first, first + build_minutes * 60)
        figures["create_built_s"] = {n: t - first for n, t in ready.items()}
        step(results, "one master per router", lambda: one_master_each(cloud, hosts, ids))
        subnet = step(results, "vm1", lambda: probe_network(cloud, api))
        one = step(results, "one more router", lambda: create_and_ping(cloud, api, public, subnet))
        figures["create_one_loaded"] = one
        everything = [*ids, one["router"]]
        step(results, "settled", lambda: wait_ready(cloud, hosts, everything, 0, 300))
        found = step(results, "masters", lambda: one_master_each(cloud, hosts, everything))
        figures["masters"] = {n: len(found[n]) for n in hosts}
        time.sleep(5)

        def restart() -> dict[str, Any]:
            return agent_restart(cloud, hosts, everything, one["router"])

        if build_interval == SLOW:
            figures["usage_slow"] = step(results, "idle at 1 s", lambda: usage(cloud, hosts, idle))
            figures["restart"] = step(results, "agent restart", restart)
            figures["restart"]["advert_int"] = SLOW
        else:
            figures["usage_fast"] = step(
                results, "idle at 0.1 s", lambda: usage(cloud, hosts, idle)
            )
            figures["restart"] = step(results, "agent restart", restart)
            figures["to_slow_s"] = step(
                results, "agents to 1 s", lambda: restart_all(cloud, hosts, everything, SLOW)
            )
            time.sleep(5)
            figures["usage_slow"] = step(results, "idle at 1 s", lambda: usage(cloud, hosts, idle))
        figures["to_fast_s"] = step(
            results, "agents to 0.1 s", lambda: restart_all(cloud, hosts, everything, FAST)
        )
        if build_interval == SLOW:
            time.sleep(5)
            figures["usage_fast"] = step(
                results, "idle at 0.1 s", lambda: usage(cloud, hosts, idle)
            )
        step(results, "spare on", lambda: spare_on(cloud, spare))
        figures["crash"] = step(
            results, "crash", lambda: crash_big(cloud, api, hosts, spare, everything, one["router"])
        )
    finally:
        log(f"logs kept in {keep_logs(cloud, logs)}")
        cloud.down()


def build(
    results: Results,
    cloud: Cloud,
    api: ApiClient,
    hosts: list[str],
    routers: list[str],
    first: float,
    deadline: float,
) -> dict[str, float]:
    """Until the API shows every router active and every node runs them all, or the
    deadline; how the build went is kept either way, and the daemons' memory if it failed."""
    figures = results.figures
    progress = Progress(cloud, hosts, first).start()
    try:
        active = step(
            results, "active in the API", lambda: watch_active(cloud, api, hosts, routers, deadline)
        )
        figures["create_active"] = Spread.of([t - first for t in active.values()])
        figures["create_active_missing"] = len(routers) - len(active)
        left = max(10.0, deadline - time.time())
        return dict(
            step(results, "built on every node", lambda: wait_ready(cloud, hosts, routers, 0, left))
        )
    except Exception:
        figures["usage_building"] = usage(cloud, hosts, 5)
        raise
    finally:
        figures["build_progress"] = progress.stop()


def agent_restart(cloud: Cloud, hosts: list[str], routers: list[str], probe: str) -> dict[str, Any]:
    """Restart the agent of the probe router's active node while vm1 pings through it."""
    node = master_of(cloud, hosts, probe)
    if node is None:
        raise BenchError(f"router {probe} has no single master")
    ping = pinger(cloud).start().wait_answered()
    try:
        started = time.time()
        cloud.restart_agent(node, timeout=300)
        registered = time.time()
        wait_ready(cloud, [node], routers, started, 900)
        adopted = time.time()
        time.sleep(1.0)  # probes after the adoption count too
    finally:
        ping.stop()
    return {
        "node": node,
        "lost": ping.lost,
        "sent": len(ping.sent),
        "registered_s": registered - started,
        "adopted_s": adopted - started,
    }


def spare_on(cloud: Cloud, spare: str) -> None:
    cloud.recover(spare, timeout=120)
    cloud.wait_agents([spare], timeout=60)


def crash_big(
    cloud: Cloud, api: ApiClient, hosts: list[str], spare: str, routers: list[str], probe: str
) -> dict[str, Any]:
    """Crash the node that is master of most routers: when each of those became master
    elsewhere (vrrpd's master_since), and when every router of the node had three live
    places again, the spare's among them."""
    found = masters(cloud, hosts)
    victim = max(hosts, key=lambda n: len(found[n]))
    mastered = found[victim]
    survivors = [n for n in hosts if n != victim]
    ping = pinger(cloud).start().wait_answered()
    spare_seen: dict[str, float] = {}
    try:
        time.sleep(0.3 + random.uniform(0, FAST))
        crash = cloud.crash(victim)
        taken: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(taken) < len(mastered) and time.monotonic() < deadline:
            for node in survivors:
                for router, instance in vrrp_instances(cloud, node).items():
                    since = instance.get("master_since")
                    if router in mastered and instance.get("state") == "MASTER" and since:
                        taken[router] = min(taken.get(router, since), since)
            time.sleep(1.0)  # master_since is vrrpd's own: polling more often adds load only
        time.sleep(1.0)
    finally:
        ping.stop()
    outage = ping.outage()
    log(f"{len(taken)} of {len(mastered)} routers master elsewhere; re-protection ...")

    def watch_spare() -> None:
        with_deadline = time.monotonic() + 600
        while time.monotonic() < with_deadline:
            if agent_ready(cloud, spare, routers):
                spare_seen["at"] = time.time()
                return
            time.sleep(2.0)

    watcher = threading.Thread(target=watch_spare)
    watcher.start()
    protected = watch_routers(api, routers, lambda found: three_alive(found, victim), 600)
    watcher.join()
    return {
        "node": victim,
        "mastered": len(mastered),
        "took_over": Spread.of([t - crash.at for t in taken.values()]),
        "not_taken_over": len(mastered) - len(taken),
        "probe_on_node": probe in mastered,
        "outage_ms": outage.ms if outage else 0,
        "three_places": Spread.of([t - crash.at for t in protected.values()]),
        "not_protected": len(routers) - len(protected),
        "spare_ready_s": spare_seen["at"] - crash.at if "at" in spare_seen else None,
        "spare_status": agent_counts(cloud, spare),
    }
