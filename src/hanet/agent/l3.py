"""The L3 agent of a network node: follows the server's routers for this node, builds each
one (hanet.agent.routers), drives the node's single vrrpd with one declarative ``sync``,
reports HA states as vrrpd's events arrive, and runs each HA router's metadata proxy on
the active node only.

Order matters, as Neutron learnt the hard way:
- a router's VRRP instance joins its group only after its ports exist (a rebooted node
  never becomes a second master before its HA port is wired);
- a router leaving the node leaves vrrpd first (priority 0: the peer takes over at once)
  and only then loses its namespace;
- a router that cannot be built is put in ERROR alone; if it ran before, its instance keeps
  running as it was: a bad update never tears down a working data path;
- an agent that restarts adopts what runs: vrrpd keeps every instance (``sync`` with the
  same entries changes nothing), namespaces and proxies are converged, not re-created.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from hanet.agent.errors import RouterError
from hanet.agent.layout import RouterLayout, layout
from hanet.agent.metrics import AgentMetrics
from hanet.agent.render import instance_name, namespace_name, router_of
from hanet.agent.reporting import HaReporter, ha_state
from hanet.agent.routers import BuildError, RouterBuilder
from hanet.agent.server_api import ServerApi, ServerError, StateAnswer
from hanet.agent.session import ServerSession
from hanet.agent.settings import AgentSettings
from hanet.agent.status import StatusFile
from hanet.agent.vrrpd_client import VrrpdClient, VrrpdError, VrrpdRefused

log = logging.getLogger(__name__)

# vrrpd names the instance it refuses: "instance router-<id>: ..." (a change it cannot
# make) or "instances.router-<id>...: ..." (the request itself).
INSTANCE_IN_ERROR = re.compile(r"instances?[ .](router-[A-Za-z0-9-]+)")
SYNC_RETRIES = 20
STATUS_EVERY = 0.2
SYNC_WHILE_BUILDING = 2.0  # seconds
FENCED = "fenced: no contact with the server for longer than agent_down_time"


def _changed(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    """Whether a full read's document of a router says something new about it: not for a
    router the agent knew nothing of (its first read), nor for a change of ``ha_state``
    alone (what this agent reported)."""
    if before is None:
        return False
    return {**before, "ha_state": None} != {**after, "ha_state": None}


class L3Agent:
    def __init__(
        self,
        settings: AgentSettings,
        api: ServerApi,
        vrrpd: VrrpdClient,
        builder: RouterBuilder,
        metrics: AgentMetrics,
    ) -> None:
        self.settings, self.api, self.vrrpd, self.builder = settings, api, vrrpd, builder
        self.metrics = metrics
        self.node = settings.node()
        self.session = ServerSession(
            api, settings.host, settings.agent_type, self._configurations(), self._on_state
        )
        self.documents: dict[str, dict[str, Any]] = {}
        self.built: dict[str, RouterLayout] = {}  # the last layout built without error
        self.accepted: dict[str, RouterLayout] = {}  # HA routers as vrrpd last took them
        # Routers meant to run here that have no layout built yet in this agent's life (not
        # reached by a converge, or in error): vrrpd keeps what runs for them (sync's keep),
        # so that a restarted agent never stops a router it has not rebuilt yet.
        self.unresolved: set[str] = set()
        self.errors: dict[str, str] = {}
        self.reported_errors: dict[str, str | None] = {}
        self.vrrp_states: dict[str, str] = {}  # router: MASTER/BACKUP/FAULT, from vrrpd
        self.held: set[str] = set()
        self.fenced = False
        self.reporter = HaReporter(hold=settings.advert_int, interval=0.2)
        self.report_wakeup = asyncio.Event()
        self.proxies_due: dict[str, bool] = {}  # router: whether its proxy should run
        # A proxy starts once its router has stayed master this long (as Neutron waits
        # ha_vrrp_advert_int before acting on a new master): a router that flaps for a
        # while costs no haproxy runs.
        self.proxy_hold = max(settings.advert_int, 1.0)
        self.proxy_timers: dict[str, asyncio.TimerHandle] = {}
        self.proxy_wakeup = asyncio.Event()
        self.proxy_lock = asyncio.Lock()
        self.status_due = asyncio.Event()
        self.converging = asyncio.Lock()
        self.status = StatusFile(settings.run_dir / "status.json", settings.host, settings.mode)

    def _configurations(self) -> dict[str, Any]:
        s = self.settings
        return {
            "agent_mode": "legacy",
            "tunneling_ip": s.tunnel_address,
            "interface_mappings": s.physical_interfaces,
            "ha_vrrp_advert_int": s.advert_int,
            "vrrpd_socket": str(s.vrrpd_socket),
        }

    # Running -----------------------------------------------------------------------------

    async def run(self) -> None:
        tasks = [
            asyncio.create_task(self._vrrpd_events(), name="vrrpd-events"),
            asyncio.create_task(self.session.register(), name="register"),
            asyncio.create_task(self.session.heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self.session.poll_loop(), name="poll"),
            asyncio.create_task(self._report_loop(), name="report"),
            asyncio.create_task(self._fence_loop(), name="fence"),
            asyncio.create_task(self._proxy_loop(), name="proxies"),
            asyncio.create_task(self._status_loop(), name="status"),
        ]
        try:
            done, _ = await asyncio.wait(
                [t for t in tasks if t.get_name() != "register"],
                return_when=asyncio.FIRST_EXCEPTION,
            )
            for task in done:
                task.result()  # a loop that died is a bug: raise it, the process exits
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # The desired state -------------------------------------------------------------------

    async def _on_state(self, answer: StateAnswer) -> None:
        dirty: set[str] = set()
        # The masters among these announce their addresses again (see _announce): every
        # router the server resent, but of a full read only those whose document changed.
        # A full read says everything again whether it changed or not, and after a restart
        # the agent knows no document before it: the first one is no news (its masters
        # forward already), and 1,000 routers' GARPs at once lost a client's packets.
        resent: set[str] = set()
        previous = self.documents
        if answer.full:
            dirty |= set(self.documents) | set(self.built)
            self.documents = {}
        for document in answer.items:
            router = document["id"]
            if not answer.full or _changed(previous.get(router), document):
                resent.add(router)
            self.documents[router] = document
            dirty.add(router)
            if isinstance(document.get("ha_state"), str):
                self.reporter.assume_reported(router, document["ha_state"])
        for router in answer.removed:
            self.documents.pop(router, None)
            dirty.add(router)
        await self.converge(dirty, announce=resent)

    async def converge(self, routers: set[str], announce: set[str] | None = None) -> None:
        """Build or remove ``routers``; the masters among ``announce`` send their GARPs
        and NAs again once built."""
        async with self.converging:
            started = time.monotonic()
            await self._converge(routers, announce or set())
            self.metrics.convergence.observe(time.monotonic() - started)
            self._write_status()  # at once: the file shows what a converge did

    async def _converge(self, routers: set[str], announce: set[str]) -> None:
        leaving: dict[str, str] = {}
        self.unresolved |= routers
        synced = time.monotonic()
        for router in sorted(routers):
            document = self.documents.get(router)
            wanted = None
            try:
                if document is not None:
                    wanted = layout(document, self.node)
                    if wanted is not None and self.fenced and not wanted.ha:
                        wanted = None  # the server is moving it: it must not run twice
            except RouterError as exc:
                self._error(router, str(exc))
                continue
            if wanted is None:
                self.unresolved.discard(router)
                old = self.built.pop(router, None)
                leaving[router] = (
                    old.namespace
                    if old
                    else namespace_name(
                        router, self.node.host if self.node.shared_machine else None
                    )
                )
                self.errors.pop(router, None)
                continue
            try:
                changes = await self.builder.build(wanted)
            except (BuildError, RouterError) as exc:
                self._error(router, str(exc))
                continue
            if changes:
                log.info("router %s: %s", router, "; ".join(changes))
            self.built[router] = wanted
            self.unresolved.discard(router)
            self.errors.pop(router, None)
            if time.monotonic() - synced > SYNC_WHILE_BUILDING:
                # A long converge (a node's first read, or hundreds of routers at once):
                # what is built so far runs now, not after the last router.
                await self._sync()
                synced = time.monotonic()
        await self._sync()
        for router, namespace in leaving.items():
            try:
                async with self.proxy_lock:
                    removed = await self.builder.remove(router, namespace)
                if removed:
                    log.info("router %s: removed namespace %s", router, namespace)
            except BuildError as exc:
                self._error(router, str(exc))
            self.vrrp_states.pop(router, None)
            self.held.discard(router)
            self.reporter.forget(router)
        await self._holds()
        await self._announce(announce & routers)
        await self._follow_states(routers)
        if leaving:
            used = {p.network_id for built in self.built.values() for p in built.ports}
            try:
                await self.builder.remove_unused_networks(used)
            except Exception as exc:
                log.warning("removing unused networks: %s", exc)
        await self._report_errors()

    async def _announce(self, routers: set[str]) -> None:
        """A router whose document the server resent and that is master here announces its
        addresses again. The server resends a router when one of its places changes, as when
        it ends a split brain by holding the other master in backup: if that one had been
        seen last by hosts and bridges, this master's traffic would be lost until ARP caches
        expire (VRRP cannot tell this master: the path between them is what broke)."""
        for router in sorted(routers):
            built = self.built.get(router)
            if built is None or built.instance is None or self.vrrp_states.get(router) != "MASTER":
                continue
            try:
                await self.vrrpd.announce(built.instance.name)
            except VrrpdError as exc:
                log.warning("router %s: announce: %s", router, exc)

    async def _follow_states(self, routers: set[str]) -> None:
        """What vrrpd said before these routers were built here (after an agent restart,
        the snapshot comes before the server's state): their proxies follow their states,
        and the server hears of a state it was not told. Only the converged routers: the
        others' proxies and reports already follow vrrpd's events."""
        now = time.monotonic()
        for router in routers:
            built = self.built.get(router)
            state = self.vrrp_states.get(router)
            if built is None or built.instance is None or state is None:
                continue
            reported = ha_state(state)
            if reported is not None:
                self.reporter.observe(router, reported, now)
                self.report_wakeup.set()
            self._follow_metadata(router, state)

    def _follow_metadata(self, router: str, state: str) -> None:
        """The proxy follows the state, in the proxy task: starting a proxy takes two
        haproxy runs, and 1,000 take-overs must not wait for 1,000 of them to be reported.
        It starts after ``proxy_hold`` as master, and stops at once otherwise."""
        timer = self.proxy_timers.pop(router, None)
        if timer is not None:
            timer.cancel()
        if state == "MASTER":
            loop = asyncio.get_running_loop()
            self.proxy_timers[router] = loop.call_later(self.proxy_hold, self._proxy_due,
                                                        router, True)  # fmt: skip
        else:
            self._proxy_due(router, False)

    def _proxy_due(self, router: str, run: bool) -> None:
        if run:
            self.proxy_timers.pop(router, None)
        self.proxies_due[router] = run
        self.proxy_wakeup.set()

    async def _proxy_loop(self) -> None:
        while True:
            await self.proxy_wakeup.wait()
            self.proxy_wakeup.clear()
            while self.proxies_due:
                router, run = self.proxies_due.popitem()
                # Never with a removal under way: a proxy started in a namespace being
                # deleted would keep it alive, unseen.
                async with self.proxy_lock:
                    built = self.built.get(router)
                    if built is None:
                        continue
                    try:
                        if run:
                            await self.builder.start_metadata(router, built.namespace)
                        elif self.builder.metadata_running(router):
                            await self.builder.stop_metadata(router)
                    except Exception as exc:  # haproxy trouble must not stop the agent
                        log.error("router %s: metadata proxy: %s", router, exc)
                    self.status_due.set()

    def _error(self, router: str, reason: str) -> None:
        if self.errors.get(router) != reason:
            log.error("%s", reason)
        self.errors[router] = reason
        self.metrics.router_errors.inc()

    async def _sync(self) -> None:
        """Every built HA router's instance, in one request. vrrpd refuses a set with one
        bad instance whole: that router is put in ERROR and the rest is sent again."""
        instances = {
            built.instance.name: built.instance.entry
            for built in self.built.values()
            if built.instance is not None
        }
        keep = {instance_name(r) for r in self.unresolved if r not in self.built}
        for _ in range(SYNC_RETRIES):
            try:
                answer = await self.vrrpd.sync(instances, keep)
            except VrrpdRefused as exc:
                self.metrics.sync_errors.inc()
                found = INSTANCE_IN_ERROR.search(str(exc))
                router = router_of(found.group(1)) if found else None
                if router is None or instance_name(router) not in instances:
                    log.error("vrrpd refused the routers: %s", exc)
                    return
                self._error(router, f"router {router}: vrrpd: {exc}")
                name, previous = instance_name(router), self.accepted.get(router)
                entry = previous.instance.entry if previous and previous.instance else None
                if previous is not None and entry is not None and entry != instances[name]:
                    # An update refused: the instance runs on as vrrpd took it last.
                    instances[name] = entry
                    self.built[router] = previous
                    continue
                # Refused and nothing vrrpd took from this agent: what runs (if anything,
                # as an agent before a restart gave it) runs on.
                del instances[name]
                self.built.pop(router, None)
                self.unresolved.add(router)
                keep.add(name)
                continue
            except VrrpdError as exc:
                self.metrics.sync_errors.inc()
                log.warning("%s: routers not synced, retried with the next change", exc)
                return
            self.accepted = {r: b for r, b in self.built.items() if b.instance is not None}
            for key in ("added", "changed", "removed"):
                if answer.get(key):
                    log.info("vrrpd %s: %s", key, ", ".join(answer[key]))
            return

    async def _holds(self) -> None:
        """``forced_standby`` from the server's split-brain arbitration: a sticky hold in
        vrrpd while it lasts, released when the server lifts it."""
        for router, built in self.built.items():
            if built.instance is None:
                continue
            try:
                if built.forced_standby and router not in self.held:
                    await self.vrrpd.hold_backup(built.instance.name, "forced_standby")
                    self.held.add(router)
                    log.warning(
                        "router %s: held in backup (the server's split-brain order)", router
                    )
                elif not built.forced_standby and router in self.held:
                    await self.vrrpd.release(built.instance.name)
                    self.held.discard(router)
                    log.info("router %s: released from the hold", router)
            except VrrpdError as exc:
                log.warning("router %s: hold/release: %s", router, exc)

    async def _report_errors(self) -> None:
        changes: dict[str, str | None] = {}
        for router in set(self.reported_errors) | set(self.errors):
            now = self.errors.get(router) if router in self.documents else None
            if self.reported_errors.get(router) != now and router in self.documents:
                changes[router] = now[:255] if now else None
        if not changes or self.session.agent_id is None:
            return
        try:
            await self.api.router_errors(self.session.agent_id, changes)
            self.reported_errors.update(changes)
        except ServerError as exc:
            log.warning("cannot report router errors: %s", exc)

    # vrrpd's events ----------------------------------------------------------------------

    async def _vrrpd_events(self) -> None:
        """Follow vrrpd for the agent's life; when it goes away (restarted), wait for it and
        sync every instance again as soon as it is back."""
        delay = 0.2
        while True:
            try:
                async for event in self.vrrpd.subscribe():
                    delay = 0.2
                    try:
                        await self._vrrpd_event(event)
                    except Exception:  # one odd event must not end the agent's reports
                        log.exception("vrrpd event %s", event)
            except VrrpdError as exc:
                log.warning("%s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)  # vrrpd back: its routers are synced within 1 s

    async def _vrrpd_event(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        if event.get("event") == "snapshot":
            running = set()
            for item in event.get("instances", []):
                router = router_of(str(item.get("instance")))
                if router is not None:
                    running.add(router)
                    await self._state(router, str(item.get("state")), now)
                    if item.get("held"):
                        self.held.add(router)
            wanted = {r for r, b in self.built.items() if b.instance is not None}
            if wanted - running and self.session.registered.is_set():
                log.info("vrrpd lacks %d routers (restarted?): syncing", len(wanted - running))
                async with self.converging:
                    self.held -= wanted - running
                    await self._sync()
                    await self._holds()
        elif event.get("event") == "state":
            router = router_of(str(event.get("instance")))
            if router is not None:
                await self._state(router, str(event.get("new")), now)

    async def _state(self, router: str, state: str, now: float) -> None:
        previous = self.vrrp_states.get(router)
        self.vrrp_states[router] = state
        if state == previous:
            return
        self.status_due.set()
        self.metrics.set_states(self.vrrp_states)
        reported = ha_state(state)
        if reported is not None and router in self.documents:
            self.reporter.observe(router, reported, now)
            self.report_wakeup.set()
        if router in self.built:
            self._follow_metadata(router, state)

    # Reporting ---------------------------------------------------------------------------

    async def _report_loop(self) -> None:
        await self.session.registered.wait()
        while True:
            now = time.monotonic()
            report = self.reporter.take(now)
            if report is not None and self.session.agent_id is not None:
                try:
                    await self.api.ha_states(self.session.agent_id, report.body()["routers"])
                    self.reporter.sent(report)
                except ServerError as exc:
                    log.warning("cannot report HA states: %s", exc)
                    self.reporter.failed(report)
                    await asyncio.sleep(1.0)
                self.status_due.set()
                continue
            due = self.reporter.next_due(time.monotonic())
            self.report_wakeup.clear()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.report_wakeup.wait(), timeout)

    # Fencing -----------------------------------------------------------------------------

    async def _fence_loop(self) -> None:
        """Without the server for longer than agent_down_time, the server declares this
        agent dead and moves its legacy routers: stop them here, so that none runs twice
        (Patroni's primary demotes itself the same way). HA routers keep running: VRRP
        arbitrates them. Contact again means a full read, which rebuilds what is still ours."""
        while True:
            await asyncio.sleep(0.5)
            silent = self.session.silent_for()
            if not self.fenced and silent > self.settings.agent_down_time:
                legacy = {r for r, b in self.built.items() if not b.ha}
                log.warning(
                    "no contact with the server for %.0f s: %s legacy routers",
                    silent,
                    f"stopping {len(legacy)}",
                )
                self.fenced = True
                self.session.request_full()
                await self.converge(legacy)
            elif self.fenced and self.session.reachable and silent < 1.0:
                log.info("the server is back: legacy routers follow its state again")
                self.fenced = False
                self.session.request_full()
                self.session.restart_poll()

    # Status ------------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        """The status file follows converges, vrrpd's events and the proxies, rewritten at
        most every STATUS_EVERY: 1,000 take-overs are a few writes, not 1,000."""
        while True:
            await self.status_due.wait()
            self.status_due.clear()
            self._write_status()
            await asyncio.sleep(STATUS_EVERY)

    def _write_status(self) -> None:
        routers = {}
        for router in set(self.documents) | set(self.built) | set(self.errors):
            routers[router] = {
                "state": "error"
                if router in self.errors
                else "ready"
                if router in self.built
                else "pending",
                "error": self.errors.get(router),
                "vrrp": self.vrrp_states.get(router),
                "held": router in self.held,
                "metadata_proxy": self.builder.metadata_running(router),
            }
        self.metrics.set_routers(len(self.built), len(self.errors))
        self.status.write(
            agent_id=self.session.agent_id,
            registered=self.session.registered.is_set(),
            revision=self.session.revision,
            server_reachable=self.session.reachable,
            fenced=self.fenced,
            routers=routers,
        )
