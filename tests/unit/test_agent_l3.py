"""The L3 agent's decisions (hanet.agent.l3) on a faked node (tests/unit/agent_l3_node.py)
with a real hanet-server's router documents. What is checked is what an operator sees: the
order in which ports, VRRP and namespaces come and go, which router is in ERROR and why,
holds, announces, metadata proxies, HA state reports, fencing and the status file."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hanet.agent.errors import RouterError
from hanet.agent.layout import layout
from hanet.agent.render import AgentConfig
from hanet.agent.render import Node as AgentNode
from hanet.server.config import ServerConfig
from hanet.server.testing import ServerThread
from tests.unit.agent_l3_node import (
    Routers,
    build_routers,
    changes,
    full,
    instance,
    namespace,
    node,
    run,
    running,
    snapshot,
    state_event,
    stop,
    within,
)
from tests.unit.test_agent_layout import TOKENS, change

NODE = AgentNode("net0", shared_machine=True, config=AgentConfig(advert_int=0.1))
# The agents registered for the documents never heartbeat: on a loaded machine they were
# declared dead (3 s) and their routers moved before the documents were read.
NO_DEATHS = {"report_interval": 100.0, "agent_down_time": 600.0, "agent_gone_time": 1200.0}


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routers]:
    db: Path = tmp_path_factory.mktemp("l3") / "hanet.db"
    config = ServerConfig(db=f"sqlite:///{db}", auth="token", tokens=TOKENS, **NO_DEATHS)
    with ServerThread(config) as server:
        yield build_routers(server.client("admin-token"))


# Ordering -------------------------------------------------------------------------------


def test_a_new_ha_router_is_wired_before_it_joins_vrrp(routers: Routers, tmp_path: Path) -> None:
    a, b, c = routers.ha
    legacy = routers.legacy

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a, b, legacy))
        builds = [call[1] for call in n.calls("build")]
        assert sorted(builds) == sorted([a["id"], b["id"], legacy["id"]])
        # One sync with the HA routers (not the legacy one), after every build.
        assert n.calls("sync") == [("sync", {instance(a), instance(b)})]
        assert n.journal.index(n.calls("sync")[0]) > max(
            n.journal.index(call) for call in n.calls("build")
        )
        n.forget()
        await n.agent._on_state(changes(c))
        assert n.journal[:2] == [
            ("build", c["id"]),
            ("sync", {instance(a), instance(b), instance(c)}),
        ]

    run(scenario())


def test_a_router_leaves_vrrpd_before_its_namespace_goes(routers: Routers, tmp_path: Path) -> None:
    a, b, _ = routers.ha
    legacy = routers.legacy

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a, b, legacy))
        n.forget()
        await n.agent._on_state(changes(removed=(a["id"], legacy["id"])))
        assert n.journal[0] == ("sync", {instance(b)})
        assert sorted(n.journal[1:3]) == sorted(
            [("remove", a["id"], namespace(a)), ("remove", legacy["id"], namespace(legacy))]
        )
        # Networks no router here uses any more go, those of b stay.
        used = {port["network_id"] for port in (*b["interfaces"], b["gateway"], b["ha_port"])}
        assert n.calls("remove_unused_networks") == [("remove_unused_networks", used)]
        assert set(n.status()) == {b["id"]}

    run(scenario())


def test_a_full_state_without_a_router_removes_it(routers: Routers, tmp_path: Path) -> None:
    a, b, _ = routers.ha
    legacy = routers.legacy

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a, b, legacy))
        n.forget()
        await n.agent._on_state(full(b, revision=7))
        assert n.calls("sync") == [("sync", {instance(b)})]
        assert n.journal.index(n.calls("sync")[0]) < n.journal.index(
            ("remove", a["id"], namespace(a))
        )
        assert ("remove", legacy["id"], namespace(legacy)) in n.journal
        assert ("remove", b["id"], namespace(b)) not in n.journal
        assert set(n.status()) == {b["id"]}

    run(scenario())


# One router in ERROR, the others running ----------------------------------------------


def test_a_bad_document_puts_that_router_alone_in_error(routers: Routers, tmp_path: Path) -> None:
    a, b, _ = routers.ha
    legacy = routers.legacy
    bad = change(a, "interfaces.0.mtu", 0)
    with pytest.raises(RouterError) as caught:
        layout(bad, NODE)
    reason = str(caught.value)
    assert reason.startswith(f"router {a['id']}: interfaces[0].mtu: ")

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(bad, b, legacy))
        assert ("build", a["id"]) not in n.journal
        assert n.calls("sync") == [("sync", {instance(b)})]
        assert n.api.errors == [{a["id"]: reason}]
        status = n.status()
        assert status[a["id"]]["state"] == "error" and status[a["id"]]["error"] == reason
        assert status[b["id"]]["state"] == "ready" and status[b["id"]]["error"] is None
        assert status[legacy["id"]]["state"] == "ready"
        # Fixed by the server: built, synced, and the server hears the error is gone.
        n.forget()
        await n.agent._on_state(changes(a))
        assert n.journal[:2] == [("build", a["id"]), ("sync", {instance(a), instance(b)})]
        assert n.api.errors[-1] == {a["id"]: None}
        assert n.status()[a["id"]] | {"vrrp": None} == {
            "state": "ready", "error": None, "vrrp": None, "held": False,
            "metadata_proxy": False}  # fmt: skip

    run(scenario())


def test_a_build_error_puts_that_router_alone_in_error(routers: Routers, tmp_path: Path) -> None:
    a, b, _ = routers.ha
    legacy = routers.legacy

    async def scenario() -> None:
        n = await node(tmp_path)
        n.builder.failing[b["id"]] = "RTNETLINK answers: File exists"
        n.builder.failing[legacy["id"]] = "nft: syntax error"
        await n.agent._on_state(full(a, b, legacy))
        assert n.calls("sync") == [("sync", {instance(a)})]
        reason = f"router {b['id']}: build: RTNETLINK answers: File exists"
        assert n.api.errors == [
            {b["id"]: reason, legacy["id"]: f"router {legacy['id']}: build: nft: syntax error"}
        ]
        assert n.status()[b["id"]]["error"] == reason
        assert n.status()[a["id"]]["state"] == "ready"
        assert not n.calls("remove")  # a router that failed is left as it is, not removed

    run(scenario())


def test_a_bad_update_keeps_the_running_instance(routers: Routers, tmp_path: Path) -> None:
    """A router that ran: a document that cannot be laid out, or a build that fails, keeps
    its instance in vrrpd as it was (the data path stays), and the router is in ERROR."""
    a, b, _ = routers.ha
    route = [{"destination": "192.0.2.0/24", "nexthop": "10.0.0.9"}]

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a, b))
        before = copy.deepcopy(n.vrrpd.running[instance(a)])
        n.forget()
        await n.agent._on_state(changes(change(a, "ha_port.mtu", None)))
        assert n.calls("sync") == [("sync", {instance(a), instance(b)})]
        assert n.vrrpd.running[instance(a)] == before
        assert n.status()[a["id"]]["error"].startswith(f"router {a['id']}: ha_port.mtu: ")
        assert n.api.errors[-1] == {a["id"]: n.status()[a["id"]]["error"]}
        # The build of an update fails: the instance stays as it ran, not the new one
        # whose ports may not exist.
        n.builder.failing[a["id"]] = "no such device"
        n.forget()
        await n.agent._on_state(changes(a | {"routes": route}))
        assert n.calls("build") == [("build", a["id"])]
        assert n.vrrpd.running[instance(a)] == before
        assert n.status()[a["id"]]["error"] == f"router {a['id']}: build: no such device"
        assert not n.calls("remove")
        # Built at last: the new instance, with its route.
        del n.builder.failing[a["id"]]
        await n.agent._on_state(changes(a | {"routes": route}))
        assert n.vrrpd.running[instance(a)] != before
        assert n.status()[a["id"]]["state"] == "ready"
        assert n.api.errors[-1] == {a["id"]: None}

    run(scenario())


@pytest.mark.parametrize(
    "message",
    [
        # hanet.runtime.ownership: a change vrrpd cannot make.
        "instance {name}: vrid 7 on ha-0 in qrouter-x is in use by instance router-other",
        # hanet.vrrpd.daemon: a run-time instance named as one of vrrpd's file instances.
        "instances.{name}: a file instance (sync manages the run-time instances only)",
    ],
)
def test_vrrpd_refusing_one_instance_puts_that_router_alone_in_error(
    routers: Routers, tmp_path: Path, message: str
) -> None:
    a, b, c = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path)
        refusal = message.format(name=instance(b))
        n.vrrpd.refuse[instance(b)] = refusal
        await n.agent._on_state(full(a, b, c))
        # Refused whole, then the others again in the same converge.
        assert n.calls("sync") == [
            ("sync", {instance(a), instance(b), instance(c)}),
            ("sync", {instance(a), instance(c)}),
        ]
        assert set(n.vrrpd.running) == {instance(a), instance(c)}
        reason = f"router {b['id']}: vrrpd: {refusal}"
        assert n.api.errors == [{b["id"]: reason}]
        assert n.status()[b["id"]] | {"vrrp": None} == {
            "state": "error", "error": reason, "vrrp": None, "held": False,
            "metadata_proxy": False}  # fmt: skip
        # Another router's change does not bring the refused instance back.
        n.forget()
        await n.agent._on_state(changes(change(c, "enable_snat", False)))
        assert n.calls("sync") == [("sync", {instance(a), instance(c)})]

    run(scenario())


def test_vrrpd_refusing_an_update_keeps_the_running_instance(
    routers: Routers, tmp_path: Path
) -> None:
    """An update vrrpd refuses must not remove the instance it runs: the router is in
    ERROR, its data path stays as it was."""
    a, b, _ = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a, b))
        before = copy.deepcopy(n.vrrpd.running[instance(a)])
        refusal = f"instance {instance(a)}: vrid {a['vrid']} on ha-0 is in use by instance x"
        n.vrrpd.refuse[instance(a)] = refusal
        updated = a | {"routes": [{"destination": "192.0.2.0/24", "nexthop": "10.0.0.9"}]}
        await n.agent._on_state(changes(updated))
        assert n.vrrpd.running.get(instance(a)) == before
        assert n.status()[a["id"]]["error"] == f"router {a['id']}: vrrpd: {refusal}"
        assert not n.calls("remove")

    run(scenario())


def test_a_restarted_agent_keeps_an_instance_whose_update_vrrpd_refuses(
    routers: Routers, tmp_path: Path
) -> None:
    """After a restart the agent has no instance of its own to fall back on: vrrpd keeps the
    one an earlier agent gave it (sync's keep), and the router is in ERROR."""
    a, b, _ = routers.ha

    async def scenario() -> None:
        earlier = await node(tmp_path / "earlier")
        await earlier.agent._on_state(full(a, b))
        n = await node(tmp_path)
        n.vrrpd.running = copy.deepcopy(earlier.vrrpd.running)
        before = copy.deepcopy(n.vrrpd.running[instance(a)])
        refusal = f"instance {instance(a)}: vrid {a['vrid']} on ha-0 is in use by instance x"
        n.vrrpd.refuse[instance(a)] = refusal
        updated = a | {"routes": [{"destination": "192.0.2.0/24", "nexthop": "10.0.0.9"}]}
        await n.agent._on_state(full(updated, b))
        assert n.vrrpd.running.get(instance(a)) == before
        assert n.status()[a["id"]]["error"] == f"router {a['id']}: vrrpd: {refusal}"
        # Another router's change keeps it too; the router's removal removes it.
        await n.agent._on_state(changes(b))
        assert n.vrrpd.running.get(instance(a)) == before
        await n.agent._on_state(full(b))
        assert instance(a) not in n.vrrpd.running

    run(scenario())


def test_a_restarted_agent_never_stops_a_router_it_has_not_rebuilt_yet(
    routers: Routers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long first converge syncs vrrpd as it goes (every router it has built runs at
    once); the routers it has not reached yet run on as vrrpd has them."""
    import hanet.agent.l3

    a, b, _ = routers.ha
    monkeypatch.setattr(hanet.agent.l3, "SYNC_WHILE_BUILDING", -1.0)  # after every router

    async def scenario() -> None:
        earlier = await node(tmp_path / "earlier")
        await earlier.agent._on_state(full(a, b))
        n = await node(tmp_path)
        n.vrrpd.running = copy.deepcopy(earlier.vrrpd.running)
        await n.agent._on_state(full(a, b))
        assert len(n.vrrpd.ran) >= 2
        assert all(r == {instance(a), instance(b)} for r in n.vrrpd.ran), n.vrrpd.ran

    run(scenario())


# Holds ----------------------------------------------------------------------------------


def test_forced_standby_holds_once_and_releases_once(routers: Routers, tmp_path: Path) -> None:
    a, b, _ = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a | {"forced_standby": True}, b))
        held = ("hold_backup", instance(a), "forced_standby")
        assert n.calls("hold_backup") == [held]
        # Held once the instance is in vrrpd: a hold of an unknown instance is refused.
        assert n.journal.index(held) > n.journal.index(n.calls("sync")[0])
        assert n.status()[a["id"]]["held"] and not n.status()[b["id"]]["held"]
        await n.agent._on_state(changes(a | {"forced_standby": True}, b))
        assert n.calls("hold_backup") == [held] and not n.calls("release")
        await n.agent._on_state(changes(a))
        await n.agent._on_state(changes(a, b))
        assert n.calls("release") == [("release", instance(a))]
        assert n.calls("hold_backup") == [held]
        assert not n.status()[a["id"]]["held"]

    run(scenario())


def test_a_master_whose_document_comes_again_announces_itself(
    routers: Routers, tmp_path: Path
) -> None:
    """The server resends a router when it ends a split brain (the other master held):
    the master here sends its GARPs again, once the hold and the sync are done."""
    a, b, _ = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a, b))
        await n.agent._vrrpd_event(snapshot((a, "MASTER", False), (b, "BACKUP", False)))
        n.forget()
        await n.agent._on_state(changes(a, b))
        assert n.calls("announce") == [("announce", instance(a))]
        assert n.journal.index(("announce", instance(a))) > n.journal.index(n.calls("sync")[0])
        n.forget()
        await n.agent._on_state(changes(b))  # a's document did not come: nothing to say
        assert not n.calls("announce")

    run(scenario())


def test_a_full_read_announces_only_the_routers_whose_document_changed(
    routers: Routers, tmp_path: Path
) -> None:
    """A restarted agent's first full read is no news: its masters forward already. Every
    master announcing at once (garp_repeat rounds each, each GARP copied to every port of
    the public network's bridge) overflowed the kernel's backlog at 1,000 routers and lost
    a client's probes (bench.cloud's agent restart). A later full read (fencing lifted, a
    new registration) announces the routers whose document changed meanwhile only."""
    a, b, _ = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._vrrpd_event(snapshot((a, "MASTER", False), (b, "MASTER", False)))
        await n.agent._on_state(full(a, b))
        assert n.calls("build") and n.calls("sync")
        assert not n.calls("announce")
        await n.agent._on_state(full(a | {"ha_state": "active"}, b, revision=5))
        assert not n.calls("announce")  # what the server was told is not a change
        await n.agent._on_state(full(a, b | {"name": "renamed"}, revision=6))
        assert n.calls("announce") == [("announce", instance(b))]
        n.forget()
        await n.agent._on_state(changes(a, revision=7))  # a resend announces, as before
        assert n.calls("announce") == [("announce", instance(a))]

    run(scenario())


def test_a_restarted_agent_adopts_vrrpd_holds(routers: Routers, tmp_path: Path) -> None:
    """vrrpd's snapshot comes before the server's state: a router it holds is not held a
    second time, and one whose hold the server lifted meanwhile is released."""
    a, b, _ = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._vrrpd_event(snapshot((a, "BACKUP", True), (b, "BACKUP", True)))
        await n.agent._on_state(full(a | {"forced_standby": True}, b))
        assert not n.calls("hold_backup")
        assert n.calls("release") == [("release", instance(b))]
        assert n.status()[a["id"]]["held"] and not n.status()[b["id"]]["held"]

    run(scenario())


# vrrpd's events -------------------------------------------------------------------------


def test_the_metadata_proxy_runs_on_the_master_only(routers: Routers, tmp_path: Path) -> None:
    a, b, _ = routers.ha
    stranger = change(a, "id", "0" * 36)

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a, b))
        proxies = await running(n.agent._proxy_loop)
        n.forget()
        await n.agent._vrrpd_event(state_event(b, "FAULT"))  # none ran: nothing to stop
        await n.agent._vrrpd_event(state_event(stranger, "MASTER"))  # not built here
        await n.agent._vrrpd_event(state_event(a, "MASTER"))
        assert await within(n.builder.proxy_calls.get()) == (
            "start_metadata", a["id"], namespace(a))  # fmt: skip
        await n.agent._vrrpd_event(state_event(a, "BACKUP"))
        assert await within(n.builder.proxy_calls.get()) == ("stop_metadata", a["id"])
        assert n.journal == [("start_metadata", a["id"], namespace(a)), ("stop_metadata", a["id"])]
        await n.agent._on_state(changes(a, b))
        status = n.status()
        assert (status[a["id"]]["vrrp"], status[a["id"]]["metadata_proxy"]) == ("BACKUP", False)
        assert (status[b["id"]]["vrrp"], status[b["id"]]["metadata_proxy"]) == ("FAULT", False)
        await stop(proxies)

    run(scenario())


def test_a_master_that_does_not_last_starts_no_proxy(routers: Routers, tmp_path: Path) -> None:
    """A router master for less than the hold (a flap) costs no haproxy run."""
    a, b, _ = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a, b))
        proxies = await running(n.agent._proxy_loop)
        n.forget()
        n.agent.proxy_hold = 3600.0  # a's hold never ends within the test
        await n.agent._vrrpd_event(state_event(a, "MASTER"))
        await n.agent._vrrpd_event(state_event(a, "BACKUP"))
        assert n.agent.proxy_timers == {}  # a's start was called off
        n.agent.proxy_hold = 0.0
        await n.agent._vrrpd_event(state_event(b, "MASTER"))
        assert await within(n.builder.proxy_calls.get()) == (
            "start_metadata", b["id"], namespace(b))  # fmt: skip
        assert n.journal == [("start_metadata", b["id"], namespace(b))]  # a's never started
        await stop(proxies)

    run(scenario())


def test_a_snapshot_before_the_state_starts_the_masters_proxy(
    routers: Routers, tmp_path: Path
) -> None:
    """A restarted agent hears vrrpd's snapshot first: once the router is built, its
    proxy follows the state vrrpd gave."""
    a, b, _ = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path)
        proxies = await running(n.agent._proxy_loop)
        await n.agent._vrrpd_event(snapshot((a, "MASTER", False), (b, "BACKUP", False)))
        assert n.journal == []  # nothing is built yet: nothing to run, nothing synced
        await n.agent._on_state(full(a, b))
        assert await within(n.builder.proxy_calls.get()) == (
            "start_metadata", a["id"], namespace(a))  # fmt: skip
        assert n.builder.proxies == {a["id"]}
        assert n.agent.reporter.waiting == 1  # a's active, b's standby the server shows
        await stop(proxies)

    run(scenario())


def test_ha_states_are_reported_active_after_the_hold(routers: Routers, tmp_path: Path) -> None:
    a, b, c = routers.ha
    stranger = change(a, "id", "0" * 36)

    async def scenario() -> None:
        n = await node(tmp_path, advert_int=0.05)
        await n.agent._on_state(full(a, b, c))
        reporting = await running(n.agent._report_loop)
        await n.agent._vrrpd_event(state_event(stranger, "MASTER"))  # not a router of ours
        await n.agent._vrrpd_event(state_event(b, "FAULT"))
        assert await within(n.api.reports.get()) == {b["id"]: "fault"}
        await n.agent._vrrpd_event(state_event(a, "MASTER"))
        assert await within(n.api.reports.get()) == {a["id"]: "active"}
        # BACKUP is what the server shows already (the documents' ha_state): not sent.
        assert c["ha_state"] == "standby"
        await n.agent._vrrpd_event(state_event(c, "BACKUP"))
        await n.agent._vrrpd_event(state_event(a, "BACKUP"))
        assert await within(n.api.reports.get()) == {a["id"]: "standby"}
        assert n.agent.reporter.waiting == 0
        assert n.api.reports.empty()
        assert stranger["id"] not in n.agent.reporter.reported
        assert stranger["id"] not in n.builder.proxies
        await stop(reporting)

    run(scenario())


def test_an_active_shorter_than_the_hold_is_not_reported(routers: Routers, tmp_path: Path) -> None:
    a, b, _ = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path, advert_int=30.0)
        await n.agent._on_state(full(a | {"ha_state": None}, b))
        reporting = await running(n.agent._report_loop)
        # Every backup is master for a moment while the old master goes.
        await n.agent._vrrpd_event(state_event(a, "MASTER"))
        await n.agent._vrrpd_event(state_event(b, "FAULT"))  # reported at once, a is held
        assert await within(n.api.reports.get()) == {b["id"]: "fault"}
        await n.agent._vrrpd_event(state_event(a, "BACKUP"))
        assert await within(n.api.reports.get()) == {a["id"]: "standby"}
        assert n.agent.reporter.waiting == 0  # the active is never sent
        await stop(reporting)

    run(scenario())


def test_vrrpd_restarted_without_the_instances_is_synced_again(
    routers: Routers, tmp_path: Path
) -> None:
    a, b, _ = routers.ha

    async def scenario() -> None:
        n = await node(tmp_path)
        await n.agent._on_state(full(a, b | {"forced_standby": True}))
        await n.agent._vrrpd_event(snapshot((a, "MASTER", False), (b, "BACKUP", True)))
        n.forget()
        await n.agent._vrrpd_event(snapshot((a, "MASTER", False), (b, "BACKUP", True)))
        assert n.journal == []  # all there: nothing to do
        n.vrrpd.running = {}
        await n.agent._vrrpd_event(snapshot())  # vrrpd restarted empty
        assert n.journal == [
            ("sync", {instance(a), instance(b)}),
            ("hold_backup", instance(b), "forced_standby"),  # its hold went with vrrpd
        ]
        assert set(n.vrrpd.running) == {instance(a), instance(b)}

    run(scenario())


# Fencing --------------------------------------------------------------------------------


def test_fencing_stops_legacy_routers_and_keeps_ha_ones(routers: Routers, tmp_path: Path) -> None:
    a, _, _ = routers.ha
    legacy = routers.legacy

    async def scenario() -> None:
        n = await node(tmp_path, agent_down_time=1.0)
        await n.agent._on_state(full(a, legacy))
        session = n.agent.session
        session.revision = 5
        session.last_contact = time.monotonic() - 10  # the server silent for 10 s
        requested = asyncio.Event()
        request_full = session.request_full

        def asked() -> None:
            request_full()
            requested.set()

        session.request_full = asked  # type: ignore[method-assign]
        n.forget()
        fencing = await running(n.agent._fence_loop)
        await within(n.builder.removed.wait())
        assert n.calls("remove") == [("remove", legacy["id"], namespace(legacy))]
        assert n.calls("sync") == [("sync", {instance(a)})]  # the HA router runs on
        assert n.agent.fenced and session.revision is None  # a full read next
        status = json.loads(n.status_path.read_text())
        assert status["fenced"] and set(status["routers"]) == {a["id"], legacy["id"]}
        # The legacy router changes while fenced: still not built (the server moves it).
        await n.agent._on_state(changes(legacy, a))
        assert n.calls("build") == [("build", a["id"])]
        # The server is back: a full read is asked for, which builds the legacy router.
        requested.clear()
        session.revision = 6
        session.contact()
        await within(requested.wait())
        assert not n.agent.fenced and session.revision is None
        await n.agent._on_state(full(a, legacy, revision=9))
        assert ("build", legacy["id"]) in n.journal
        assert n.status()[legacy["id"]]["state"] == "ready"
        await stop(fencing)

    run(scenario())
