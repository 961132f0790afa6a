"""``hanet vrrpd``: keepalived.conf in, VRRP out, for as many instances as the file holds.

It composes the runtime (VrrpService) with what keepalived adds around VRRP: tracked scripts,
interfaces and files, notify hooks, sync groups, reload on SIGHUP, a pid file and a control
socket. Reloads never half-apply: a bad file is reported and the running state stays.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hanet.keepalived.model import KeepalivedConfig
from hanet.runtime.changes import REFUSED, ChangeSet, apply_changes
from hanet.runtime.config import ConfigError, InstanceConfig
from hanet.runtime.instance import Instance
from hanet.runtime.service import VrrpService
from hanet.vrrp import State, StateChanged
from hanet.vrrpd.control import ControlServer, RequestError
from hanet.vrrpd.events import EventHub, Subscription
from hanet.vrrpd.metrics import MetricsServer
from hanet.vrrpd.paths import PidFile
from hanet.vrrpd.reader import load_in_child
from hanet.vrrpd.schema import InstanceSpec
from hanet.vrrpd.scripts import ScriptRunner, state_hook
from hanet.vrrpd.sync import SyncGroups
from hanet.vrrpd.trackers import Trackers
from hanet.vrrpd.tracking import Tracking

# What a change to the run-time instances is: the change set, and what each named
# instance tracks afterwards (None: nothing, or removed).
Plan = tuple[ChangeSet, dict[str, Tracking | None]]

log = logging.getLogger(__name__)


class Vrrpd:
    def __init__(
        self, config_path: Path, pid_file: Path, control_path: Path, metrics: str | None = None
    ) -> None:
        self.config_path = config_path
        self.metrics = MetricsServer(metrics, self.status) if metrics else None
        self.pid = PidFile(pid_file)
        self.control = ControlServer(control_path, self)
        self.service: VrrpService | None = None
        self.model = KeepalivedConfig()
        self.file_instances: set[str] = set()
        self.subscribers = EventHub(snapshot=self._snapshot)
        self.stopping = asyncio.Event()
        self.reload_lock = asyncio.Lock()
        self.reload_pending = False
        self.reload_tasks: set[asyncio.Task[None]] = set()
        self.hooks: dict[str, list[str]] = {}  # notify commands, checked once per reload
        self.runner = ScriptRunner()
        self.trackers: Trackers | None = None
        self.sync = SyncGroups(self)

    # Life cycle ----------------------------------------------------------------------------

    async def run(self, model: KeepalivedConfig, configs: list[InstanceConfig]) -> None:
        loop = asyncio.get_running_loop()
        self.model = model
        self.pid.acquire()
        try:
            await self.control.start()
            if self.metrics is not None:
                await self.metrics.start()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stopping.set)
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
            delay = model.global_defs.vrrp_startup_delay
            if delay:
                log.info("vrrp_startup_delay: waiting %s s", delay)
                await asyncio.wait([loop.create_task(self.stopping.wait())], timeout=delay)
            if self.stopping.is_set():
                return
            self.service = VrrpService(configs)
            self.service.listeners.append(self._on_state)
            self.service.want_listeners.append(self.sync.on_wants_master)
            self.trackers = Trackers(self, self.runner)
            # Known before start: the first transitions (INITIALIZE -> BACKUP) run notify_*.
            self.file_instances = {c.name for c in configs}
            await self.service.start()
            await self.trackers.configure(model)
            self.hooks.clear()  # prepared before configure set the script security rules
            log.info("hanet vrrpd: %d instances running", len(configs))
            await self.stopping.wait()
        finally:
            await self._shutdown()

    async def _shutdown(self) -> None:
        # A reload or control change under way is cancelled (it undoes itself); none may
        # start once the instances are being stopped.
        self.stopping.set()
        for task in list(self.reload_tasks):
            task.cancel()
        await asyncio.gather(*self.reload_tasks, return_exceptions=True)
        async with self.reload_lock:
            await self._stop_all()

    async def _stop_all(self) -> None:
        if self.trackers is not None:
            await self.trackers.stop()
        if self.service is not None:
            await self.service.stop()
        await self.control.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        self.pid.release()

    def _on_sighup(self) -> None:
        # A storm of SIGHUPs (Neutron's agents sent one per router change) must not queue
        # a reload each: one waiting reload reads the file as it is when its turn comes.
        if self.reload_pending or self.stopping.is_set():
            return
        self.reload_pending = True
        task = asyncio.get_running_loop().create_task(self.reload())
        self.reload_tasks.add(task)
        task.add_done_callback(self.reload_tasks.discard)

    async def reload(self) -> None:
        """SIGHUP: apply the file again, all or nothing. Unchanged instances keep state and
        mastership; a refused reload leaves everything running as it was."""
        async with self.reload_lock:
            self.reload_pending = False
            try:
                await self._reload()
            except REFUSED as exc:
                log.error("reload refused; the running configuration is unchanged:\n%s", exc)
            except Exception as exc:  # never an unretrieved task exception
                log.exception("reload refused; the running configuration is unchanged: %s", exc)

    async def _reload(self) -> None:
        if self.service is None or self.trackers is None:
            raise ConfigError("not running yet (vrrp_startup_delay): send SIGHUP once started")
        model, configs = await load_in_child(self.config_path)
        if self.stopping.is_set():
            raise ConfigError("the daemon is stopping")
        wanted = {c.name: c for c in configs}
        running = self.service.instances
        clash = (set(wanted) - self.file_instances) & set(running)
        if clash:
            raise ConfigError(f"{sorted(clash)[0]} exists as a run-time instance")
        # A file instance that a failed change could not restart is not running: this
        # reload starts it again rather than trying to change it.
        present = self.file_instances & set(running)
        changes = ChangeSet(
            add=tuple(c for name, c in wanted.items() if name not in present),
            change=tuple(
                c for name, c in wanted.items() if name in present and running[name].config != c
            ),
            remove=tuple(sorted(present - set(wanted))),
        )
        await apply_changes(self.service, changes)
        self._forget_holds()
        self.model = model
        self.file_instances = set(wanted)
        try:
            await self.trackers.configure(model)
        except Exception:  # the instances did change: say so, not "refused"
            log.exception("reloaded %s, but tracking could not be set up", self.config_path)
            return
        finally:
            self.hooks.clear()
        log.info("reloaded %s: %d instances", self.config_path, len(wanted))

    # Events --------------------------------------------------------------------------------

    def _on_state(self, instance: Instance, change: StateChanged) -> None:
        event = {
            "event": "state",
            "instance": instance.name,
            "old": change.old.name,
            "new": change.new.name,
            "reason": change.reason,
            "priority": instance.machine.priority,
        }
        self.subscribers.publish(event)
        self._notify(instance, change.new)
        self.sync.on_state(instance.name, change)

    def _notify(self, instance: Instance, state: State) -> None:
        spec = self.model.instances.get(instance.name)
        if spec is None or instance.name not in self.file_instances:
            return
        word = "STOP" if state is State.INITIALIZE else state.name
        args = ["INSTANCE", instance.name, word, str(instance.machine.priority)]
        self.run_hooks(state_hook(spec, word), spec.notify, args)

    def run_hooks(self, specific: str | None, generic: str | None, args: list[str]) -> None:
        for command, extra in ((specific, []), (generic, args)):
            if command is None:
                continue
            try:
                argv = self.hooks.get(command)
                if argv is None:  # checked once (script security stats paths, looks up users)
                    argv = self.hooks[command] = self.runner.prepare(command)
                self.runner.fire(argv + extra)
            except Exception as exc:
                self.runner.counters["refused"] += 1
                log.error("notify %r refused: %s", command, exc)

    # Control socket ------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        instances = self.service.status() if self.service is not None else []
        for entry in instances:
            entry["source"] = "file" if entry["name"] in self.file_instances else "control"
            if self.trackers is not None:
                entry["fault"] = self.trackers.faults.get(entry["name"])
        scripts = self.trackers.script_status() if self.trackers is not None else []
        return {
            "instances": instances,
            "scripts": scripts,
            "script_counters": dict(self.runner.counters),
            "control": self.subscribers.status(),
        }

    def _run_time(self, name: str) -> Instance:
        assert self.service is not None
        instance = self.service.instances.get(name)
        if instance is None or name in self.file_instances:
            raise RequestError(f"no run-time instance {name} (file instances change on reload)")
        return instance

    async def add_instance(self, name: str, entry: InstanceSpec) -> None:
        def plan() -> Plan:
            assert self.service is not None
            if name in self.service.instances:
                raise RequestError(f"instance {name} exists already")
            return ChangeSet(add=(entry.config,)), {name: entry.tracking}

        await self._apply(plan)

    async def change_instance(self, name: str, entry: InstanceSpec) -> None:
        def plan() -> Plan:
            self._run_time(name)
            return ChangeSet(change=(entry.config,)), {name: entry.tracking}

        await self._apply(plan)

    async def remove_instance(self, name: str) -> None:
        def plan() -> Plan:
            self._run_time(name)
            return ChangeSet(remove=(name,)), {name: None}

        await self._apply(plan)

    async def sync_instances(
        self, instances: dict[str, InstanceSpec], keep: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """``instances`` is the complete set of run-time instances: add, change and remove
        to match it, as one change; file instances are never touched, nor are the running
        instances named in ``keep``."""
        changes = ChangeSet()

        def plan() -> Plan:
            nonlocal changes
            assert self.service is not None
            files = sorted(set(instances) & self.file_instances)
            if files:
                raise RequestError(f"instances.{files[0]}: a file instance (sync manages the "
                                   "run-time instances only)")  # fmt: skip
            running = {n: i.config for n, i in self.service.instances.items()
                       if n not in self.file_instances}  # fmt: skip
            changes = ChangeSet(
                add=tuple(s.config for n, s in instances.items() if n not in running),
                change=tuple(
                    s.config
                    for n, s in instances.items()
                    if n in running and running[n] != s.config
                ),
                remove=tuple(sorted(set(running) - set(instances) - keep)),
            )
            tracking = {n: s.tracking for n, s in instances.items()}
            return changes, {**tracking, **dict.fromkeys(changes.remove)}

        await self._apply(plan)
        return {
            "added": sorted(c.name for c in changes.add),
            "changed": sorted(c.name for c in changes.change),
            "removed": list(changes.remove),
        }

    def hold(self, name: str, held: bool, reason: str) -> None:
        """Hold an instance in BACKUP until released; a restart (a change of identity)
        keeps the hold, removing the instance ends it."""
        self._ready()
        assert self.service is not None
        if name not in self.service.instances:
            raise RequestError(f"no instance {name}")
        if held:
            log.info("%s: held in BACKUP (%s)", name, reason or "no reason given")
        elif name in self.service.holds:
            log.info("%s: hold released", name)
        self.service.hold(name, held, reason)

    def announce(self, name: str) -> bool:
        """A master announces its addresses again (an agent asks after the server ended a
        split brain that VRRP itself could not see). False: not a master, nothing sent."""
        self._ready()
        assert self.service is not None
        if name not in self.service.instances:
            raise RequestError(f"no instance {name}")
        return self.service.announce(name)

    def _forget_holds(self) -> None:
        assert self.service is not None
        for name in set(self.service.holds) - set(self.service.instances):
            del self.service.holds[name]

    def _ready(self) -> None:
        if self.service is None or self.trackers is None:
            raise RequestError("not running yet (vrrp_startup_delay): try again once started")
        if self.stopping.is_set():
            raise RequestError("the daemon is stopping")

    async def _apply(self, plan: Callable[[], Plan]) -> None:
        """Plan and apply one change to the run-time instances, all or nothing: the
        namespaces their tracking needs are watched before anything running changes."""
        self._ready()
        async with self.reload_lock:  # one change to the running set at a time
            self._ready()
            assert self.service is not None and self.trackers is not None
            changes, tracking = plan()
            old = self.trackers.control
            new = {**old, **{n: t for n, t in tracking.items() if t is not None}}
            for name in [n for n, t in tracking.items() if t is None]:
                new.pop(name, None)
            try:
                await self.trackers.watch({t.netns for t in new.values()})
                await apply_changes(self.service, changes)
            except REFUSED as exc:
                await self.trackers.set_control(old)  # stops the watchers started for it
                raise RequestError(str(exc)) from None
            except BaseException:
                await self.trackers.set_control(old)
                raise
            self._forget_holds()
            await self.trackers.set_control(new)

    def _snapshot(self) -> dict[str, Any]:
        """Every instance's state, as of the event numbered ``seq``."""
        instances = []
        if self.service is not None:
            for name, instance in self.service.instances.items():
                machine = instance.machine
                instances.append({
                    "instance": name,
                    "state": machine.state.name,
                    "priority": machine.priority,
                    "held": machine.held,
                    "hold_reason": machine.hold_reason if machine.held else None,
                    "fault": self.trackers.faults.get(name) if self.trackers else None,
                    "source": "file" if name in self.file_instances else "control",
                })  # fmt: skip
        return {"event": "snapshot", "seq": self.subscribers.seq, "instances": instances}

    def subscribe(self, snapshots: bool = False) -> Subscription:
        return self.subscribers.subscribe(snapshots)

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.unsubscribe(subscription)
