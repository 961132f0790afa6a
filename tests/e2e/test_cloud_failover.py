"""HA routers in a lab cloud, as a cloud's user and operator see them: VMs reach upstream,
each other and the metadata service; a floating IP answers; restarts and a server-link cut
lose no ping; split brain is resolved; a crashed active node is replaced; a legacy router
moves off a dead agent, which stops it; a router that cannot be built is ERROR alone.

One cloud for the module (4 network nodes, 2 compute nodes: the fourth network node is the
spare that restores redundancy), with a unique prefix, removed even when a test fails. The
tests run in file order; the crash comes last.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hanet.lab.cloud import Cloud
from hanet.lab.daemons import control_request, wait_until
from hanet.lab.probe import Pinger
from hanet.lab.pytest_plugin import unique_prefix
from hanet.server.client import ApiClient

UPSTREAM = "203.0.113.1"
AGENT_DOWN_TIME = 5  # the lab cloud's server setting
AGENT = str(Path(sys.executable).parent / "hanet-agent")


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    built = Cloud(unique_prefix(), network_nodes=4, compute_nodes=2)
    try:
        built.up()
        yield built
    finally:
        built.down()


@pytest.fixture(scope="module")
def api(cloud: Cloud) -> ApiClient:
    return cloud.client()


def _created(reply: Any, key: str) -> dict[str, Any]:
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body[key]
    return body


@pytest.fixture(scope="module")
def project(cloud: Cloud, api: ApiClient) -> dict[str, Any]:
    """Two networks, an HA router with a gateway on both, vm1 (cmp1) and vm2 (cmp2)."""
    public = api.get("/v2.0/networks?name=public").body["networks"][0]
    subnets = []
    for index in (1, 2):
        network = _created(api.post("/v2.0/networks", {"network": {"name": f"n{index}"}}),
                           "network")  # fmt: skip
        subnets.append(_created(api.post("/v2.0/subnets", {"subnet": {
            "network_id": network["id"], "cidr": f"10.20.{index}.0/24", "ip_version": 4,
        }}), "subnet"))  # fmt: skip
    router = _created(api.post("/v2.0/routers", {"router": {
        "name": "r1", "ha": True, "external_gateway_info": {"network_id": public["id"]},
    }}), "router")  # fmt: skip
    for subnet in subnets:
        reply = api.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                        {"subnet_id": subnet["id"]})  # fmt: skip
        assert reply.status == 200, reply.body
    vm1 = cloud.vm_create("vm1", "n1", "cmp1")
    vm2 = cloud.vm_create("vm2", "n2", "cmp2")
    wait_until(lambda: active_hosts(api, router["id"]), 30, "the router to be active", 0.1)
    return {"router": router["id"], "public": public["id"], "vm1": vm1, "vm2": vm2}


def places(api: ApiClient, router: str) -> list[dict[str, Any]]:
    body = api.get(f"/v2.0/routers/{router}/l3-agents").body or {}
    agents: list[dict[str, Any]] = body.get("agents", [])
    return agents


def active_hosts(api: ApiClient, router: str) -> list[str]:
    return sorted(a["host"] for a in places(api, router) if a.get("ha_state") == "active")


def vrrp_instance(cloud: Cloud, node: str, router: str) -> dict[str, Any]:
    answer = control_request(cloud.paths.vrrpd_socket(node), {"command": "status"}, timeout=3)
    for instance in answer.get("instances", []):
        if instance.get("name") == f"router-{router}":
            return dict(instance)
    return {}


def pings(cloud: Cloud, name: str, target: str) -> bool:
    return cloud.exec(name, ["ping", "-c1", "-W1", target]).returncode == 0


def probe(cloud: Cloud, vm: str, target: str) -> Pinger:
    return Pinger(None, vm, target, 0.01, namespace=cloud.namespace(vm)).start().wait_answered()


LISTEN = (
    "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
    "s.bind(('0.0.0.0',9999)); s.settimeout(15); print(s.recvfrom(64)[1][0], flush=True)"
)
SEND = "import socket; socket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'x',('{}',9999))"


def source_seen_by_upstream(cloud: Cloud, vm: str) -> str:
    """The source address of a datagram from ``vm`` as upstream receives it."""
    listener = subprocess.Popen(
        ["ip", "netns", "exec", cloud.namespace("upstream"), sys.executable, "-c", LISTEN],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(50):
            cloud.exec(vm, [sys.executable, "-c", SEND.format(UPSTREAM)])
            try:
                out, _ = listener.communicate(timeout=0.3)
                return out.strip()
            except subprocess.TimeoutExpired:
                continue
        raise AssertionError(f"upstream heard nothing from {vm}")
    finally:
        listener.kill()
        listener.wait()


def address(vm: Any) -> str:
    return str(vm.address.split("/")[0])


def test_vms_reach_upstream_each_other_and_a_floating_ip(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    wait_until(lambda: pings(cloud, "vm1", UPSTREAM), 20, "vm1 to reach upstream")
    wait_until(lambda: pings(cloud, "vm2", address(project["vm1"])), 20, "vm2 to reach vm1")
    # SNAT: upstream sees the router's gateway address, not the VM's.
    gateway = api.get(f"/v2.0/routers/{project['router']}").body["router"]
    gateway_ip = gateway["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    assert source_seen_by_upstream(cloud, "vm1") == gateway_ip
    port = next(p for p in api.get("/v2.0/ports").body["ports"] if p["name"] == "vm1")
    body = {"floatingip": {"floating_network_id": project["public"], "port_id": port["id"]}}
    floating = _created(api.post("/v2.0/floatingips", body), "floatingip")
    project["floating"] = floating["floating_ip_address"]
    wait_until(lambda: pings(cloud, "upstream", project["floating"]), 20,
               "upstream to reach vm1's floating IP")  # fmt: skip
    # With a floating IP, vm1's own connections leave with it.
    assert source_seen_by_upstream(cloud, "vm1") == project["floating"]


def test_metadata_proxy_answers_on_the_active_node_only(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    router = project["router"]
    url = "http://169.254.169.254/latest/meta-data/instance-id"
    answer = wait_until(
        lambda: cloud.exec("vm1", ["curl", "-sf", "--max-time", "2", url]).stdout.strip(),
        20, "vm1's metadata",
    )  # fmt: skip
    assert answer == project["vm1"].device_id
    active = active_hosts(api, router)

    def proxies_follow_states() -> bool:
        for place in places(api, router):
            status = json.loads(cloud.paths.agent_status(place["host"]).read_text())
            if status["routers"][router]["metadata_proxy"] != (place["host"] in active):
                return False
        return True

    wait_until(proxies_follow_states, 10, "each node's status: a proxy on the active one only")


def test_agents_serve_prometheus_metrics(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    """What an operator scrapes from a network node: routers by VRRP state, convergence
    time, sync errors; and ports from a compute node."""
    router = project["router"]
    active = active_hosts(api, router)[0]
    octet = int(active.removeprefix("net")) + 10
    text = cloud.exec("ctl", ["curl", "-sf", f"http://10.0.0.{octet}:9110/metrics"]).stdout
    assert 'hanet_agent_router_vrrp_state{state="MASTER"} 1.0' in text, text
    assert "hanet_agent_convergence_seconds_count" in text
    assert "hanet_agent_sync_errors_total 0.0" in text
    compute = cloud.exec("ctl", ["curl", "-sf", "http://10.0.0.21:9110/metrics"]).stdout
    assert 'hanet_agent_ports{state="plugged"} 1.0' in compute, compute


def test_agent_restart_loses_no_ping(cloud: Cloud, api: ApiClient, project: dict[str, Any]) -> None:
    router = project["router"]
    active = active_hosts(api, router)[0]
    before = vrrp_instance(cloud, active, router)
    pinger = probe(cloud, "vm1", UPSTREAM)
    try:
        for node in sorted(p["host"] for p in places(api, router)):
            cloud.restart_agent(node)
        # The restarted agents have read the whole state and converged: every place ready.
        wait_until(lambda: all(
            json.loads(cloud.paths.agent_status(p["host"]).read_text())["routers"]
            .get(router, {}).get("state") == "ready" for p in places(api, router)
        ), 30, "the restarted agents to adopt the router")  # fmt: skip
        time.sleep(0.5)  # probes after the adoption are part of the measure
    finally:
        pinger.stop()
    assert pinger.lost == 0
    after = vrrp_instance(cloud, active, router)
    assert after["state"] == "MASTER"
    assert after["transitions"] == before["transitions"]  # no fail-over, no flap
    assert active_hosts(api, router) == [active]


def test_server_link_cut_loses_no_ping_and_moves_nothing(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    router = project["router"]
    active = active_hosts(api, router)[0]
    hosts_before = sorted(p["host"] for p in places(api, router))
    transitions = vrrp_instance(cloud, active, router)["transitions"]
    pinger = probe(cloud, "vm1", UPSTREAM)
    try:
        cloud.cut_management(active)
        # The server declares the agent dead after agent_down_time and protects the router
        # on the spare node; the active place is kept (make before break).
        wait_until(lambda: not next(a for a in api.get("/v2.0/agents").body["agents"]
                                    if a["host"] == active)["alive"],
                   AGENT_DOWN_TIME + 10, f"{active}'s agent to be declared dead")  # fmt: skip
        wait_until(lambda: len([p for p in places(api, router) if p["alive"]]) == 3, 20,
                   "redundancy restored on the spare node")  # fmt: skip
        time.sleep(max(0.0, 10 - AGENT_DOWN_TIME))  # a cut of 10 s in all
        cloud.restore_management(active)
        wait_until(lambda: next(a for a in api.get("/v2.0/agents").body["agents"]
                                if a["host"] == active)["alive"], 20, f"{active} back")  # fmt: skip
        # Back within agent_gone_time: it keeps its place; the extra one is trimmed.
        wait_until(lambda: len(places(api, router)) == 3, 30, "the extra place trimmed")
    finally:
        pinger.stop()
    assert pinger.lost == 0
    assert active_hosts(api, router) == [active]
    assert vrrp_instance(cloud, active, router)["transitions"] == transitions
    assert active in {p["host"] for p in places(api, router)}
    del hosts_before


def test_split_brain_is_resolved_by_the_server(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    router = project["router"]
    active = active_hosts(api, router)[0]
    cloud.cut_vrrp(active)  # its adverts are lost; it still reaches the server and the VMs
    try:
        # Another node takes over; two report active; the server holds one in backup.
        def resolved() -> bool:
            states = {
                p["host"]: vrrp_instance(cloud, p["host"], router) for p in places(api, router)
            }
            masters = [h for h, s in states.items() if s.get("state") == "MASTER"]
            held = [h for h, s in states.items() if s.get("held")]
            return len(masters) == 1 and len(held) >= 1

        wait_until(resolved, 30, "the split brain to be resolved")
        wait_until(lambda: len(active_hosts(api, router)) == 1, 10, "one active in the API")
        events = api.get(f"/hanet/v1/routers/{router}/events").body["events"]
        assert any(e["kind"] == "split_brain_step_down" for e in events)
    finally:
        cloud.restore_vrrp(active)
    wait_until(lambda: pings(cloud, "vm1", UPSTREAM), 20, "vm1 to reach upstream")


def test_a_router_that_cannot_be_built_is_error_alone(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    # An external network on a physical network no node has an interface for.
    network = _created(api.post("/v2.0/networks", {"network": {
        "name": "nowhere", "router:external": True, "provider:network_type": "flat",
        "provider:physical_network": "nowhere",
    }}), "network")  # fmt: skip
    _created(api.post("/v2.0/subnets", {"subnet": {
        "network_id": network["id"], "cidr": "198.51.100.0/24", "ip_version": 4,
    }}), "subnet")  # fmt: skip
    bad = _created(api.post("/v2.0/routers", {"router": {
        "name": "bad", "ha": True, "external_gateway_info": {"network_id": network["id"]},
    }}), "router")  # fmt: skip
    status = wait_until(
        lambda: api.get(f"/v2.0/routers/{bad['id']}").body["router"]["status"] == "ERROR",
        30, "the router to be ERROR",
    )  # fmt: skip
    assert status
    events = api.get(f"/hanet/v1/routers/{bad['id']}/events").body["events"]
    assert any("nowhere" in (e.get("detail") or "") for e in events if e["kind"] == "agent_error")
    assert api.get(f"/v2.0/routers/{project['router']}").body["router"]["status"] == "ACTIVE"
    assert pings(cloud, "vm1", UPSTREAM)


def test_a_legacy_router_moves_off_a_dead_agent_which_stops_it(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    legacy = _created(api.post("/v2.0/routers", {"router": {
        "name": "legacy", "ha": False,
        "external_gateway_info": {"network_id": project["public"]},
    }}), "router")  # fmt: skip
    first = wait_until(lambda: [p["host"] for p in places(api, legacy["id"])], 10, "a place")[0]
    namespace = f"qrouter-{legacy['id']}@{cloud.prefix}-{first}"
    wait_until(lambda: namespace in cloud.exec(first, ["ip", "netns", "list"]).stdout, 20,
               "the legacy router's namespace")  # fmt: skip
    cloud.cut_management(first)
    try:
        moved = wait_until(
            lambda: [p["host"] for p in places(api, legacy["id"]) if p["host"] != first],
            AGENT_DOWN_TIME + 20, "the legacy router to move",
        )  # fmt: skip
        # The cut-off agent fenced itself: its copy is gone, so the router never runs twice.
        wait_until(lambda: namespace not in cloud.exec(first, ["ip", "netns", "list"]).stdout,
                   AGENT_DOWN_TIME + 10, "the fenced agent to stop its legacy router")  # fmt: skip
        assert moved[0] != first
    finally:
        cloud.restore_management(first)


def restart_vrrpd(cloud: Cloud, node: str) -> None:
    """SIGTERM to the node's vrrpd, as systemd's restart does, then start it again."""
    from hanet.lab import cloud_nodes

    with cloud._locked():
        cloud._reload()
        for record in cloud.state.processes_of(node, "vrrpd"):
            cloud_nodes.stop(record)
        cloud.state.forget_processes(node, "vrrpd")
        cloud._start_vrrpd(node)
    cloud._wait_vrrpd(node)


def test_vrrpd_restart_hands_over_and_the_agent_restores_its_routers(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    router = project["router"]
    wait_until(lambda: len(active_hosts(api, router)) == 1, 20, "one active node")
    active = active_hosts(api, router)[0]
    pinger = probe(cloud, "vm1", UPSTREAM)
    try:
        restart_vrrpd(cloud, active)
        # It stopped with priority 0: another node took over at once. Back, it gets its
        # instance from the agent (without a file or a reload) and stays backup.
        wait_until(lambda: vrrp_instance(cloud, active, router).get("state") == "BACKUP", 15,
                   f"{active}'s vrrpd to run the router again")  # fmt: skip
        others = [p["host"] for p in places(api, router) if p["host"] != active and p["alive"]]

        def masters_elsewhere() -> list[str]:
            return [h for h in others if vrrp_instance(cloud, h, router).get("state") == "MASTER"]

        masters = wait_until(lambda: len(masters_elsewhere()) == 1 and masters_elsewhere(), 10,
                             "exactly one other node to be master")  # fmt: skip
        wait_until(lambda: active_hosts(api, router) == masters, 10, "the API to follow")
    finally:
        pinger.stop()
    outage = pinger.outage()
    # A graceful hand-over: the backup takes over after Skew_Time, not Master_Down_Interval.
    assert outage is None or outage.lost < 30, outage


def test_a_rebooted_node_rejoins_as_backup_without_a_fail_over(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    router = project["router"]
    wait_until(lambda: len(active_hosts(api, router)) == 1, 20, "one active node")
    active = active_hosts(api, router)[0]
    standby = next(p["host"] for p in places(api, router) if p["host"] != active and p["alive"])
    transitions = vrrp_instance(cloud, active, router)["transitions"]
    pinger = probe(cloud, "vm1", UPSTREAM)
    moments = {"start": time.time()}
    try:
        moments["crash"] = cloud.crash(standby).at
        # A reboot: the node's router namespaces, bridges, VXLAN devices and taps are gone.
        cleaned = subprocess.run(
            [AGENT, "cleanup", "--host", f"{cloud.prefix}-{standby}",
             "--namespace", cloud.namespace(standby)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert cleaned.returncode == 0, cleaned.stderr
        moments["cleaned"] = time.time()
        cloud.recover(standby)
        moments["recovered"] = time.time()
        wait_until(lambda: vrrp_instance(cloud, standby, router).get("state") == "BACKUP", 30,
                   f"{standby} to run the router again")  # fmt: skip
    finally:
        pinger.stop()
    replies = pinger.replies
    gaps = [(round(a[1] - moments["crash"], 3), b[0] - a[0] - 1)
            for a, b in itertools.pairwise(replies) if b[0] - a[0] > 1]  # fmt: skip
    assert pinger.lost == 0, (gaps, {k: round(v - moments["crash"], 3) for k, v in moments.items()},
                              active, standby, diagnose(cloud, api, router))  # fmt: skip
    assert vrrp_instance(cloud, active, router)["transitions"] == transitions
    assert active_hosts(api, router) == [active]


def test_the_active_node_crashes_and_another_takes_over(
    cloud: Cloud, api: ApiClient, project: dict[str, Any]
) -> None:
    router = project["router"]
    wait_until(lambda: len(active_hosts(api, router)) == 1, 20, "one active node")
    active = active_hosts(api, router)[0]
    assert pings(cloud, "vm1", UPSTREAM), diagnose(cloud, api, router)
    masters = [p["host"] for p in places(api, router)
               if vrrp_instance(cloud, p["host"], router).get("state") == "MASTER"]  # fmt: skip
    assert masters == [active]
    pinger = probe(cloud, "vm1", UPSTREAM)
    back = Pinger(None, "upstream", project["floating"], 0.01,
                  namespace=cloud.namespace("upstream")).start().wait_answered()  # fmt: skip
    try:
        crash = cloud.crash(active)

        def new_master() -> str | None:
            """The node the API shows active, once vrrpd there says MASTER: a backup that
            was master for a moment, as several can be at a take-over, is not it."""
            shown = [h for h in active_hosts(api, router) if h != active]
            if len(shown) == 1 and vrrp_instance(cloud, shown[0], router).get("state") == "MASTER":
                return shown[0]
            return None

        after = wait_until(new_master, 15, "another node to be active", 0.02)
        seen = time.time()
        instance = vrrp_instance(cloud, after, router)
        took_over = instance.get("master_since")
        wait_until(lambda: pings(cloud, "vm1", UPSTREAM), 10, "pings to resume")
        time.sleep(0.5)
    finally:
        pinger.stop()
        back.stop()
    assert took_over is not None and took_over >= crash.at, (
        {k: instance.get(k) for k in ("state", "master_since", "transitions", "held")},
        after,
        crash.at,
        seen,
        places(api, router),
    )
    assert seen - took_over <= 1.0  # the API shows the new active within 1 s of the take-over
    outage = pinger.outage()
    assert outage is not None and outage.lost > 0, (pinger.lost, len(pinger.sent), crash)
    assert back.outage() is not None  # the floating IP answers again after the take-over
    # The dead agent is detected within agent_down_time, and the router is back on three
    # live agents (the spare took the place).
    wait_until(lambda: not next(a for a in api.get("/v2.0/agents").body["agents"]
                                if a["host"] == active)["alive"],
               AGENT_DOWN_TIME + 3, f"{active}'s agent to be declared dead")  # fmt: skip
    wait_until(lambda: len([p for p in places(api, router) if p["alive"]]) == 3, 30,
               "the router on three live agents")  # fmt: skip


def diagnose(cloud: Cloud, api: ApiClient, router: str) -> str:
    """What an operator would look at when a VM loses its router: places, VRRP states,
    the router namespaces' addresses."""
    lines = [json.dumps(places(api, router), indent=1)]
    for node in cloud.network_nodes:
        instance = vrrp_instance(cloud, node, router)
        lines.append(f"{node}: {instance.get('state')} held={instance.get('held')}")
        namespace = f"qrouter-{router}@{cloud.prefix}-{node}"
        lines.append(subprocess.run(["ip", "-n", namespace, "-br", "addr"], capture_output=True,
                                    text=True).stdout)  # fmt: skip
    return "\n".join(lines)
