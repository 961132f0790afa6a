"""The runtime's one timer for every instance (hanet.runtime.scheduler), on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hanet.runtime.scheduler import SLACK, Scheduler


@dataclass
class Item:
    name: str
    due: float | None = None


@dataclass
class Handle:
    when: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeLoop:
    now: float = 0.0
    handles: list[Handle] = field(default_factory=list)
    wakeups: int = 0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> Handle:
        handle = Handle(when, callback)
        self.handles.append(handle)
        return handle

    def run_until(self, end: float) -> None:
        while True:
            live = [h for h in self.handles if not h.cancelled and h.when <= end]
            if not live:
                self.now = end
                return
            first = min(live, key=lambda h: h.when)
            self.handles.remove(first)
            self.now, self.wakeups = first.when, self.wakeups + 1
            first.callback()


def scheduler() -> tuple[Scheduler, FakeLoop, list[tuple[str, float]]]:
    loop, offered = FakeLoop(), []
    sched = Scheduler(loop, lambda item, now: offered.append((item.name, now)))  # type: ignore[arg-type]
    return sched, loop, offered


def test_a_backup_that_hears_its_master_never_wakes_between_adverts() -> None:
    sched, loop, offered = scheduler()
    backup = Item("backup")
    sched.want(backup, 0.36)
    for heard in (0.1, 0.2, 0.3, 0.4, 0.5):  # the master's adverts, each moving the deadline
        loop.run_until(heard)
        sched.want(backup, heard + 0.36)
        sched.settle()  # as the service does after each batch of packets
    loop.run_until(0.85)
    assert loop.wakeups == 0 and offered == []
    loop.run_until(0.87)
    assert offered == [("backup", 0.86)]


def test_items_due_within_the_slack_share_one_wake_up() -> None:
    sched, loop, offered = scheduler()
    a, b, c = Item("a"), Item("b"), Item("c")
    sched.want(a, 1.0)
    sched.want(b, 1.0 + SLACK / 2)
    sched.want(c, 1.0 + SLACK * 2)
    loop.run_until(1.0)
    assert offered == [("a", 1.0), ("b", 1.0)] and loop.wakeups == 1
    loop.run_until(2.0)
    assert offered[-1] == ("c", 1.0 + SLACK * 2) and loop.wakeups == 2


def test_a_cancelled_item_is_not_offered() -> None:
    sched, loop, offered = scheduler()
    a = Item("a")
    sched.want(a, 1.0)
    sched.cancel(a)
    loop.run_until(2.0)
    assert offered == []


def test_without_settle_a_moved_deadline_costs_one_early_wake_up_only() -> None:
    sched, loop, offered = scheduler()
    backup = Item("backup")
    sched.want(backup, 0.36)
    sched.want(backup, 0.46)
    loop.run_until(0.40)
    assert loop.wakeups == 1 and offered == []  # woke at 0.36, found it moved, re-armed
    loop.run_until(0.47)
    assert offered == [("backup", 0.46)]
