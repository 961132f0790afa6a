"""One asyncio timer for every instance: a heap of deadlines, cleaned lazily.

With a thousand instances at 0.1 s, one asyncio TimerHandle per advert and per received
advert costs more than the protocol itself. Here deadlines that fall within SLACK of each
other fire in one wake-up, and a deadline that only moved later (a backup hearing its
master) is not re-queued: the earlier wake-up finds the new deadline and re-queues once.
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

    def want(self, item: Scheduled, deadline: float | None) -> None:
        """Make sure ``item`` is woken at ``deadline`` or earlier (None: never)."""
        if deadline is None:
            item.due = None
            return
        if item.due is not None and item.due <= deadline:
            return  # an earlier wake-up is queued; it will look again
        item.due = deadline
        heapq.heappush(self.heap, (deadline, next(self.order), item))
        if self.armed_for is None or deadline < self.armed_for:
            self._arm(deadline)

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
        heap = self.heap
        while heap and heap[0][0] <= horizon:
            when, _, item = heapq.heappop(heap)
            if item.due != when:
                continue  # cancelled or superseded
            item.due = None
            self.on_due(item, max(now, when))
        if heap:
            self._arm(heap[0][0])
