"""vrrp_sync_group: members follow one another between MASTER and BACKUP.

FAULT is shared through tracking (trackers.reevaluate). A member that loses an election
(it hears a master that outranks it) takes the whole group to BACKUP at once. A member
whose Master_Down_Timer expires does not take over alone (WantsMaster): the group moves to
MASTER when every member wants to, or at once if a member is master already. That is
keepalived's rule (vrrp_sync_can_goto_master() in keepalived/vrrp/vrrp_sync.c, "prefer
backup state to avoid thrashing"): if one node outranks in one member and the other node
in another, the node that is master stays master, since a member outranked on the backup
node never wants to take over. Taking every member over at the first one's timer instead
thrashes there, about three times a second at advert_int 0.1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hanet.vrrp import State, StateChanged
from hanet.vrrpd.scripts import state_hook

if TYPE_CHECKING:
    from hanet.runtime.instance import Instance
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
        # Only an election moves the others: a member that starts, or leaves FAULT, as
        # BACKUP (one a reload adds to a master group, say) must not demote its group.
        elected = change.new is State.MASTER or (
            change.old is State.MASTER and change.new is State.BACKUP
        )
        if elected and not change.reason.startswith(FORCED):
            reason = f"{FORCED}{group.name}: {name} became {change.new.name}"
            for member in group.members:
                if member != name and member in service.instances:
                    service.force(member, change.new, reason)
        if elected or not (
            change.new is State.BACKUP and self.group_state.get(group.name) is State.MASTER
        ):
            self._group_notify(group.name, change.new)

    def on_wants_master(self, instance: Instance) -> None:
        model, service = self.daemon.model, self.daemon.service
        group = next((g for g in model.sync_groups.values() if instance.name in g.members), None)
        if group is None or service is None:
            return
        members = [service.instances[m] for m in group.members if m in service.instances]
        states = {m.machine.state for m in members}
        if State.MASTER not in states and not all(
            m.machine.wants_master for m in members if m is not instance
        ):
            return  # stays BACKUP; it says so again after another Master_Down_Interval
        reason = f"{FORCED}{group.name}: every member wants MASTER"
        if State.MASTER in states:
            reason = f"{FORCED}{group.name}: the group is MASTER"
        for member in members:
            if member.machine.state is State.BACKUP:
                service.force(member.name, State.MASTER, reason)

    def _group_notify(self, group_name: str, state: State) -> None:
        if self.group_state.get(group_name) is state:
            return
        self.group_state[group_name] = state
        group = self.daemon.model.sync_groups[group_name]
        word = "STOP" if state is State.INITIALIZE else state.name
        self.daemon.run_hooks(
            state_hook(group, word), group.notify, ["GROUP", group_name, word, "0"]
        )
