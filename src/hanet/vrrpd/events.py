"""Fan-out of the daemon's events to control-socket subscribers, never blocking the daemon.

Each event gets a sequence number ``seq``, counted from 1 for the daemon's life. A subscriber
that falls ``limit`` events behind loses the newer ones rather than holding the daemon's
memory; it is told in order, where the gap is: an ``{"event": "overflow", "dropped": N,
"first_seq": a, "last_seq": b}`` line comes after the last event it did get, so it knows to
read ``status`` again. Losses are logged and counted for ``status``.

A subscriber with snapshots (control version 1) never has to read ``status`` to know where
it stands: its first line is ``{"event": "snapshot", "seq": S, "instances": [...]}``, every
instance's state as of event S (events after it have higher numbers), and after an overflow
line comes a fresh snapshot. The events that were still queued are dropped then: the
snapshot, taken as the overflow line is sent, already holds what they said.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 1000

Event = dict[str, Any]
Snapshot = Callable[[], Event]


class Subscription:
    """One subscriber's queue: at most ``limit`` events, then one overflow line (and with
    ``snapshot``, a resynchronising snapshot after it)."""

    def __init__(self, number: int, limit: int, snapshot: Snapshot | None = None) -> None:
        self.number, self.limit = number, limit
        self.items: deque[Event] = deque()
        self.ready = asyncio.Event()
        self.gap: Event | None = None  # the overflow line while it is the queue's tail
        self.dropped = 0
        self.snapshot = snapshot
        if snapshot is not None:
            self.items.append(snapshot())

    def put(self, event: Event) -> bool:
        """Queue ``event``; False when it was dropped."""
        if len(self.items) < self.limit:
            self.items.append(event)
            self.gap = None
            self.ready.set()
            return True
        if self.gap is None:
            log.warning("control subscriber %d is %d events behind: dropping events until "
                        "it catches up", self.number, self.limit)  # fmt: skip
            self.gap = {"event": "overflow", "dropped": 0, "first_seq": event["seq"]}
            self.items.append(self.gap)
        self.gap["dropped"] += 1
        self.gap["last_seq"] = event["seq"]
        self.dropped += 1
        return False

    async def get(self) -> Event:
        while not self.items:
            self.ready.clear()
            await self.ready.wait()
        event = self.items.popleft()
        if event is self.gap:
            self.gap = None
        if event["event"] == "overflow":
            log.warning("control subscriber %d lost %d events (seq %d to %d)", self.number,
                        event["dropped"], event["first_seq"], event["last_seq"])  # fmt: skip
            if self.snapshot is not None:
                # Everything queued happened by now: the snapshot says it all.
                self.items.clear()
                self.gap = None
                self.items.append(self.snapshot())
        return event


class EventHub:
    def __init__(self, limit: int = SUBSCRIBER_QUEUE, snapshot: Snapshot | None = None) -> None:
        self.limit, self.snapshot = limit, snapshot
        self.subscriptions: set[Subscription] = set()
        self.seq = 0
        self.dropped = 0
        self.numbers = itertools.count(1)

    def publish(self, event: Event) -> None:
        self.seq += 1
        event = {**event, "seq": self.seq}
        for subscription in self.subscriptions:
            if not subscription.put(event):
                self.dropped += 1

    def subscribe(self, snapshots: bool = False) -> Subscription:
        """A new subscriber; with ``snapshots``, one whose first line is a snapshot."""
        snapshot = self.snapshot if snapshots else None
        if snapshots and snapshot is None:
            snapshot = self._empty
        subscription = Subscription(next(self.numbers), self.limit, snapshot)
        self.subscriptions.add(subscription)
        return subscription

    def _empty(self) -> Event:
        return {"event": "snapshot", "seq": self.seq, "instances": []}

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def status(self) -> dict[str, int]:
        return {"subscribers": len(self.subscriptions), "events_dropped": self.dropped,
                "seq": self.seq}  # fmt: skip
