"""Change sets: the whole resulting set is checked first, and a late failure is undone."""

from __future__ import annotations

import asyncio
import ipaddress
from types import SimpleNamespace
from typing import Any

import pytest

from hanet.runtime.changes import ChangeSet, apply_changes
from hanet.runtime.config import ConfigError, InstanceConfig, VirtualAddress
from hanet.runtime.ownership import check_instance_set


def config(name: str, vrid: int, *addresses: str, **extra: Any) -> InstanceConfig:
    vips = tuple(VirtualAddress(ipaddress.ip_interface(a)) for a in addresses)
    return InstanceConfig(name=name, interface="eth0", vrid=vrid, priority=100, vips=vips,
                          **extra)  # fmt: skip


def test_an_address_on_one_device_has_one_owner() -> None:
    a, b = config("a", 1, "10.0.0.1/24"), config("b", 2, "10.0.0.1/32")
    with pytest.raises(ConfigError, match=r"instance b: address 10\.0\.0\.1 on eth0 is held by "
                                          "instance a"):  # fmt: skip
        check_instance_set([a, b])
    elsewhere = config("b", 2, "10.0.0.1/24", netns="other")
    assert check_instance_set([a, elsewhere])[("other", "eth0", "10.0.0.1")] == "b"
    on_qg = InstanceConfig(name="c", interface="eth0", vrid=3, priority=100, vips=(
        VirtualAddress(ipaddress.ip_interface("10.0.0.9/24")),
        VirtualAddress(ipaddress.ip_interface("10.0.0.1/24"), dev="qg-1", advertised=False),
    ))  # fmt: skip
    check_instance_set([a, on_qg])  # the same address on another device is another address


def test_a_vrid_on_one_link_has_one_owner() -> None:
    with pytest.raises(ConfigError, match="vrid 1 on eth0 is in use by instance a"):
        check_instance_set([config("a", 1, "10.0.0.1/24"), config("b", 1, "10.0.0.2/24")])


class FakeService:
    """What apply_changes uses of VrrpService, with a step that can be made to fail."""

    def __init__(self, *configs: InstanceConfig) -> None:
        self.instances = {c.name: SimpleNamespace(config=c) for c in configs}
        self.fail_on: InstanceConfig | None = None  # the one configuration that fails
        self.pinned: set[Any] = set()
        self.steps: list[str] = []

    async def open_links(self, configs: list[InstanceConfig]) -> set[Any]:
        if any(c.interface == "nosuch0" for c in configs):
            raise LookupError("nosuch0 does not exist")
        keys = {(c.netns, c.interface, c.family) for c in configs}
        self.pinned |= keys
        return keys

    def unpin(self, keys: set[Any]) -> None:
        self.pinned -= keys

    owners: dict[Any, str] = {}
    links: dict[Any, Any] = {}

    def reassign_owners(self, leaving: list[InstanceConfig], claimed: dict[Any, str]) -> None:
        self.owners = claimed

    def index_owners(self) -> None:
        self.owners = {}

    async def remove(self, name: str) -> None:
        self.steps.append(f"remove {name}")
        del self.instances[name]

    async def add_many(self, configs: list[InstanceConfig]) -> None:
        if self.fail_on in configs:
            raise OSError("nft refused")
        for c in configs:
            self.steps.append(f"add {c.name}")
            self.instances[c.name] = SimpleNamespace(config=c)

    async def update_in_place(self, c: InstanceConfig) -> None:
        if c == self.fail_on:
            raise OSError("nft refused")
        self.steps.append(f"update {c.name}")
        self.instances[c.name].config = c


def configs_of(service: FakeService) -> dict[str, InstanceConfig]:
    return {name: i.config for name, i in service.instances.items()}


def test_a_missing_interface_refuses_the_change_before_anything_stops() -> None:
    a, b = config("a", 1, "10.0.0.1/24"), config("b", 2, "10.0.0.2/24")
    service = FakeService(a, b)
    moved = InstanceConfig(name="a", interface="nosuch0", vrid=1, priority=100, vips=a.vips)
    changes = ChangeSet(add=(config("c", 3, "10.0.0.3/24"),), change=(moved,), remove=("b",))
    with pytest.raises(LookupError):
        asyncio.run(apply_changes(service, changes))  # type: ignore[arg-type]
    assert service.steps == [] and configs_of(service) == {"a": a, "b": b}


def test_a_late_failure_restores_what_ran() -> None:
    a, b = config("a", 1, "10.0.0.1/24"), config("b", 2, "10.0.0.2/24")
    service = FakeService(a, b)
    new_a = config("a", 1, "10.0.0.1/24", "10.0.0.11/24")  # the same router: changed in place
    new_d = config("d", 4, "10.0.0.4/24")
    service.fail_on = new_d  # updated after new_a: new_a is applied, then undone
    changes = ChangeSet(add=(config("c", 3, "10.0.0.3/24"),), change=(new_a, new_d),
                        remove=("b",))  # fmt: skip
    service.instances["d"] = SimpleNamespace(config=config("d", 4, "10.0.0.5/24"))
    d = service.instances["d"].config
    with pytest.raises(OSError):
        asyncio.run(apply_changes(service, changes))  # type: ignore[arg-type]
    assert configs_of(service) == {"a": a, "b": b, "d": d}
    assert "update a" in service.steps and service.steps[-1] == "add b"
    assert service.pinned == set()


def test_an_address_may_move_from_a_removed_instance_to_a_new_one() -> None:
    service = FakeService(config("a", 1, "10.0.0.1/24"))
    changes = ChangeSet(add=(config("b", 2, "10.0.0.1/24"),), remove=("a",))
    asyncio.run(apply_changes(service, changes))  # type: ignore[arg-type]
    assert service.steps == ["remove a", "add b"]
