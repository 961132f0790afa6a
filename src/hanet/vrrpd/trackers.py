"""Feeding tracked scripts, interfaces and files into the instances' priority and FAULT.

File instances track what keepalived.conf says; run-time instances added with the control
socket's version 1 track their interfaces (``control``), in their own namespace. One
netlink watcher per namespace follows every link there, for as long as an instance tracks
something in it.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hanet.keepalived.model import KeepalivedConfig, TrackRef
from hanet.vrrpd.scripts import CheckState, ScriptCheck, ScriptRefused, ScriptRunner
from hanet.vrrpd.tracking import (
    FileWatcher,
    InterfaceWatcher,
    Observations,
    Tracking,
    Weighted,
    evaluate,
)

if TYPE_CHECKING:
    from hanet.vrrpd.daemon import Vrrpd

log = logging.getLogger(__name__)


def default_script_user() -> tuple[str | None, str | None]:
    """keepalived runs scripts as keepalived_script when that user exists, else as root."""
    import pwd

    try:
        pwd.getpwnam("keepalived_script")
    except KeyError:
        return None, None
    return "keepalived_script", None


def tracking_for(model: KeepalivedConfig, name: str) -> Tracking:
    """keepalived's rules for what an instance tracks, with which weight."""
    spec = model.instances[name]
    group = next((g for g in model.sync_groups.values() if name in g.members), None)

    def script_ref(ref: TrackRef) -> Weighted:
        script = model.scripts[ref.name]
        if ref.weight is not None:
            return Weighted(ref.name, ref.weight, ref.reverse)
        return Weighted(ref.name, script.weight, script.weight_reverse)

    def file_ref(ref: TrackRef) -> Weighted:
        track = model.track_files[ref.name]
        if ref.weight is not None:
            return Weighted(ref.name, ref.weight, ref.reverse)
        return Weighted(ref.name, track.weight, track.weight_reverse)

    scripts = [script_ref(r) for r in spec.track_scripts]
    if group is not None:
        scripts += [script_ref(r) for r in group.track_scripts]
    interfaces = [Weighted(spec.interface or "")]  # keepalived tracks its own interface
    interfaces += [Weighted(r.name, r.weight or 0, r.reverse) for r in spec.track_interfaces]
    return Tracking(
        tuple(scripts),
        tuple(interfaces),
        tuple(file_ref(r) for r in spec.track_files),
        in_sync_group=group is not None,
    )


