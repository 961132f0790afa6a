"""One asyncio timer for every instance: a heap of deadlines, cleaned lazily.

With a thousand instances at 0.1 s, one asyncio TimerHandle per advert and per received
advert costs more than the protocol itself. Here deadlines that fall within SLACK of each
other fire in one wake-up, and a deadline that only moved later (a backup hearing its
master) is not re-queued: the earlier wake-up finds the new deadline and re-queues once.
When that earlier wake-up is the very next one, it is moved instead, so that a backup whose
master is alive does not wake at all between adverts.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Protocol

SLACK = 0.002  # seconds; deadlines this close together are served by one wake-up


class Scheduled(Protocol):
    due: float | None


class Scheduler:
    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_due: Callable[[Scheduled, float], None]) -> None:  # fmt: skip
        self.loop, self.on_due = loop, on_due
        self.heap: list[tuple[float, int, Scheduled]] = []
        self.order = itertools.count()
        self.handle: asyncio.TimerHandle | None = None
        self.armed_for: float | None = None
        self.moved = False  # want() moved the first deadline later; settle() re-arms

    def want(self, item: Scheduled, deadline: float | None) -> None:
        """Make sure ``item`` is woken at ``deadline`` or earlier (None: never)."""
        if deadline is None:
            item.due = None
            return
        if item.due is not None and item.due <= deadline:
            heap = self.heap
            if deadline > item.due and heap[0][2] is item and heap[0][0] == item.due:
                # The next wake-up is this item's and would find nothing to do (a backup that
                # heard its master again): move it, so an idle backup never wakes for nothing.
                # The timer itself is moved by settle(), once for a whole batch of packets.
                item.due = deadline
                heapq.heapreplace(heap, (deadline, next(self.order), item))
                self.moved = True
            return  # otherwise an earlier wake-up is queued; it will look again
        item.due = deadline
        heapq.heappush(self.heap, (deadline, next(self.order), item))
        if self.armed_for is None or deadline < self.armed_for:
            self._arm(deadline)

    def settle(self) -> None:
        """Move the timer to the first deadline if want() moved it later. Without this call
        the timer fires at the old time, finds nothing due and moves itself: only a wasted
        wake-up."""
        if self.moved:
            self.moved = False
            if self.heap and self.armed_for is not None and self.heap[0][0] > self.armed_for:
                self._arm(self.heap[0][0])

    def cancel(self, item: Scheduled) -> None:
        item.due = None

    def _arm(self, when: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.handle = self.loop.call_at(when, self._fire)
        self.armed_for = when

    def _fire(self) -> None:
        self.handle = self.armed_for = None
        now = self.loop.time()
        horizon = now + SLACK
        heap, woken = self.heap, []
        while heap and heap[0][0] <= horizon:
            when, _, item = heapq.heappop(heap)
            if item.due != when:
                continue  # cancelled or superseded
            item.due = None
            woken.append(item)
        # Popped first and served after: on_due may ask again, and that must not be served
        # in this same loop.
        for item in woken:
            self.on_due(item, now)
        if heap and (self.armed_for is None or heap[0][0] < self.armed_for):
            self._arm(heap[0][0])
