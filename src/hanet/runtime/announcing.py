"""Gratuitous ARPs / unsolicited NAs, sent within a time budget per wake-up.

The first round of a take-over is what moves the data path (bridges learn where the
router's MAC now is): it goes first, in the order of the take-overs, on the loop's next
turn. The repeats (``garp_repeat`` rounds in all, the second burst after
``garp_refresh_delay``, refreshes) only guard against a lost first round, so they follow a
round at a time, one instance after another. Each wake-up sends for at most BUDGET seconds.

Why: an announcement is a broadcast, and on a Linux bridge it is copied to every port of
the segment in the sender's system call. In a lab cloud on one machine, the external
network's bridge has a port for every router of every node, so each GARP costs a
fraction of a millisecond; a node taking over hundreds of routers sent thousands of them
back to back and its adverts went out late, which made other routers take over (and
announce) in turn (docs/BENCHMARKS.md, the lab cloud). Within the budget, adverts and
the other routers' timers keep their time, whatever a round costs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from hanet.runtime import placement
from hanet.vrrp import State

if TYPE_CHECKING:
    from hanet.runtime.instance import Instance

BUDGET = 0.005  # seconds of announcing per wake-up
PAUSE = 0.005  # seconds between wake-ups while rounds wait: at most half the loop's time


class AnnounceQueue:
    """Rounds of announcements still owed, by instance, sent round-robin.

    ``send(instance)`` sends one round and says whether the instance still wants them (a
    master with its addresses); one that does not is dropped with its remaining rounds."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[Instance], bool],
        budget: float = BUDGET,
        pause: float = PAUSE,
    ) -> None:
        self.loop, self.send, self.budget, self.pause = loop, send, budget, pause
        self.first: dict[Instance, int] = {}  # take-overs: rounds owed, first round first
        self.rounds: dict[Instance, int] = {}  # repeats; insertion order is the sending order
        self.handle: asyncio.Handle | None = None

    def push(self, instance: Instance, rounds: int, first: bool = False) -> None:
        """Owe ``rounds`` more rounds to ``instance`` (not added to what it is owed); with
        ``first``, its first round goes before every repeat."""
        if rounds <= 0:
            return
        queue = self.first if first else self.rounds
        queue[instance] = max(rounds, queue.get(instance, 0))
        if self.handle is None:
            self.handle = self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self.handle = None
        deadline = time.monotonic() + self.budget
        while self.first or self.rounds:
            queue = self.first or self.rounds
            instance = next(iter(queue))
            left = queue.pop(instance)
            if self.send(instance) and left > 1:
                # To the back of the repeats: an instance's rounds are spread out.
                self.rounds[instance] = max(left - 1, self.rounds.pop(instance, 0))
            if time.monotonic() >= deadline:
                break
        if self.first or self.rounds:
            self.handle = self.loop.call_later(self.pause, self._drain)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.first.clear()
        self.rounds.clear()


class Announcements:
    """When a service's masters announce their addresses, as keepalived does: at take-over
    (``garp_repeat`` rounds), again after ``garp_refresh_delay`` (keepalived's
    garp_master_delay), and every ``garp_refresh_interval``. With ``garp_interval`` the
    rounds are spaced by it, as keepalived spaces them; without, the repeats go through an
    AnnounceQueue."""

    def __init__(self, loop: asyncio.AbstractEventLoop, instances: Mapping[str, Instance]) -> None:
        self.loop, self.instances = loop, instances
        self.queue = AnnounceQueue(loop, self._send_round)

    def taken_over(self, instance: Instance) -> None:
        """The addresses are in place: announce them now, and schedule the later bursts."""
        config = instance.config
        instance.cancel_announcements()
        self.send(instance, config.garp_repeat)
        if config.garp_refresh_delay > 0:
            instance.announcements["second burst"] = self.loop.call_later(
                config.garp_refresh_delay, self._again, instance, "second burst"
            )
        if config.garp_refresh_interval > 0:
            instance.announcements["refresh"] = self.loop.call_later(
                config.garp_refresh_interval, self._again, instance, "refresh"
            )

    def send(self, instance: Instance, count: int, first_now: bool = True) -> None:
        """``count`` rounds; the first before any repeat (what moves the data path after a
        take-over) unless ``first_now`` is false."""
        if instance.config.garp_interval > 0:
            self._spaced(instance, count)
        else:
            self.queue.push(instance, count, first=first_now)

    def _again(self, instance: Instance, which: str) -> None:
        instance.announcements.pop(which, None)
        if instance.machine.state is not State.MASTER:
            return
        config = instance.config
        if which == "second burst":
            self.send(instance, config.garp_repeat, first_now=False)
            return
        self.send(instance, config.garp_refresh_repeat, first_now=False)
        instance.announcements["refresh"] = self.loop.call_later(
            config.garp_refresh_interval, self._again, instance, "refresh"
        )

    def _spaced(self, instance: Instance, count: int, done: int = 0) -> None:
        if done and not self._wants(instance):
            return
        if done < count:
            placement.announce(instance.link, instance.config)
        if done + 1 < count:
            interval = instance.config.garp_interval
            self.loop.call_later(interval, self._spaced, instance, count, done + 1)

    def _wants(self, instance: Instance) -> bool:
        """Still a master with its addresses, and still running (not removed nor replaced)."""
        return (
            self.instances.get(instance.name) is instance
            and instance.machine.state is State.MASTER
            and bool(instance.has_addresses)
        )

    def _send_round(self, instance: Instance) -> bool:
        if not self._wants(instance):
            return False
        placement.announce(instance.link, instance.config)
        return True

    def close(self) -> None:
        self.queue.close()
