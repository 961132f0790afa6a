"""Which routers' HA states to tell the server, and when: vrrpd's state events in, batched
``POST /hanet/v1/agents/{id}/ha_states`` bodies out. Pure: time is passed in; the caller
sends the report and says how it went.

Learned from Neutron's L3 agent (neutron/agent/l3/ha.py; ../shared/reference/
neutron-agents.md):
- a router that becomes active is reported only once it has stayed active for ``hold``
  (Neutron holds it ha_vrrp_advert_int, 2 s): while an old master disappears every backup
  is briefly master, and a backup->master->backup flap reported to the server moved
  things for nothing (bug 1837635);
- standby and fault are reported at once, since acting late on them is what hurts;
- reports are batched: one at once, then at most one per ``interval``, each with every
  router that is due, so 1,000 transitions are a few requests, not 1,000.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

ACTIVE, STANDBY, FAULT = "active", "standby", "fault"
HA_STATES = (ACTIVE, STANDBY, FAULT)
# vrrpd's state names (its events' "new"); INITIALIZE is an instance stopping or not
# started yet, which is no state of the router's to report.
VRRP_STATES = {"MASTER": ACTIVE, "BACKUP": STANDBY, "FAULT": FAULT}


def ha_state(vrrp_state: str) -> str | None:
    """The server's word for a vrrpd state; None for one that is not reported."""
    return VRRP_STATES.get(vrrp_state)


@dataclass(frozen=True)
class Report:
    """One batch to send: ``{"routers": states}``. ``number`` tells reports apart."""

    number: int
    states: Mapping[str, str]
    at: float

    def body(self) -> dict[str, dict[str, str]]:
        return {"routers": dict(self.states)}


@dataclass
class _Pending:
    state: str
    since: float  # when vrrpd said so
    ready: float  # when it may be reported


class HaReporter:
    """Feed it vrrpd's transitions (``observe``); ask ``take(now)`` for the report to send,
    then say ``sent`` or ``failed``. ``next_due(now)`` is when to ask again. One report
    is in flight at a time; the latest state of a router wins; what the server was told is
    remembered, so a state it already shows is not sent again; a failed report's routers
    go into the next batch."""

    def __init__(self, hold: float, interval: float, max_batch: int = 1000) -> None:
        if hold < 0 or interval < 0 or max_batch < 1:
            raise ValueError("hold and interval are seconds >= 0, max_batch >= 1")
        self.hold = hold
        self.interval = interval
        self.max_batch = max_batch
        self._pending: dict[str, _Pending] = {}
        self._reported: dict[str, str] = {}
        self._in_flight: Report | None = None
        self._last_sent: float | None = None  # when the last report was taken
        self._numbers = itertools.count(1)
        self._gone: set[str] = set()  # forgotten while in flight

    # Input -------------------------------------------------------------------------------

    def observe(self, router_id: str, state: str, at: float) -> None:
        """vrrpd says ``router_id`` is now ``state`` (one of HA_STATES) at time ``at``."""
        if state not in HA_STATES:
            raise ValueError(f"state: {state!r} is not one of {', '.join(HA_STATES)}")
        current = self._pending.get(router_id)
        if current is not None and current.state == state:
            return  # a repeat keeps its original time, so the hold is not restarted
        ready = at + self.hold if state == ACTIVE else at
        self._pending[router_id] = _Pending(state, at, ready)

    def assume_reported(self, router_id: str, state: str | None) -> None:
        """The server already shows this (a restarted agent reads ``ha_state`` from its
        documents), so the same state is not sent again."""
        if state is None:
            self._reported.pop(router_id, None)
        else:
            self._reported[router_id] = state

    def forget(self, router_id: str) -> None:
        """The router left this node: nothing more to say about it, and if it comes back
        its state is news again."""
        self._pending.pop(router_id, None)
        self._reported.pop(router_id, None)
        if self._in_flight is not None and router_id in self._in_flight.states:
            self._gone.add(router_id)

    # Output ------------------------------------------------------------------------------

    def take(self, now: float) -> Report | None:
        """The report to send now, or None: nothing due, one still in flight, or the last
        one was taken less than ``interval`` ago."""
        if self._in_flight is not None:
            return None
        if self._last_sent is not None and now < self._last_sent + self.interval:
            return None
        states: dict[str, str] = {}
        for router_id, pending in list(self._pending.items()):
            if self._reported.get(router_id) == pending.state:
                del self._pending[router_id]  # the server shows it already
                continue
            if pending.ready > now:
                continue
            states[router_id] = pending.state
            if len(states) == self.max_batch:
                break
        if not states:
            return None
        for router_id in states:
            del self._pending[router_id]
        self._in_flight = Report(next(self._numbers), states, now)
        self._last_sent = now
        return self._in_flight

    def sent(self, report: Report) -> None:
        """The server took the report."""
        gone = self._finish(report)
        self._reported.update((r, s) for r, s in report.states.items() if r not in gone)

    def failed(self, report: Report) -> None:
        """The report did not reach the server: its routers go into the next batch, unless
        vrrpd has said something newer about them meanwhile."""
        gone = self._finish(report)
        for router_id, state in report.states.items():
            if router_id not in self._pending and router_id not in gone:
                # Its hold was served before it was taken: due at once.
                self._pending[router_id] = _Pending(state, report.at, report.at)

    def _finish(self, report: Report) -> set[str]:
        if self._in_flight is None or self._in_flight.number != report.number:
            raise ValueError(f"report {report.number} is not the one in flight")
        self._in_flight = None
        gone, self._gone = self._gone, set()
        return gone

    def next_due(self, now: float) -> float | None:
        """When ``take`` may next return a report (``now`` or later); None if nothing is
        waiting, or a report is in flight (ask again once it is settled)."""
        if self._in_flight is not None:
            return None
        ready = [p.ready for r, p in self._pending.items() if self._reported.get(r) != p.state]
        if not ready:
            return None
        due = min(ready)
        if self._last_sent is not None:
            due = max(due, self._last_sent + self.interval)
        return max(due, now)

    @property
    def reported(self) -> Mapping[str, str]:
        """What the server was told last, by router."""
        return dict(self._reported)

    @property
    def waiting(self) -> int:
        """Routers with a state not reported yet (held, batched, or to retry)."""
        return sum(1 for r, p in self._pending.items() if self._reported.get(r) != p.state)
