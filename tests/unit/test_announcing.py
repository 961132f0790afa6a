"""The queue of repeated announcements (hanet.runtime.announcing): every round owed is
sent, round-robin across instances, a wake-up stops at its time budget, and an instance
that no longer wants them (not master, removed) loses its rounds."""

from __future__ import annotations

import asyncio
from typing import Any

from hanet.runtime.announcing import AnnounceQueue

WAIT = 10.0


class Sent:
    def __init__(self, expected: int, refuse: set[str] | None = None) -> None:
        self.log: list[str] = []
        self.expected, self.refuse = expected, refuse or set()
        self.done = asyncio.Event()
        self.wake_ups = 0

    def __call__(self, instance: Any) -> bool:
        self.log.append(instance)
        if len(self.log) >= self.expected:
            self.done.set()
        return instance not in self.refuse


def test_every_round_is_sent_round_robin() -> None:
    async def scenario() -> list[str]:
        sent = Sent(expected=5)
        queue = AnnounceQueue(asyncio.get_running_loop(), sent)
        queue.push("a", 3)  # type: ignore[arg-type]
        queue.push("b", 2)  # type: ignore[arg-type]
        queue.push("a", 1)  # type: ignore[arg-type]  # owed already: nothing more
        await asyncio.wait_for(sent.done.wait(), WAIT)
        assert not queue.rounds and queue.handle is None
        return sent.log

    assert asyncio.run(scenario()) == ["a", "b", "a", "b", "a"]


def test_a_wake_up_stops_at_its_budget_and_the_rest_follows() -> None:
    async def scenario() -> None:
        sent = Sent(expected=6)
        queue = AnnounceQueue(asyncio.get_running_loop(), sent, budget=0.0, pause=0.0)
        for name in "abc":
            queue.push(name, 2)  # type: ignore[arg-type]
        assert sent.log == []  # nothing inside push: the caller goes on at once
        await asyncio.sleep(0)  # one turn of the loop: one wake-up
        assert sent.log == ["a"] and queue.rounds["a"] == 1  # type: ignore[index]
        await asyncio.wait_for(sent.done.wait(), WAIT)
        assert sent.log == ["a", "b", "c", "a", "b", "c"]

    asyncio.run(scenario())


def test_an_instance_that_no_longer_wants_them_loses_its_rounds() -> None:
    async def scenario() -> None:
        sent = Sent(expected=4, refuse={"gone"})
        queue = AnnounceQueue(asyncio.get_running_loop(), sent)
        queue.push("gone", 5)  # type: ignore[arg-type]
        queue.push("kept", 3)  # type: ignore[arg-type]
        await asyncio.wait_for(sent.done.wait(), WAIT)
        assert sent.log == ["gone", "kept", "kept", "kept"]
        assert not queue.rounds

    asyncio.run(scenario())


def test_close_drops_what_waits() -> None:
    async def scenario() -> None:
        sent = Sent(expected=1)
        queue = AnnounceQueue(asyncio.get_running_loop(), sent)
        queue.push("a", 3)  # type: ignore[arg-type]
        queue.close()
        await asyncio.sleep(0)
        assert sent.log == [] and not queue.rounds

    asyncio.run(scenario())


def test_first_rounds_go_before_every_repeat() -> None:
    """A take-over's first round moves the data path: it does not wait behind the repeats
    of earlier take-overs."""

    async def scenario() -> list[str]:
        sent = Sent(expected=5)
        queue = AnnounceQueue(asyncio.get_running_loop(), sent)
        queue.push("a", 3)  # type: ignore[arg-type]
        queue.push("b", 2, first=True)  # type: ignore[arg-type]
        await asyncio.wait_for(sent.done.wait(), WAIT)
        return sent.log

    assert asyncio.run(scenario()) == ["b", "a", "b", "a", "a"]
