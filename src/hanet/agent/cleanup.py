"""Remove what the agent made on a node, as neutron-netns-cleanup does for Neutron's agents.

What counts as the agent's is decided by name only, the names the agent itself uses:
router namespaces as ``hanet.agent.render.namespace_name`` makes them (``qrouter-<id>``,
or ``qrouter-<id>@<host>`` for one of several nodes on a machine), the processes inside
them, their NAT table (``hanet.linux.router_nat``), and the ``brq…``, ``vxlan-…`` and
``tap…`` devices of ``hanet.linux.l2`` in the node's own namespace. Nothing else is
touched: no other namespace, no device under another name.

``find`` looks, ``plan`` (pure) turns what was found into steps, ``execute`` runs them.
Each step is logged; a step that fails is reported and the others still run, so one stuck
device never leaves the rest behind. Run again, ``find`` comes back empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import netns

from hanet.agent.nat import TABLE
from hanet.agent.render import HOST, NAMESPACE_PREFIX, ROUTER_ID
from hanet.linux import l2, router_nat

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
TERM_GRACE = 5.0  # seconds between SIGTERM and SIGKILL, as neutron-netns-cleanup's --force


class CleanupError(ValueError):
    """Bad arguments: the message says which and why."""


# What was found ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouterNamespace:
    name: str
    router: str
    pids: tuple[int, ...] = ()
    nat_table: bool = False


@dataclass(frozen=True)
class Found:
    node_namespace: str | None  # None: this process's own
    routers: tuple[RouterNamespace, ...] = ()
    l2: l2.Inventory = field(default_factory=l2.Inventory)


def router_of_namespace(name: str, host: str | None) -> str | None:
    """The router id if ``name`` is a router namespace of this node, else None.

    With a host only ``qrouter-<id>@<host>`` is the node's; without one only ``qrouter-<id>``
    (what a node that does not share its machine makes), never another node's namespace.
    """
    if not name.startswith(NAMESPACE_PREFIX):
        return None
    router, at, suffix = name[len(NAMESPACE_PREFIX) :].partition("@")
    if not ROUTER_ID.match(router):
        return None
    if host is None:
        return router if not at else None
    return router if at and suffix == host else None


def check_host(host: str | None) -> None:
    if host is not None and not HOST.match(host):
        raise CleanupError(f"--host {host!r}: not a host name (letters, digits, '_.-', 1-64)")


# Planning (pure) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    action: str  # stop | nat | namespace | network | vxlan | tap
    namespace: str | None  # where it is done; None: this process's own namespace
    target: str  # a namespace or a device
    pids: tuple[int, ...] = ()
    vnis: tuple[int, ...] = ()

    def describe(self) -> str:
        where = f" in {self.namespace}" if self.namespace else ""
        if self.action == "stop":
            return f"stop processes {', '.join(map(str, self.pids))} in namespace {self.target}"
        if self.action == "nat":
            return f"delete nftables table ip {TABLE} in namespace {self.target}"
        if self.action == "namespace":
            return f"delete namespace {self.target}"
        if self.action == "network":
            vxlans = "".join(f" and {l2.vxlan_name(v)}" for v in self.vnis)
            return f"remove bridge {self.target}{vxlans} (and its taps){where}"
        if self.action == "vxlan":
            return f"remove VXLAN device {self.target}{where}"
        return f"remove tap {self.target}{where}"


def plan(found: Found) -> list[Step]:
    """The steps that remove everything found, in an order that works.

    Processes go first, so nothing holds a namespace once its name is gone; devices left on
    no bridge of ours are removed one by one after the bridges took their members.
    """
    steps: list[Step] = []
    for router in sorted(found.routers, key=lambda r: r.name):
        if router.pids:
            steps.append(Step("stop", None, router.name, pids=tuple(sorted(router.pids))))
        if router.nat_table:
            steps.append(Step("nat", None, router.name))
        steps.append(Step("namespace", None, router.name))
    ns = found.node_namespace
    inv = found.l2
    on_bridges: set[str] = set()
    for name in sorted(inv.bridges):
        bridge = inv.bridges[name]
        vnis = tuple(sorted(s.vni for s in inv.vxlans.values() if s.name in bridge.vxlans))
        on_bridges.update(bridge.vxlans)
        on_bridges.update(bridge.taps)
        steps.append(Step("network", ns, name, vnis=vnis))
    for vni in sorted(inv.vxlans):
        if inv.vxlans[vni].name not in on_bridges:
            steps.append(Step("vxlan", ns, inv.vxlans[vni].name, vnis=(vni,)))
    for tap in sorted(inv.taps):
        if tap not in on_bridges:
            steps.append(Step("tap", ns, tap))
    return steps


# Finding -------------------------------------------------------------------------------------


async def find(node_namespace: str | None, host: str | None) -> Found:
    """What the agent made on this node. Raises ``l2.L2Error`` if the node's namespace is
    missing."""
    check_host(host)
    names = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
    ours = [(n, r) for n in names if (r := router_of_namespace(n, host)) is not None]
    pids = netns.ns_pids() if ours else {}
    routers = []
    for name, router in ours:
        routers.append(
            RouterNamespace(name, router, tuple(sorted(pids.get(name, []))), await _has_nat(name))
        )
    inventory = await l2.inventory(node_namespace)
    return Found(node_namespace, tuple(routers), inventory)


async def _has_nat(namespace: str) -> bool:
    try:
        await router_nat.listing(namespace)
    except router_nat.NatApplyError:
        return False  # no such table (or no nft: then there is no table either)
    return True


# Doing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    step: Step
    error: str | None = None  # None: done


async def execute(steps: Iterable[Step]) -> list[Outcome]:
    """Run every step; a failure is logged and reported, and the next step runs anyway."""
    outcomes = []
    for step in steps:
        try:
            await _run(step)
        except Exception as exc:  # any failure of one step must not stop the others
            log.error("cleanup: %s: failed: %s", step.describe(), exc)
            outcomes.append(Outcome(step, str(exc) or type(exc).__name__))
        else:
            log.info("cleanup: %s: done", step.describe())
            outcomes.append(Outcome(step))
    return outcomes


async def _run(step: Step) -> None:
    if step.action == "stop":
        await _stop(step.target, step.pids)
    elif step.action == "nat":
        await router_nat.remove(step.target)
    elif step.action == "namespace":
        netns.remove(step.target)
    elif step.action == "network":
        network = step.target[len(l2.BRIDGE_PREFIX) :]  # the part of the id the name holds
        for vni in step.vnis or (None,):
            await l2.remove_network(step.namespace, network, vni)
    elif step.action == "vxlan":
        # l2 names a removal by network; the bridge this id would name is a brq… one, which
        # the network steps before this one removed already if it existed.
        await l2.remove_network(step.namespace, step.target, step.vnis[0])
    elif step.action == "tap":
        await l2.unplug_port(step.namespace, "-", step.target[len(l2.TAP_PREFIX) :])
    else:
        raise ValueError(f"unknown step {step.action!r}")


def _in_namespace(pid: int, namespace: str) -> bool:
    """Still a process of that namespace: a PID found earlier may have exited and been
    reused by a process we must not touch."""
    try:
        mine = os.stat(NETNS_DIR / namespace)
        theirs = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")  # a zombie has let go


async def _stop(namespace: str, pids: tuple[int, ...]) -> None:
    """SIGTERM, then SIGKILL for what is left after the grace time."""
    targets = [p for p in pids if _in_namespace(p, namespace)]
    for pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE
    while any(_alive(p) for p in targets) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stubborn = [p for p in targets if _alive(p) and _in_namespace(p, namespace)]
    for pid in stubborn:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if stubborn:
        log.warning("cleanup: killed %s in %s after %.0f s", stubborn, namespace, TERM_GRACE)


async def cleanup(
    node_namespace: str | None, host: str | None, dry_run: bool = False
) -> tuple[list[Step], list[Outcome]]:
    """Find, plan and (unless ``dry_run``) do; the steps and what became of each."""
    steps = plan(await find(node_namespace, host))
    if dry_run:
        for step in steps:
            log.info("cleanup (dry run): would %s", step.describe())
        return steps, []
    return steps, await execute(steps)
