"""Tracking turned into priorities and faults (hanet.vrrpd.trackers), on faked parts."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from hanet.vrrpd.trackers import Trackers
from hanet.vrrpd.tracking import Tracking, Weighted


class FakeService:
    def __init__(self, names: list[str]) -> None:
        self.instances = {
            n: SimpleNamespace(
                config=SimpleNamespace(priority=50), machine=SimpleNamespace(faulty=False)
            )
            for n in names
        }
        self.calls: list[tuple[str, str, Any]] = []

    def set_priority(self, name: str, priority: int) -> None:
        self.calls.append(("priority", name, priority))

    def set_fault(self, name: str, faulty: bool, reason: str) -> None:
        self.instances[name].machine.faulty = faulty
        self.calls.append(("fault", name, faulty))


def test_a_link_event_weighs_only_the_instances_tracking_that_namespace() -> None:
    """A node building routers sees a few link events a router: each one weighs the
    instances of that namespace, not all of them (it was quadratic in the routers)."""
    names = [f"router{i}" for i in range(100)]
    service = FakeService(names)
    daemon = SimpleNamespace(service=service, model=SimpleNamespace(instances={}, sync_groups={}))
    trackers = Trackers(cast(Any, daemon), cast(Any, None))
    tracking = {n: Tracking(interfaces=(Weighted("ha-port"),), netns=f"ns{i}")
                for i, n in enumerate(names)}  # fmt: skip
    for i in range(100):
        trackers.seen.interfaces_in[f"ns{i}"] = {"ha-port": True}
    asyncio.run(trackers.set_control(tracking))
    assert len(service.calls) == 100  # every instance's priority once, no fault
    service.calls.clear()
    trackers._interface_changed("ns7", "ha-port", False)
    assert service.calls == [("priority", "router7", 50), ("fault", "router7", True)]
    service.calls.clear()
    trackers._interface_changed("ns7", "ha-port", True)
    assert service.calls == [("priority", "router7", 50), ("fault", "router7", False)]
    assert not any(i.machine.faulty for i in service.instances.values())
