"""The asyncio VRRP service: many instances in one process, each on an interface of a namespace.

Instances that share (namespace, interface, family) share one raw socket. The protocol itself
is hanet.vrrp.VrrpMachine; this module owns the clock, the sockets and netlink, and turns the
machine's actions into packets and addresses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from hanet.linux import accept_filter, announce_socket
from hanet.runtime import placement
from hanet.runtime.announcing import Announcements
from hanet.runtime.changes import ChangeSet, apply_changes
from hanet.runtime.config import ConfigError, InstanceConfig
from hanet.runtime.droplog import RECEIVE_BUFFER_OVERFLOW
from hanet.runtime.instance import Instance
from hanet.runtime.link import Link
from hanet.runtime.netlink_worker import NetlinkWorker
from hanet.runtime.ownership import AddressKey, address_keys, check_instance_set, identity
from hanet.runtime.scheduler import SLACK, Scheduler
from hanet.vrrp import (
    AdvertReceived,
    AnnounceAddresses,
    DecodeError,
    FaultChanged,
    ForceState,
    HoldBackup,
    PriorityChanged,
    ReleaseAddresses,
    SendAdvert,
    Shutdown,
    Startup,
    State,
    StateChanged,
    TakeAddresses,
    Timeout,
    WantsMaster,
    decode_ip_packet,
    drop_reason,
    identity_key,
)
from hanet.vrrp.receive import VRID_NOT_OURS

log = logging.getLogger(__name__)

RECEIVE_BATCH = 256  # packets per wake-up and link
TIMEOUT = Timeout()

Listener = Callable[["Instance", StateChanged], None]
WantListener = Callable[["Instance"], None]
LinkKey = tuple[str | None, str, int]


class VrrpService:
    def __init__(self, configs: list[InstanceConfig]) -> None:
        self.configs = configs
        self.links: dict[LinkKey, Link] = {}
        self.instances: dict[str, Instance] = {}
        self.listeners: list[Listener] = []
        self.want_listeners: list[WantListener] = []  # sync groups (hanet.vrrpd.sync)
        self.loop: asyncio.AbstractEventLoop | None = None
        # Who holds each address; hanet.runtime.changes keeps it to one owner per address.
        self.owners: dict[AddressKey, str] = {}
        # Links a change set opened ahead: kept open while their instances are replaced.
        self.pinned: set[LinkKey] = set()
        # Instances held in BACKUP, by name, with the reason: a hold outlives a restart of
        # its instance (a change of identity), so it is kept here, not only in the machine.
        self.holds: dict[str, str] = {}
        self._scheduler: Scheduler | None = None
        self._announcements: Announcements | None = None
        self.netlink = NetlinkWorker()  # netlink waits for the kernel's RTNL lock there

    # Start, stop and changes at run time --------------------------------------------------

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = Scheduler(asyncio.get_running_loop(), self._on_due)  # type: ignore[arg-type]
        return self._scheduler

    @property
    def announcements(self) -> Announcements:
        if self._announcements is None:
            self._announcements = Announcements(asyncio.get_running_loop(), self.instances)
        return self._announcements

    async def start(self) -> None:
        """Open every socket, then start every instance. Nothing starts if one fails."""
        self.loop = asyncio.get_running_loop()
        check_instance_set(self.configs)
        await self.add_many(self.configs)

    async def stop(self) -> None:
        """Graceful stop: every master sends priority 0 and removes its addresses."""
        for name in list(self.instances):
            await self.remove(name)
        self.close()
        await announce_socket.closed()  # packet sockets close on threads (announce_socket)

    async def add(self, config: InstanceConfig) -> Instance:
        (instance,) = await self.add_many([config])
        return instance

    async def add_many(self, configs: list[InstanceConfig]) -> list[Instance]:
        """All or nothing: if one cannot be opened, none of them starts."""
        prepared: list[Instance] = []
        try:
            for config in configs:
                if config.name in self.instances:
                    raise ConfigError(f"instance {config.name} exists already")
                prepared.append(await self._prepare(config))
        except BaseException:
            for instance in prepared:
                await self._dismantle(instance)
            raise
        for instance in prepared:
            self._begin(instance)
        return prepared

    async def remove(self, name: str) -> None:
        """Stop one instance as a graceful stop would (priority 0 if master)."""
        instance = self.instances[name]
        assert self.loop is not None
        self._apply(instance, instance.machine.handle(Shutdown(), self.loop.time()))
        self.scheduler.cancel(instance)
        instance.cancel_announcements()
        await self._settle(instance)
        await self._dismantle(instance)

    async def update(self, config: InstanceConfig) -> None:
        """Apply a changed configuration. If the instance's identity on the wire is the same
        it keeps its state (a reload never forfeits mastership); otherwise it restarts. All
        or nothing: see hanet.runtime.changes."""
        await apply_changes(self, ChangeSet(change=(config,)))

    async def update_in_place(self, config: InstanceConfig) -> None:
        """A change that keeps the instance's identity on the wire, and so its state."""
        instance = self.instances[config.name]
        old = instance.config
        assert identity(old) == identity(config)
        await self._settle(instance)
        if old.filters_traffic:
            await accept_filter.remove(old.netns, instance.filter_chain)
        self._disown(instance)
        instance.reconfigure(config)
        if old.vrid_filter != config.vrid_filter:
            instance.link.refresh_filter()
        self._own(instance)
        instance.link.accepted.clear()
        if old.priority != config.priority:
            self.set_priority(config.name, config.priority)  # trackers may refine it
        if config.filters_traffic:
            await accept_filter.install(config.netns, instance.filter_chain, config.addresses)
        if instance.has_addresses:
            gone_vips = self._unowned(instance, (v for v in old.vips if v not in config.vips))
            gone_routes = tuple(r for r in old.routes if r not in config.routes)
            gone_rules = tuple(r for r in old.rules if r not in config.rules)
            errors = instance.counters.errors
            await placement.apply(instance.link, old.interface, gone_vips, gone_routes,
                                  gone_rules, False, errors)  # fmt: skip
            await placement.apply(instance.link, config.interface, config.vips, config.routes,
                                  config.rules, True, errors)  # fmt: skip

    def set_priority(self, name: str, priority: int) -> None:
        instance = self.instances[name]
        assert self.loop is not None
        self._apply(instance, instance.machine.handle(PriorityChanged(priority), self.loop.time()))

    def force(self, name: str, state: State, reason: str) -> None:
        instance = self.instances[name]
        assert self.loop is not None
        self._apply(instance, instance.machine.handle(ForceState(state, reason), self.loop.time()))

    def hold(self, name: str, held: bool, reason: str = "") -> None:
        """Hold ``name`` in BACKUP until released (see hanet.vrrp.HoldBackup)."""
        instance = self.instances[name]
        assert self.loop is not None
        if held:
            self.holds[name] = reason
        else:
            self.holds.pop(name, None)
        event = HoldBackup(held, reason)
        self._apply(instance, instance.machine.handle(event, self.loop.time()))

    def announce(self, name: str) -> bool:
        """Send a master's gratuitous ARPs / unsolicited NAs again, as at take-over."""
        instance = self.instances[name]
        if instance.machine.state is not State.MASTER or not instance.has_addresses:
            return False
        self.announcements.send(instance, instance.config.garp_repeat)
        return True

    def set_fault(self, name: str, faulty: bool, reason: str) -> None:
        instance = self.instances[name]
        assert self.loop is not None
        event = FaultChanged(faulty, reason)
        self._apply(instance, instance.machine.handle(event, self.loop.time()))

    async def open_links(self, configs: list[InstanceConfig]) -> set[LinkKey]:
        """Open, and pin, every link these instances need that is not open yet: a change
        set checks interfaces, namespaces and sockets before it changes anything running.
        On failure the links it opened are closed again and nothing else has changed."""
        pinned: set[LinkKey] = set()
        try:
            for config in configs:
                # Pinned even when open already: an instance that restarts on its link
                # (a new VRID, say) must not close it on the way and open it again.
                key = (config.netns, config.interface, config.family)
                await self._link_for(config)
                self.pinned.add(key)
                pinned.add(key)
        except BaseException:
            self.unpin(pinned)
            raise
        return pinned

    def unpin(self, keys: set[LinkKey]) -> None:
        """Let go of pinned links; one that no instance ended up using is closed."""
        self.pinned -= keys
        for key in keys:
            link = self.links.get(key)
            if link is not None and not link.instances:
                self._close_link(link)

    async def _link_for(self, config: InstanceConfig) -> Link:
        assert self.loop is not None
        key = (config.netns, config.interface, config.family)
        link = self.links.get(key)
        if link is None:
            link = Link(*key, self.netlink)
            try:
                await link.open(self._all_vips(config))
            except BaseException:
                link.close()
                raise
            self.links[key] = link
            assert link.socket is not None
            self.loop.add_reader(link.socket.fileno(), self._on_readable, link)
        return link

    async def _prepare(self, config: InstanceConfig) -> Instance:
        """Open what the instance needs; on failure nothing of it is left."""
        link = await self._link_for(config)
        if config.vrid in link.instances:
            raise ConfigError(f"vrid {config.vrid} on {config.interface} is in use")
        instance = Instance(config, link)
        if config.name in self.holds:  # before Startup: a held instance starts as BACKUP
            instance.machine.handle(HoldBackup(True, self.holds[config.name]), 0.0)
        link.instances[config.vrid] = instance
        link.refresh_filter()
        self.instances[config.name] = instance
        self._own(instance)
        if config.filters_traffic:
            try:
                await accept_filter.install(config.netns, instance.filter_chain, config.addresses)
            except BaseException:
                await self._dismantle(instance)
                raise
        return instance

    def _all_vips(self, extra: InstanceConfig) -> set[str]:
        configs = [i.config for i in self.instances.values()] + [*self.configs, extra]
        return {str(v.address.ip) for c in configs for v in c.vips}

    def _begin(self, instance: Instance) -> None:
        assert self.loop is not None
        # A crashed earlier run may have left our VIPs behind; a backup must not hold them.
        instance.has_addresses = None
        self._release(instance)
        self._apply(instance, instance.machine.handle(Startup(), self.loop.time()))

    async def _settle(self, instance: Instance) -> None:
        while instance.address_task is not None:
            await asyncio.gather(instance.address_task, return_exceptions=True)

    async def _dismantle(self, instance: Instance) -> None:
        link = instance.link
        if instance.config.filters_traffic:
            try:
                await accept_filter.remove(instance.config.netns, instance.filter_chain)
            except accept_filter.FilterError as exc:
                log.error("%s: %s", instance.name, exc)
        if link.instances.get(instance.config.vrid) is instance:
            del link.instances[instance.config.vrid]
            link.refresh_filter()
        link.accepted.clear()
        if self.instances.get(instance.name) is instance:
            del self.instances[instance.name]
            self._disown(instance)
        if not link.instances and (link.netns, link.ifname, link.family) not in self.pinned:
            self._close_link(link)

    def _close_link(self, link: Link) -> None:
        if link.socket is not None and self.loop is not None:
            self.loop.remove_reader(link.socket.fileno())
        link.close()
        self.links.pop((link.netns, link.ifname, link.family), None)

    def _own(self, instance: Instance) -> None:
        for key in address_keys(instance.config):
            self.owners.setdefault(key, instance.name)

    def _disown(self, instance: Instance) -> None:
        for key in address_keys(instance.config):
            if self.owners.get(key) == instance.name:
                del self.owners[key]

    def _unowned(self, instance: Instance, vips: Any) -> tuple[Any, ...]:
        """The addresses among ``vips`` that no other instance holds: never delete an
        address from under another instance's master (one a change set just gave it)."""
        config = instance.config
        return tuple(
            vip
            for vip in vips
            if not self._held_by_another(
                instance, (config.netns, vip.dev or config.interface, str(vip.address.ip))
            )
        )

    def _held_by_another(self, instance: Instance, key: AddressKey) -> bool:
        owner = self.instances.get(self.owners.get(key, instance.name))
        return (
            owner is not None
            and owner is not instance
            and bool(owner.has_addresses or owner.wants_addresses)
        )

    def reassign_owners(
        self, leaving: list[InstanceConfig], claimed: dict[AddressKey, str]
    ) -> None:
        """The address index as a change set will leave it: what the instances it changes
        or removes held is let go, and what its newcomers claim is theirs."""
        for config in leaving:
            for key in address_keys(config):
                if self.owners.get(key) == config.name:
                    del self.owners[key]
        self.owners.update(claimed)

    def index_owners(self) -> None:
        """The address index rebuilt from the running instances (after a failed change)."""
        self.owners = {}
        for instance in self.instances.values():
            for key in address_keys(instance.config):
                self.owners.setdefault(key, instance.name)

    def close(self) -> None:
        if self._announcements is not None:
            self._announcements.close()
        for link in self.links.values():
            if link.socket is not None and self.loop is not None:
                self.loop.remove_reader(link.socket.fileno())
            link.close()
        self.links.clear()
        self.netlink.stop()

    # Receive -------------------------------------------------------------------------------

    def _on_readable(self, link: Link, held_since: float | None = None) -> None:
        assert self.loop is not None and link.socket is not None
        try:
            # Bounded, so that one busy link cannot starve the timers; a master sends all its
            # adverts in one burst, so a backup of hundreds drains them in a wake-up or two.
            packets = link.socket.receive_batch(RECEIVE_BATCH)
        except OSError as exc:  # e.g. the interface went away; the error is consumed
            for instance in link.instances.values():
                instance.counters.errors["receive"] += 1
            log.warning("%s: receive failed: %s", link.ifname, exc)
            return
        now = self.loop.time()  # the whole batch was waiting when we woke
        # Read late on purpose: date the burst from when the hold-off began, so that a
        # backup's Master_Down_Timer never runs later than if it had read at once. The
        # pacer still gets the real time: it measures how long bursts take to arrive.
        dated = now if held_since is None else held_since
        for packet in packets:
            self._on_packet(link, packet, dated)
        sock = link.socket
        if sock is not None and sock.overflows:  # the kernel dropped some: buffer full
            dropped = sock.take_overflows()
            self._count_on_link(link, RECEIVE_BUFFER_OVERFLOW, dropped)
            link.drops.overflowed(dropped, now)
        self.scheduler.settle()
        resume_at = link.pacer.drained(now, len(packets))
        if resume_at is not None and link.socket is not None:
            self.loop.remove_reader(link.socket.fileno())
            link.resume = self.loop.call_at(resume_at, self._resume_reading, link, now)

    def _read_now(self, link: Link, now: float) -> None:
        if link.socket is None:
            return
        if link.resume is not None:  # held off by the pacer: read now instead
            assert self.loop is not None
            link.resume.cancel()
            link.resume = None
            self.loop.add_reader(link.socket.fileno(), self._on_readable, link)
        self._on_readable(link, now)

    def _resume_reading(self, link: Link, held_since: float) -> None:
        link.resume = None
        if link.socket is None:
            return  # closed meanwhile
        assert self.loop is not None
        self.loop.add_reader(link.socket.fileno(), self._on_readable, link)
        self._on_readable(link, held_since)

    def _on_packet(self, link: Link, packet: bytes, now: float) -> None:
        key = identity_key(packet)
        hit = link.accepted.get(key) if key is not None else None
        if hit is not None:
            known, cached_event = hit
            known.counters.adverts_received += 1
            actions = known.machine.handle(cached_event, now)
            if actions:
                self._apply(known, actions)
            else:  # the common case: a backup hearing its master
                self.scheduler.want(known, known.machine.next_deadline())
            return
        try:
            advert = decode_ip_packet(packet)
        except DecodeError as exc:
            self._count_on_link(link, exc.reason)
            link.drops.malformed(exc.reason, packet, str(exc), now)
            return
        instance = link.instances.get(advert.vrid)
        if instance is None:
            self._count_on_link(link, VRID_NOT_OURS)
            link.drops.foreign(VRID_NOT_OURS, advert, now)
            return
        reason = drop_reason(advert, instance.policy)
        if reason is not None:
            instance.counters.drops[reason] += 1
            link.drops.refused(instance.name, reason, advert, instance.policy, now)
            return
        instance.counters.adverts_received += 1
        event = AdvertReceived(advert.priority, advert.advert_int_cs, advert.source)
        if key is not None:
            if len(link.accepted) > 4 * len(link.instances) + 16:
                link.accepted.clear()  # bounded: peers that churn cannot grow it
            link.accepted[key] = (instance, event)
        self._apply(instance, instance.machine.handle(event, now))

    @staticmethod
    def _count_on_link(link: Link, reason: str, count: int = 1) -> None:
        # A packet that belongs to no instance (or that the kernel dropped before anyone
        # could tell whose it was) is counted on every instance of its interface.
        for instance in link.instances.values():
            instance.counters.drops[reason] += count

    # Timers and actions -------------------------------------------------------------------

    def _on_due(self, instance: Instance, now: float) -> None:
        machine = instance.machine
        deadline = machine.next_deadline()
        if deadline is None:
            return
        if deadline <= now + SLACK and machine.state is State.BACKUP:
            # Before a backup declares its master down, it reads what its link holds: on a
            # busy node the master's adverts can be waiting there, unread, and a take-over
            # on a busy node makes it busier (addresses, GARPs). Such adverts are dated now,
            # so a master that really died is taken over late by the loop's lag at most.
            self._read_now(instance.link, now)
            deadline = machine.next_deadline()
            if deadline is None:
                return
        if deadline > now + SLACK:
            self.scheduler.want(instance, deadline)  # the deadline moved on since queued
            return
        self._apply(instance, machine.handle(TIMEOUT, max(now, deadline)))

    def _apply(self, instance: Instance, actions: list[Any]) -> None:
        assert self.loop is not None
        for action in actions:
            if isinstance(action, SendAdvert):
                self._send(instance, action.priority)
            elif isinstance(action, TakeAddresses):
                instance.wants_addresses = True
                self._reconcile(instance)
            elif isinstance(action, ReleaseAddresses):
                self._release(instance)
            elif isinstance(action, AnnounceAddresses):
                if instance.has_addresses:
                    self.announcements.send(instance, instance.config.garp_repeat)
            elif isinstance(action, StateChanged):
                self._changed(instance, action)
            elif isinstance(action, WantsMaster):
                for want_listener in self.want_listeners:
                    want_listener(instance)
        self.scheduler.want(instance, instance.machine.next_deadline())

    def _send(self, instance: Instance, priority: int) -> None:
        sock = instance.link.socket
        assert sock is not None
        plan = instance.plans.get(priority)
        if plan is None:
            plan = instance.plans[priority] = []
            for target in instance.destinations:
                text = instance.message(priority, target)
                plan.append((target, text, sock.prepare(instance.source, target, text)))
        for destination, message, prepared in plan:
            try:
                sock.send_prepared(message, prepared)
            except OSError as exc:
                instance.counters.errors["send"] += 1
                log.warning("%s: advert not sent to %s: %s", instance.name, destination, exc)
                continue
            instance.counters.adverts_sent += 1

    def _release(self, instance: Instance) -> None:
        instance.cancel_announcements()
        instance.wants_addresses = False
        self._reconcile(instance)

    def _reconcile(self, instance: Instance) -> None:
        if instance.address_task is None and instance.has_addresses != instance.wants_addresses:
            assert self.loop is not None
            instance.address_task = self.loop.create_task(self._sync_addresses(instance))

    async def _sync_addresses(self, instance: Instance) -> None:
        try:
            while instance.has_addresses != instance.wants_addresses:
                adding = instance.wants_addresses
                await self._change_addresses(instance, adding)
                instance.has_addresses = adding
                if adding and instance.wants_addresses:
                    self.announcements.taken_over(instance)
        finally:
            instance.address_task = None

    async def _change_addresses(self, instance: Instance, adding: bool) -> None:
        config = instance.config
        vips = config.vips if adding else self._unowned(instance, config.vips)
        try:
            await placement.apply(instance.link, config.interface, vips, config.routes,
                                  config.rules, adding, instance.counters.errors)  # fmt: skip
        except Exception as exc:  # a netlink failure must not stop the protocol
            instance.counters.errors["netlink"] += 1
            log.error("%s: %s addresses failed: %s", instance.name,
                      "adding" if adding else "removing", exc)  # fmt: skip

    def _changed(self, instance: Instance, change: StateChanged) -> None:
        instance.counters.transitions += 1
        instance.master_since = time.time() if change.new is State.MASTER else None
        log.info("%s: %s -> %s (%s)", instance.name, change.old.name, change.new.name,
                 change.reason)  # fmt: skip
        for listener in self.listeners:
            listener(instance, change)

    def status(self) -> list[dict[str, Any]]:
        return [instance.status() for instance in self.instances.values()]
