"""vrrp_sync_group: members follow one another between MASTER and BACKUP.

FAULT is shared through tracking (trackers.reevaluate); here a member's move to MASTER, or
from MASTER to BACKUP, is imposed on the other members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hanet.vrrp import State, StateChanged
from hanet.vrrpd.scripts import state_hook

if TYPE_CHECKING:
    from hanet.vrrpd.daemon import Vrrpd

FORCED = "sync group "


class SyncGroups:
    def __init__(self, daemon: Vrrpd) -> None:
        self.daemon = daemon
        self.group_state: dict[str, State] = {}

    def on_state(self, name: str, change: StateChanged) -> None:
        model, service = self.daemon.model, self.daemon.service
        group = next((g for g in model.sync_groups.values() if name in g.members), None)
        if group is None or service is None:
            return
        if not change.reason.startswith(FORCED) and change.new in (State.MASTER, State.BACKUP):
            reason = f"{FORCED}{group.name}: {name} became {change.new.name}"
            for member in group.members:
                if member != name and member in service.instances:
                    service.force(member, change.new, reason)
        self._group_notify(group.name, change.new)

    def _group_notify(self, group_name: str, state: State) -> None:
        if self.group_state.get(group_name) is state:
            return
        self.group_state[group_name] = state
        group = self.daemon.model.sync_groups[group_name]
        word = "STOP" if state is State.INITIALIZE else state.name
        self.daemon.run_hooks(
            state_hook(group, word), group.notify, ["GROUP", group_name, word, "0"]
        )
