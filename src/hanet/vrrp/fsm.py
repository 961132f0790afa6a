"""The VRRP state machine of RFC 5798 §6.4 (and RFC 3768 §6.4 for v2), with no I/O.

The caller passes events with the current time and gets back the actions to carry out. Time is
a float in seconds from any monotonic clock. The machine keeps two deadlines (the Adver_Timer
and the Master_Down_Timer); the caller sleeps until ``next_deadline()`` and then hands in a
``Timeout``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final

from hanet.vrrp.codec import IPAddress


class State(IntEnum):
    INITIALIZE = 0
    BACKUP = 1
    MASTER = 2
    FAULT = 3  # keepalived's: a tracked interface, script or file failed; no adverts


# RFC 5798 §6.4: every state change the protocol allows, plus keepalived's FAULT state.
# Anything else is a bug, and the state setter refuses it.
ALLOWED_TRANSITIONS: Final[frozenset[tuple[State, State]]] = frozenset(
    {
        (State.INITIALIZE, State.BACKUP),
        (State.INITIALIZE, State.MASTER),
        (State.BACKUP, State.MASTER),
        (State.MASTER, State.BACKUP),
        (State.BACKUP, State.INITIALIZE),
        (State.MASTER, State.INITIALIZE),
        (State.INITIALIZE, State.FAULT),
        (State.BACKUP, State.FAULT),
        (State.MASTER, State.FAULT),
        (State.FAULT, State.BACKUP),
        (State.FAULT, State.INITIALIZE),
    }
)


class TransitionError(RuntimeError):
    """A state change that ALLOWED_TRANSITIONS does not hold."""


@dataclass(frozen=True)
class Params:
    """What the protocol needs to know about one virtual router (RFC 5798 §6.1)."""

    vrid: int
    priority: int
    primary_address: IPAddress
    advert_int_cs: int = 100
    version: int = 3
    preempt: bool = True
    preempt_delay: float = 0.0
    accept_mode: bool = False
    lower_prio_no_advert: bool = False
    higher_prio_send_advert: bool = False
    # A member of a sync group does not take over on its own when its Master_Down_Timer
    # expires: it says it wants to (WantsMaster) and stays BACKUP until the group moves.
    group_member: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.vrid <= 255:
            raise ValueError(f"vrid {self.vrid} is outside 1..255")
        if not 1 <= self.priority <= 255:
            raise ValueError(f"priority {self.priority} is outside 1..255")
        if self.version not in (2, 3):
            raise ValueError(f"version {self.version} is not 2 or 3")
        if not 1 <= self.advert_int_cs <= 4095:
            raise ValueError(f"advert interval {self.advert_int_cs} cs is outside 1..4095")
        if self.version == 2 and self.advert_int_cs % 100:
            raise ValueError("a v2 advert interval is whole seconds")
        if self.preempt_delay < 0:
            raise ValueError("preempt_delay is negative")

    @property
    def is_owner(self) -> bool:
        """Priority 255 marks the address owner (RFC 5798 §5.2.4)."""
        return self.priority == 255


# Events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Startup:
    pass


@dataclass(frozen=True)
class Shutdown:
    pass


@dataclass(frozen=True)
class Timeout:
    """A deadline from next_deadline() has passed."""


@dataclass(frozen=True)
class AdvertReceived:
    """An advert for this VRID that already passed the receive checks of §7.1."""

    priority: int
    advert_int_cs: int
    source: IPAddress


@dataclass(frozen=True)
class PriorityChanged:
    """The effective priority moved (track weights); 1..254, the owner's 255 never moves."""

    priority: int


@dataclass(frozen=True)
class FaultChanged:
    """A tracked interface, script or file failed (True) or recovered (False)."""

    faulty: bool
    reason: str = ""


@dataclass(frozen=True)
class ForceState:
    """A sync group moves its members together (keepalived's vrrp_sync_group)."""

    state: State
    reason: str


@dataclass(frozen=True)
class HoldBackup:
    """Hold the router in BACKUP until released (an agent's forced standby).

    Unlike ForceState(BACKUP), which the next Master_Down_Timer undoes, a hold lasts: a
    held master steps down (priority 0, so the peer takes over after Skew_Time) and a held
    backup never takes over, whatever its timers say. ``held=False`` releases it: an
    ordinary backup again, with a fresh Master_Down_Timer."""

    held: bool
    reason: str = ""


Event = (
    Startup | Shutdown | Timeout | AdvertReceived | PriorityChanged | FaultChanged | ForceState
    | HoldBackup
)  # fmt: skip


