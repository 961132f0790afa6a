"""The asyncio VRRP service: many instances in one process, each on an interface of a namespace.

Instances that share (namespace, interface, family) share one raw socket. The protocol itself
is hanet.vrrp.VrrpMachine; this module owns the clock, the sockets and netlink, and turns the
machine's actions into packets and addresses.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hanet.linux import accept_filter
from hanet.runtime import placement
from hanet.runtime.config import InstanceConfig
from hanet.runtime.link import Link
from hanet.vrrp import (
    AUTH_NONE,
    AUTH_PASS,
    GROUP_V4,
    GROUP_V6,
    Advertisement,
    AdvertReceived,
    AnnounceAddresses,
    DecodeError,
    ReceivePolicy,
    ReleaseAddresses,
    SendAdvert,
    Shutdown,
    Startup,
    State,
    StateChanged,
    TakeAddresses,
    Timeout,
    VrrpMachine,
    decode_ip_packet,
    drop_reason,
    encode_message,
)
from hanet.vrrp.receive import VRID_NOT_OURS

log = logging.getLogger(__name__)

Listener = Callable[["Instance", StateChanged], None]


@dataclass
class Counters:
    adverts_sent: int = 0
    adverts_received: int = 0
    transitions: int = 0
    drops: Counter[str] = field(default_factory=Counter)  # received packets, by reason
    errors: Counter[str] = field(default_factory=Counter)  # our own sends and netlink calls


class Instance:
    def __init__(self, config: InstanceConfig, link: Link) -> None:
        self.config, self.link = config, link
        self.machine = VrrpMachine(config.params(link.primary))
        self.counters = Counters()
        auth_data = (config.auth_pass or "").encode()
        self.policy = ReceivePolicy(
            config.version, config.advert_int_cs,
            AUTH_PASS if config.auth_pass else AUTH_NONE, auth_data,
        )  # fmt: skip
        self.timer: asyncio.TimerHandle | None = None
        self.refresh: asyncio.TimerHandle | None = None
        # Addresses are reconciled towards ``wants_addresses`` by one task at a time, so a
        # quick MASTER -> BACKUP -> MASTER never interleaves netlink calls. None: unknown.
        self.wants_addresses = False
        self.has_addresses: bool | None = None
        self.address_task: asyncio.Task[None] | None = None
        self.master_since: float | None = None
        self._messages: dict[int, bytes] = {}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def filter_chain(self) -> str:
        return accept_filter.chain_name(self.config.interface, self.config.vrid, self.config.family)

    @property
    def group(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return GROUP_V4 if self.config.family == 4 else GROUP_V6

    def message(self, priority: int) -> bytes:
        """The encoded advert; cached, since only the priority ever changes."""
        cached = self._messages.get(priority)
        if cached is None:
            advert = Advertisement(
                version=self.config.version,
                vrid=self.config.vrid,
                priority=priority,
                addresses=tuple(a.ip for a in self.config.addresses),
                advert_int_cs=self.config.advert_int_cs,
                source=self.link.primary,
                destination=None,
                auth_type=self.policy.auth_type,
                auth_data=self.policy.auth_data,
            )
            cached = self._messages[priority] = encode_message(advert)
        return cached

    def status(self) -> dict[str, Any]:
        m = self.machine
        return {
            "name": self.name,
            "netns": self.config.netns,
            "interface": self.config.interface,
            "vrid": self.config.vrid,
            "state": m.state.name,
            "priority": self.config.priority,
            "master": str(m.master_address) if m.master_address else None,
            "master_since": self.master_since,
            "transitions": self.counters.transitions,
            "adverts_sent": self.counters.adverts_sent,
            "adverts_received": self.counters.adverts_received,
            "drops": dict(self.counters.drops),
            "errors": dict(self.counters.errors),
        }


class VrrpService:
    def __init__(self, configs: list[InstanceConfig]) -> None:
        self.configs = configs
        self.links: dict[tuple[str | None, str, int], Link] = {}
        self.instances: list[Instance] = []
        self.listeners: list[Listener] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    # Start and stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open every socket, then start every instance. Nothing starts if one link fails."""
        self.loop = asyncio.get_running_loop()
        vips = {str(a.ip) for c in self.configs for a in c.addresses}
        try:
            for config in self.configs:
                key = (config.netns, config.interface, config.family)
                if key not in self.links:
                    link = self.links[key] = Link(*key)
                    await link.open(vips)
                link = self.links[key]
                instance = Instance(config, link)
                link.instances[config.vrid] = instance
                self.instances.append(instance)
            for instance in self.instances:
                if instance.config.filters_traffic:
                    await accept_filter.install(
                        instance.config.netns, instance.filter_chain, instance.config.addresses
                    )
        except BaseException:
            await self._remove_filters()
            self.close()
            raise
        for link in self.links.values():
            assert link.socket is not None
            self.loop.add_reader(link.socket.fileno(), self._on_readable, link)
        for instance in self.instances:
            # A crashed earlier run may have left our VIPs behind; a backup must not hold them.
            self._release(instance)
            self._apply(instance, instance.machine.handle(Startup(), self.loop.time()))

    async def stop(self) -> None:
        """Graceful stop: a master sends priority 0 and removes its addresses."""
        assert self.loop is not None
        for link in self.links.values():
            if link.socket is not None:
                self.loop.remove_reader(link.socket.fileno())
        for instance in self.instances:
            self._apply(instance, instance.machine.handle(Shutdown(), self.loop.time()))
            for handle in (instance.timer, instance.refresh):
                if handle is not None:
                    handle.cancel()
        tasks = [i.address_task for i in self.instances if i.address_task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._remove_filters()
        self.close()

    async def _remove_filters(self) -> None:
        for instance in self.instances:
            if instance.config.filters_traffic:
                try:
                    await accept_filter.remove(instance.config.netns, instance.filter_chain)
                except accept_filter.FilterError as exc:
                    log.error("%s: %s", instance.name, exc)

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        self.links.clear()

    # Receive -------------------------------------------------------------------------------

    def _on_readable(self, link: Link) -> None:
        assert self.loop is not None and link.socket is not None
        for _ in range(64):  # bounded, so that one busy link cannot starve the timers
            try:
                packet = link.socket.receive()
            except OSError as exc:  # e.g. the interface went away; the error is consumed
                for instance in link.instances.values():
                    instance.counters.errors["receive"] += 1
                log.warning("%s: receive failed: %s", link.ifname, exc)
                return
            if packet is None:
                return
            self._on_packet(link, packet, self.loop.time())

    def _on_packet(self, link: Link, packet: bytes, now: float) -> None:
        try:
            advert = decode_ip_packet(packet)
        except DecodeError as exc:
            self._count_on_link(link, exc.reason)
            log.debug("%s: dropped: %s", link.ifname, exc)
            return
        instance = link.instances.get(advert.vrid)
        if instance is None:
            self._count_on_link(link, VRID_NOT_OURS)
            return
        reason = drop_reason(advert, instance.policy)
        if reason is not None:
            instance.counters.drops[reason] += 1
            return
        instance.counters.adverts_received += 1
        event = AdvertReceived(advert.priority, advert.advert_int_cs, advert.source)
        self._apply(instance, instance.machine.handle(event, now))

    @staticmethod
    def _count_on_link(link: Link, reason: str) -> None:
        # A packet that belongs to no instance is counted on every instance of its interface.
        for instance in link.instances.values():
            instance.counters.drops[reason] += 1

    # Timers and actions -------------------------------------------------------------------

    def _on_timer(self, instance: Instance) -> None:
        assert self.loop is not None
        instance.timer = None
        self._apply(instance, instance.machine.handle(Timeout(), self.loop.time()))

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
                    self._announce(instance, instance.config.garp_repeat)
            elif isinstance(action, StateChanged):
                self._changed(instance, action)
        deadline = instance.machine.next_deadline()
        if instance.timer is not None and (deadline is None or instance.timer.when() != deadline):
            instance.timer.cancel()
            instance.timer = None
        if deadline is not None and instance.timer is None:
            instance.timer = self.loop.call_at(deadline, self._on_timer, instance)

    def _send(self, instance: Instance, priority: int) -> None:
        link = instance.link
        assert link.socket is not None
        try:
            link.socket.send(instance.message(priority), link.primary, instance.group)
        except OSError as exc:
            instance.counters.errors["send"] += 1
            log.warning("%s: advert not sent: %s", instance.name, exc)
            return
        instance.counters.adverts_sent += 1

    def _release(self, instance: Instance) -> None:
        if instance.refresh is not None:
            instance.refresh.cancel()
            instance.refresh = None
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
                    self._announced(instance)
        finally:
            instance.address_task = None

    async def _change_addresses(self, instance: Instance, adding: bool) -> None:
        try:
            await placement.apply(instance.link, instance.config, adding, instance.counters.errors)
        except Exception as exc:  # a netlink failure must not stop the protocol
            instance.counters.errors["netlink"] += 1
            log.error("%s: %s addresses failed: %s", instance.name,
                      "adding" if adding else "removing", exc)  # fmt: skip

    def _announced(self, instance: Instance) -> None:
        self._announce(instance, instance.config.garp_repeat)
        if instance.config.garp_refresh_delay > 0:
            # keepalived repeats the burst after vrrp_garp_master_delay (5 s by default).
            assert self.loop is not None
            instance.refresh = self.loop.call_later(
                instance.config.garp_refresh_delay, self._refresh_announce, instance
            )

    def _refresh_announce(self, instance: Instance) -> None:
        instance.refresh = None
        if instance.machine.state is State.MASTER:
            self._announce(instance, instance.config.garp_repeat)

    def _announce(self, instance: Instance, count: int, done: int = 0) -> None:
        if done and instance.machine.state is not State.MASTER:
            return
        interval = instance.config.garp_interval
        for sent in range(done, count):
            placement.announce(instance.link, instance.config)
            if interval > 0 and sent + 1 < count:
                assert self.loop is not None
                self.loop.call_later(interval, self._announce, instance, count, sent + 1)
                return

    def _changed(self, instance: Instance, change: StateChanged) -> None:
        instance.counters.transitions += 1
        instance.master_since = time.time() if change.new is State.MASTER else None
        log.info("%s: %s -> %s (%s)", instance.name, change.old.name, change.new.name,
                 change.reason)  # fmt: skip
        for listener in self.listeners:
            listener(instance, change)

    def status(self) -> list[dict[str, Any]]:
        return [instance.status() for instance in self.instances]
