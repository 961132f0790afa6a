"""Changing the running set of instances all at once, or not at all.

A reload or a control request may add, change and remove several instances. Each step that
can fail for reasons outside hanet (an interface or namespace that does not exist, a socket
the kernel refuses) is taken before anything running changes: the whole resulting set is
checked (hanet.runtime.ownership), and every link the new instances need is opened and kept
open while their predecessors stop. What can still fail after that (an nftables chain, say)
is undone: started instances stop, changed ones get their old settings back and removed
ones start again. Either way the service is left with one consistent set, never half of
each.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hanet.runtime.config import ConfigError, InstanceConfig
from hanet.runtime.ownership import (
    AddressKey,
    RouterKey,
    address_held,
    address_keys,
    identity,
    router_key,
    vrid_in_use,
)

if TYPE_CHECKING:
    from hanet.runtime.service import VrrpService

log = logging.getLogger(__name__)

# What a change that cannot be made here raises: a bad or clashing configuration, an
# interface or namespace that does not exist, a socket or netlink call the kernel refuses.
REFUSED = (ValueError, LookupError, OSError)


@dataclass(frozen=True)
class ChangeSet:
    add: tuple[InstanceConfig, ...] = ()
    change: tuple[InstanceConfig, ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.change or self.remove)


def _check(service: VrrpService, changes: ChangeSet) -> dict[AddressKey, str]:
    """The owner of every address once the change is made; ConfigError if it cannot be."""
    named = [c.name for c in changes.add] + [c.name for c in changes.change] + [*changes.remove]
    twice = {name for name, count in Counter(named).items() if count > 1}
    if twice:
        raise ConfigError(f"instance {sorted(twice)[0]} is named twice in one change")
    for config in changes.add:
        if config.name in service.instances:
            raise ConfigError(f"instance {config.name} exists already")
    for name in [c.name for c in changes.change] + [*changes.remove]:
        if name not in service.instances:
            raise ConfigError(f"no instance {name}")
    # Only the newcomers are checked, against the service's indexes and each other: an
    # agent adds routers one request at a time, and checking the whole set each time made
    # adding the thousandth router cost a thousand times the first.
    leaving = set(named)
    claimed: dict[AddressKey, str] = {}
    routers: dict[RouterKey, str] = {}
    for config in [*changes.change, *changes.add]:
        link = service.links.get((config.netns, config.interface, config.family))
        running = link.instances.get(config.vrid) if link is not None else None
        if running is not None and running.name not in leaving:
            raise vrid_in_use(config, running.name)
        holder = routers.setdefault(router_key(config), config.name)
        if holder != config.name:
            raise vrid_in_use(config, holder)
        for key in address_keys(config):
            owner = service.owners.get(key)
            if owner is None or owner in leaving:
                owner = claimed.setdefault(key, config.name)
            if owner != config.name:
                raise address_held(config, key, owner)
    return claimed


async def apply_changes(service: VrrpService, changes: ChangeSet) -> None:
    """Apply ``changes`` whole; on any error raise it with the running set as it was."""
    claimed = _check(service, changes)
    old = {c.name: service.instances[c.name].config for c in changes.change}
    old.update({name: service.instances[name].config for name in changes.remove})
    restart = [c for c in changes.change if identity(old[c.name]) != identity(c)]
    restarting = {c.name for c in restart}
    in_place = [c for c in changes.change if c.name not in restarting and c != old[c.name]]
    starting = [*changes.add, *restart]
    pinned = await service.open_links(starting)
    # From here, an address moving between instances belongs to its new owner: the old
    # one, stepping down or changed first, must leave it to a new owner that holds it.
    service.reassign_owners([old[name] for name in old], claimed)
    stopped: list[InstanceConfig] = []
    started = False
    updated: list[InstanceConfig] = []
    try:
        for name in [*changes.remove, *(c.name for c in restart)]:
            stopped.append(old[name])
            await service.remove(name)
        await service.add_many(starting)
        started = True
        for config in in_place:
            updated.append(config)
            await service.update_in_place(config)
    except BaseException:
        await _undo(service, stopped, starting if started else [], [old[c.name] for c in updated])
        service.index_owners()
        raise
    finally:
        service.unpin(pinned)


async def _undo(
    service: VrrpService,
    stopped: list[InstanceConfig],
    started: list[InstanceConfig],
    updated: list[InstanceConfig],
) -> None:
    """Back to the set that ran before; each step on its own, so one failure cannot stop
    the rest of the way back."""
    for config in reversed(updated):
        try:
            await service.update_in_place(config)
        except Exception as exc:
            log.error("%s: restoring its settings failed: %s", config.name, exc)
    for config in started:
        try:
            if config.name in service.instances:
                await service.remove(config.name)
        except Exception as exc:
            log.error("%s: stopping it failed: %s", config.name, exc)
    for config in stopped:
        try:
            await service.add_many([config])
        except Exception as exc:
            log.error("%s: restarting it failed: %s", config.name, exc)