# Actions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendAdvert:
    priority: int


@dataclass(frozen=True)
class TakeAddresses:
    """Add the virtual addresses and announce them (gratuitous ARP / unsolicited NA)."""

    accept_mode: bool


@dataclass(frozen=True)
class ReleaseAddresses:
    pass


@dataclass(frozen=True)
class AnnounceAddresses:
    """Announce the addresses again: another router believed it was master, so hosts may
    have learnt its MAC for them (split brain healing)."""


@dataclass(frozen=True)
class StateChanged:
    old: State
    new: State
    reason: str


@dataclass(frozen=True)
class WantsMaster:
    """A sync group member's Master_Down_Timer expired; it stays BACKUP until its group
    moves it (ForceState), and says so again each Master_Down_Interval until then."""

    reason: str


Action = (
    SendAdvert | TakeAddresses | ReleaseAddresses | AnnounceAddresses | StateChanged | WantsMaster
)

# Actions are immutable, so the one a master returns ten times a second is made once.
_SEND_ADVERT = tuple(SendAdvert(priority) for priority in range(256))


def _send_advert(priority: int) -> SendAdvert:
    return _SEND_ADVERT[priority]


@dataclass
class VrrpMachine:
    """One virtual router's protocol state."""

    params: Params
    _state: State = field(default=State.INITIALIZE, init=False)
    master_adver_interval_cs: int = field(default=0, init=False)
    adver_deadline: float | None = field(default=None, init=False)
    master_down_deadline: float | None = field(default=None, init=False)
    preempt_not_before: float | None = field(default=None, init=False)
    master_address: IPAddress | None = field(default=None, init=False)
    master_priority: int | None = field(default=None, init=False)
    master_resigned: bool = field(default=False, init=False)
    # A group member whose own election would make it master (see WantsMaster).
    wants_master: bool = field(default=False, init=False)
    priority: int = field(default=0, init=False)
    faulty: bool = field(default=False, init=False)
    held: bool = field(default=False, init=False)  # see HoldBackup
    # Until when a lower-priority master's adverts go unanswered (see _master_advert).
    quiet_to_lower_until: float | None = field(default=None, init=False)
    hold_reason: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.master_adver_interval_cs = self.params.advert_int_cs
        self.priority = self.params.priority

    # State -------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    def _move(self, new: State, reason: str) -> StateChanged:
        old = self._state
        if (old, new) not in ALLOWED_TRANSITIONS:
            raise TransitionError(f"{old.name} -> {new.name} is not a VRRP transition")
        self._state = new
        self.wants_master = False
        return StateChanged(old, new, reason)

    # Timers (RFC 5798 §6.1, RFC 3768 §6.1) ----------------------------------------------

    @property
    def skew_time(self) -> float:
        """Seconds; v2 ignores the interval, v3 scales with Master_Adver_Interval."""
        weight = (256 - self.priority) / 256
        if self.params.version == 2:
            return weight
        return weight * self.master_adver_interval_cs / 100

    @property
    def master_down_interval(self) -> float:
        return 3 * self.master_adver_interval_cs / 100 + self.skew_time

    @property
    def advert_interval(self) -> float:
        return self.params.advert_int_cs / 100

    def next_advert_after(self, now: float) -> float:
        """When the advert after one sent at ``now`` is due: on a grid of the interval.

        Every instance with the same interval then sends at the same instants, so a
        thousand of them cost the master one wake-up per interval and reach each backup as
        one burst. The wait is exactly one interval in steady state (a late wake-up is
        absorbed, not carried on); after an out-of-turn advert (becoming master, a priority
        change) it is half to one and a half intervals, far inside any backup's
        Master_Down_Interval of three intervals and more."""
        interval = self.advert_interval
        due = math.floor((now + interval) / interval) * interval
        return due if due - now >= interval / 2 else due + interval

    def next_deadline(self) -> float | None:
        advert, down = self.adver_deadline, self.master_down_deadline
        if advert is None:
            return down
        if down is None or advert < down:
            return advert
        return down

    # Event dispatch ------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one event; events that mean nothing in the current state are dropped."""
        if isinstance(event, AdvertReceived):  # the hot path: thousands a second
            if self._state is State.BACKUP:
                return self._backup_advert(event, now)
            if self._state is State.MASTER:
                return self._master_advert(event, now)
            return []
        if isinstance(event, Timeout):  # the next hottest: every advert a master sends
            if self._state is State.MASTER or self._state is State.BACKUP:
                return self._timeout(now)
            return []
        if isinstance(event, PriorityChanged):
            return self._priority_changed(event.priority, now)
        if isinstance(event, FaultChanged):
            return self._fault_changed(event, now)
        if isinstance(event, ForceState):
            return self._forced(event, now)
        if isinstance(event, HoldBackup):
            return self._hold(event, now)
        if isinstance(event, Startup):
            return self._startup(now) if self._state is State.INITIALIZE else []
        if self._state is State.INITIALIZE:
            return []
        if isinstance(event, Shutdown):
            return self._shutdown()
        return []  # every event is handled above

    # Tracking (keepalived) -----------------------------------------------------------------

    def _priority_changed(self, priority: int, now: float) -> list[Action]:
        if self.params.is_owner or priority == self.priority:
            return []
        if not 1 <= priority <= 254:
            raise ValueError(f"effective priority {priority} is outside 1..254")
        self.priority = priority
        if self._state is State.MASTER:
            # Tell the backups at once: one with preempt may now outrank us.
            self.adver_deadline = self.next_advert_after(now)
            return [SendAdvert(priority)]
        return []

    def _hold(self, event: HoldBackup, now: float) -> list[Action]:
        self.held, self.hold_reason = event.held, event.reason if event.held else ""
        if event.held and self._state is State.MASTER:
            return self._step_down(now, f"held in BACKUP: {event.reason or 'no reason given'}")
        if not event.held and self._state is State.BACKUP and self.master_down_deadline is None:
            # Released: an ordinary backup, that takes over if no master is heard.
            self.master_down_deadline = now + self.master_down_interval
        return []

    def _step_down(self, now: float, reason: str) -> list[Action]:
        self.adver_deadline = None
        self.master_down_deadline = now + self.master_down_interval
        # Priority 0, as a master that stops: the peer takes over after Skew_Time, not
        # after a whole Master_Down_Interval (for a sync group: all members in one step).
        change = self._move(State.BACKUP, reason)
        return [SendAdvert(0), ReleaseAddresses(), change]

    def _forced(self, event: ForceState, now: float) -> list[Action]:
        if event.state is State.MASTER and self._state is State.BACKUP and not self.held:
            return self._become_master(now, event.reason)
        if event.state is State.BACKUP and self._state is State.MASTER:
            return self._step_down(now, event.reason)
        if event.state is State.FAULT:
            return self._fault_changed(FaultChanged(True, event.reason), now)
        return []

    def _fault_changed(self, event: FaultChanged, now: float) -> list[Action]:
        self.faulty = event.faulty
        if event.faulty and self._state in (State.BACKUP, State.MASTER):
            actions: list[Action] = []
            if self._state is State.MASTER:
                # Priority 0 lets a backup take over after Skew_Time, not a down interval.
                actions += [SendAdvert(0), ReleaseAddresses()]
            self.adver_deadline = self.master_down_deadline = None
            self.master_address = None
            actions.append(self._move(State.FAULT, event.reason or "fault"))
            return actions
        if not event.faulty and self._state is State.FAULT:
            self.master_adver_interval_cs = self.params.advert_int_cs
            self.master_down_deadline = now + self.master_down_interval
            return [self._move(State.BACKUP, event.reason or "fault cleared")]
        return []

    # Initialize (§6.4.1) -------------------------------------------------------------------

    def _startup(self, now: float) -> list[Action]:
        if self.params.preempt_delay:
            self.preempt_not_before = now + self.params.preempt_delay
        if self.faulty:
            return [self._move(State.FAULT, "a tracked object is down at startup")]
        if self.params.is_owner and not self.held:
            return self._become_master(now, "address owner (priority 255) starts as master")
        self.master_adver_interval_cs = self.params.advert_int_cs
        self.master_down_deadline = now + self.master_down_interval
        return [self._move(State.BACKUP, "startup")]

    def _shutdown(self) -> list[Action]:
        actions: list[Action] = []
        if self._state is State.MASTER:
            # §6.4.3: a stopping master sends priority 0 so a backup takes over after skew.
            actions += [SendAdvert(0), ReleaseAddresses()]
        self.master_address = None
        self.adver_deadline = self.master_down_deadline = None
        actions.append(self._move(State.INITIALIZE, "shutdown"))
        return actions

    def _timeout(self, now: float) -> list[Action]:
        if self._state is State.BACKUP:
            if self.master_down_deadline is not None and now >= self.master_down_deadline:
                if self.held:
                    # Nothing to do when it fires; the next master's advert re-arms it,
                    # and so does the release.
                    self.master_down_deadline = None
                    return []
                reason = (
                    "master left (priority 0) and Skew_Time passed"
                    if self.master_resigned
                    else "master down timer expired"
                )
                if self.params.group_member:
                    self.wants_master = True
                    self.master_down_deadline = now + self.master_down_interval
                    return [WantsMaster(reason)]
                return self._become_master(now, reason)
            return []
        if self.adver_deadline is not None and now >= self.adver_deadline:
            self.adver_deadline = self.next_advert_after(now)
            return [_send_advert(self.priority)]
        return []

    def _become_master(self, now: float, reason: str) -> list[Action]:
        self.master_down_deadline = None
        self.adver_deadline = self.next_advert_after(now)
        self.master_address = self.params.primary_address
        self.master_priority = self.priority
        self.preempt_not_before = None
        self.master_resigned = False
        self.quiet_to_lower_until = None
        change = self._move(State.MASTER, reason)
        return [SendAdvert(self.priority), TakeAddresses(self.params.accept_mode), change]

    # Backup (§6.4.2) -----------------------------------------------------------------------

    def _backup_advert(self, advert: AdvertReceived, now: float) -> list[Action]:
        if advert.priority == 0:
            # The master is leaving: take over after Skew_Time only.
            self.master_down_deadline = now + self.skew_time
            self.master_address = None
            self.master_resigned = True
            return []
        if self._accepts_master(advert, now):
            if self.params.version == 3:
                self.master_adver_interval_cs = advert.advert_int_cs
            self.master_down_deadline = now + self.master_down_interval
            self.master_address = advert.source
            self.master_priority = advert.priority
            self.master_resigned = False
            self.wants_master = False
        # Otherwise: a lower-priority master that we will preempt when the timer expires.
        return []

    def _accepts_master(self, advert: AdvertReceived, now: float) -> bool:
        if not self.params.preempt or advert.priority >= self.priority:
            return True
        if self.params.preempt_delay:
            # keepalived's preempt_delay: leave a lower-priority master alone for a while
            # after startup or after first seeing it.
            if self.preempt_not_before is None:
                self.preempt_not_before = now + self.params.preempt_delay
            return now < self.preempt_not_before
        return False

    # Master (§6.4.3) -----------------------------------------------------------------------

    def _master_advert(self, advert: AdvertReceived, now: float) -> list[Action]:
        mine = self.priority
        if advert.priority == 0:
            self.adver_deadline = self.next_advert_after(now)
            return [SendAdvert(mine)]
        higher = advert.priority > mine or (
            advert.priority == mine and int(advert.source) > int(self.params.primary_address)
        )
        if higher:
            actions: list[Action] = []
            if self.params.higher_prio_send_advert:
                # keepalived's vrrp_higher_prio_send_advert: one last advert before yielding,
                # so that a peer that missed ours learns of us.
                actions.append(SendAdvert(mine))
            self.adver_deadline = None
            if self.params.version == 3:
                self.master_adver_interval_cs = advert.advert_int_cs
            self.master_down_deadline = now + self.master_down_interval
            self.master_address = advert.source
            self.master_priority = advert.priority
            if advert.priority > mine:
                reason = f"higher priority master {advert.source} (priority {advert.priority})"
            else:
                reason = (f"equal-priority master {advert.source} (priority {advert.priority}) "
                          f"with a higher address")  # fmt: skip
            return [*actions, ReleaseAddresses(), self._move(State.BACKUP, reason)]
        # Another master exists and will yield to us; hosts may have followed its GARPs.
        # Answered once per Master_Down_Interval only: a master that heard the answer steps
        # down at once, and one that did not (lost, or a starved peer still reading a
        # backlog) is reached as soon by our regular adverts. Answering every one of its
        # adverts with an advert and a burst of GARPs fed a storm when busy nodes flapped
        # (docs/BENCHMARKS.md, the lab cloud).
        if self.quiet_to_lower_until is not None and now < self.quiet_to_lower_until:
            return []
        self.quiet_to_lower_until = now + self.master_down_interval
        if self.params.lower_prio_no_advert:
            return [AnnounceAddresses()]
        # RFC 9568 §6.4.3 and keepalived: answer a lower-priority master at once, so that
        # it steps down without waiting for our next regular advert.
        self.adver_deadline = self.next_advert_after(now)
        return [SendAdvert(mine), AnnounceAddresses()]
