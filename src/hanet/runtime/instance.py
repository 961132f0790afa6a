"""One VRRP instance at run time: its machine, counters, timers and cached adverts."""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hanet.linux import accept_filter
from hanet.runtime.config import InstanceConfig
from hanet.runtime.link import Link
from hanet.vrrp import (
    AUTH_NONE,
    AUTH_PASS,
    GROUP_V4,
    GROUP_V6,
    Advertisement,
    ReceivePolicy,
    VrrpMachine,
    encode_message,
)


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
        self.machine = VrrpMachine(config.params(config.source_ip or link.primary))
        self.counters = Counters()
        auth_data = (config.auth_pass or "").encode()
        self.policy = ReceivePolicy(
            config.version,
            config.advert_int_cs,
            AUTH_PASS if config.auth_pass else AUTH_NONE,
            auth_data,
            frozenset(config.unicast_peers),
        )
        self.due: float | None = None  # the Scheduler's wake-up for this instance
        # GARP / NA timers of a master: the "second burst" and the periodic "refresh".
        self.announcements: dict[str, asyncio.TimerHandle] = {}
        # Addresses are reconciled towards ``wants_addresses`` by one task at a time, so a
        # quick MASTER -> BACKUP -> MASTER never interleaves netlink calls. None: unknown.
        self.wants_addresses = False
        self.has_addresses: bool | None = None
        self.address_task: asyncio.Task[None] | None = None
        self.master_since: float | None = None
        self._messages: dict[tuple[int, object], bytes] = {}
        # What a send of each priority does: (destination, message, socket's prepared args).
        self.plans: dict[int, list[tuple[object, bytes, Any]]] = {}

    def cancel_announcements(self) -> None:
        for handle in self.announcements.values():
            handle.cancel()
        self.announcements.clear()

    @property
    def name(self) -> str:
        return self.config.name

    def reconfigure(self, config: InstanceConfig) -> None:
        """Take a new configuration in place: state, timers and addresses stay."""
        self.config = config
        self.machine.params = config.params(config.source_ip or self.link.primary)
        self.policy = ReceivePolicy(
            config.version,
            config.advert_int_cs,
            AUTH_PASS if config.auth_pass else AUTH_NONE,
            (config.auth_pass or "").encode(),
            frozenset(config.unicast_peers),
        )
        self._messages.clear()
        self.plans.clear()

    @property
    def filter_chain(self) -> str:
        return accept_filter.chain_name(self.config.interface, self.config.vrid, self.config.family)

    @property
    def source(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return self.config.source_ip or self.link.primary

    @property
    def destinations(self) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        """The multicast group, or each unicast peer (keepalived's unicast_peer)."""
        if self.config.unicast_peers:
            return self.config.unicast_peers
        return (GROUP_V4 if self.config.family == 4 else GROUP_V6,)

    def message(self, priority: int, destination: ipaddress.IPv4Address | ipaddress.IPv6Address
                ) -> bytes:  # fmt: skip
        """The encoded advert; cached, since only the priority changes (and, in unicast
        mode, the peer: the v3 checksum covers the destination)."""
        key = (priority, destination)
        cached = self._messages.get(key)
        if cached is None:
            advert = Advertisement(
                version=self.config.version,
                vrid=self.config.vrid,
                priority=priority,
                addresses=tuple(a.ip for a in self.config.addresses),
                advert_int_cs=self.config.advert_int_cs,
                source=self.source,
                destination=destination,
                auth_type=self.policy.auth_type,
                auth_data=self.policy.auth_data,
            )
            cached = self._messages[key] = encode_message(advert)
        return cached

    def status(self) -> dict[str, Any]:
        m = self.machine
        return {
            "name": self.name,
            "netns": self.config.netns,
            "interface": self.config.interface,
            "vrid": self.config.vrid,
            "state": m.state.name,
            "priority": m.priority,
            "base_priority": self.config.priority,
            "master": str(m.master_address) if m.master_address else None,
            "master_since": self.master_since,
            "held": m.held,
            "hold_reason": m.hold_reason if m.held else None,
            "transitions": self.counters.transitions,
            "adverts_sent": self.counters.adverts_sent,
            "adverts_received": self.counters.adverts_received,
            "drops": dict(self.counters.drops),
            "errors": dict(self.counters.errors),
        }