class Trackers:
    def __init__(self, daemon: Vrrpd, runner: ScriptRunner) -> None:
        self.daemon, self.runner = daemon, runner
        self.seen = Observations()
        self.tracking: dict[str, Tracking] = {}  # file instances
        self.control: dict[str, Tracking] = {}  # run-time instances
        self.control_in: dict[str | None, set[str]] = {}  # their names by namespace
        self.faults: dict[str, str | None] = {}
        self.checks: dict[str, tuple[Any, ScriptCheck]] = {}
        self.watchers: dict[str | None, InterfaceWatcher] = {}  # by namespace
        self.files: FileWatcher | None = None

    async def configure(self, model: KeepalivedConfig) -> None:
        """(Re)build from the model; checks whose definition did not change keep running."""
        g = model.global_defs
        self.runner.security = g.enable_script_security
        self.runner.user, self.runner.group = g.script_user or default_script_user()
        self.tracking = {n: tracking_for(model, n) for n in model.instances}
        for name in list(self.checks):
            if name not in model.scripts or self.checks[name][0] != model.scripts[name]:
                await self.checks.pop(name)[1].stop()
                self.seen.scripts_ok.pop(name, None)
        for name, script in model.scripts.items():
            if name not in self.checks:
                self._start_check(name, script)
        await self.watch({None})
        if self.files is not None:
            await self.files.stop()
        paths = {n: Path(t.file) for n, t in model.track_files.items() if t.file}
        for track in model.track_files.values():
            if track.init_file is not None and track.file:
                path = Path(track.file)
                if track.init_overwrite or not path.exists():
                    path.write_text(f"{track.init_file}\n")
        self.files = FileWatcher(paths, self._file_changed)
        self.files.start()
        self.reevaluate()

    def _start_check(self, name: str, script: Any) -> None:
        state = CheckState(script.rise, script.fall, ok=not script.init_fail)
        self.seen.scripts_ok[name] = state.ok
        try:
            argv = self.runner.prepare(script.command, script.user)
        except ScriptRefused as exc:
            log.error("vrrp_script %s refused: %s; it counts as failed", name, exc)
            self.runner.counters["refused"] += 1
            self.seen.scripts_ok[name] = False
            return
        timeout = script.timeout or script.interval
        check = ScriptCheck(
            name,
            argv,
            script.interval,
            timeout,
            state,
            self.runner,
            self._script_changed,
            script.user,
        )
        self.checks[name] = (script, check)
        check.start()

    def _script_changed(self, name: str, ok: bool) -> None:
        self.seen.scripts_ok[name] = ok
        self.reevaluate()

    def _interface_changed(self, netns: str | None, name: str, up: bool) -> None:
        if netns is None:
            self.seen.interfaces_up[name] = up
        else:
            self.seen.interfaces_in.setdefault(netns, {})[name] = up
        # Only the instances tracking that namespace: a node building routers sees a few
        # link events per router, and each one weighed every instance (O(routers²)).
        self.reevaluate_namespace(netns)

    async def watch(self, namespaces: set[str | None]) -> None:
        """Follow the links of these namespaces too (each one's first dump is done on
        return). All or nothing: on failure the watchers started here are stopped."""
        started: list[InterfaceWatcher] = []
        try:
            for netns in namespaces - set(self.watchers):
                watcher = InterfaceWatcher(netns, None, partial(self._interface_changed, netns))
                started.append(watcher)
                await watcher.start()
                self.watchers[netns] = watcher
                if netns is None:
                    self.seen.interfaces_up.update(watcher.state)
                else:
                    self.seen.interfaces_in[netns] = dict(watcher.state)
        except BaseException:
            for watcher in started:
                self.watchers.pop(watcher.netns, None)
                await _stop_watcher(watcher)
            raise

    async def set_control(self, tracking: dict[str, Tracking]) -> None:
        """What the run-time instances track now; watchers of namespaces nobody tracks
        any more are stopped (their sockets would keep a deleted namespace alive)."""
        self.control = dict(tracking)
        self.control_in = {}
        for name, item in self.control.items():
            self.control_in.setdefault(item.netns, set()).add(name)
        for name in set(self.faults) - set(self.tracking) - set(self.control):
            del self.faults[name]
        wanted = {None} | {t.netns for t in self.control.values()}
        for netns in set(self.watchers) - wanted:
            await _stop_watcher(self.watchers.pop(netns))
            if netns is not None:
                self.seen.interfaces_in.pop(netns, None)
        self.reevaluate()

    def _file_changed(self, name: str, value: int) -> None:
        self.seen.file_values[name] = value
        self.reevaluate()

    def reevaluate(self) -> None:
        """Priorities and faults of every instance from what is tracked."""
        self._reevaluate(set(self.tracking) | set(self.control))

    def reevaluate_namespace(self, netns: str | None) -> None:
        """Those of the instances that track ``netns``, and of their sync groups."""
        names = {n for n, t in self.tracking.items() if t.netns == netns}
        names |= self.control_in.get(netns, set())
        for group in self.daemon.model.sync_groups.values():
            if names & set(group.members):
                names |= set(group.members)
        self._reevaluate(names)

    def _reevaluate(self, names: set[str]) -> None:
        service = self.daemon.service
        if service is None:
            return
        model = self.daemon.model
        results = {}
        for name in names:
            if name in self.tracking and name in service.instances:
                base = model.instances[name].priority
                results[name] = evaluate(base, self.tracking[name], self.seen)
            elif name in self.control and name in service.instances:
                base = service.instances[name].config.priority
                results[name] = evaluate(base, self.control[name], self.seen)
        for group in model.sync_groups.values():
            # One member's fault is the whole group's.
            reasons = [results[m][1] for m in group.members if m in results and results[m][1]]
            for member in group.members:
                if member in results and reasons and not results[member][1]:
                    results[member] = (results[member][0], f"sync group {group.name}: {reasons[0]}")
        for name, (priority, fault) in results.items():
            service.set_priority(name, priority)
            # The machine too: an instance restarted by a change starts without a fault.
            faulty = service.instances[name].machine.faulty
            if self.faults.get(name) != fault or faulty != (fault is not None):
                self.faults[name] = fault
                service.set_fault(name, fault is not None, fault or "tracked objects recovered")

    def script_status(self) -> list[dict[str, object]]:
        return [check.status() for _, check in self.checks.values()]

    async def stop(self) -> None:
        for _, check in self.checks.values():
            await check.stop()
        for watcher in self.watchers.values():
            await _stop_watcher(watcher)
        self.watchers.clear()
        if self.files is not None:
            await self.files.stop()


async def _stop_watcher(watcher: InterfaceWatcher) -> None:
    with contextlib.suppress(Exception):  # one that failed to start has no socket
        await watcher.stop()
