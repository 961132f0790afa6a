"""hanet-agent's HA state reporter: what the server is told and when, as Neutron's L3
agent learned it (a brief active is not reported, standby at once, batches)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hanet.agent.reporting import ACTIVE, FAULT, STANDBY, HaReporter, Report, ha_state

HOLD = 0.1  # one advert interval: v3 at 0.1 s, as the lab runs it
INTERVAL = 0.1


def reporter() -> HaReporter:
    return HaReporter(hold=HOLD, interval=INTERVAL)


def send(r: HaReporter, now: float) -> dict[str, str] | None:
    """Take the report due at ``now`` and have the server accept it; its body's routers."""
    report = r.take(now)
    if report is None:
        return None
    r.sent(report)
    return report.body()["routers"]


def test_standby_is_reported_at_once() -> None:
    r = reporter()
    r.observe("r1", STANDBY, at=10.0)
    assert r.next_due(10.0) == 10.0
    assert send(r, 10.0) == {"r1": STANDBY}
    assert r.reported == {"r1": STANDBY}


def test_active_is_reported_once_it_has_held_for_one_interval() -> None:
    r = reporter()
    r.observe("r1", ACTIVE, at=10.0)
    assert send(r, 10.05) is None
    assert r.next_due(10.05) == pytest.approx(10.1)
    assert send(r, 10.1) == {"r1": ACTIVE}


def test_an_active_that_reverts_within_the_hold_is_never_reported() -> None:
    r = reporter()
    r.assume_reported("r1", STANDBY)  # what the server shows
    r.observe("r1", ACTIVE, at=10.0)
    r.observe("r1", STANDBY, at=10.05)  # every backup was briefly master
    for now in (10.05, 10.1, 10.2, 13.0):
        assert send(r, now) is None
    assert r.next_due(13.0) is None
    assert r.waiting == 0


def test_a_repeat_is_not_sent_again_and_a_repeat_event_keeps_its_hold() -> None:
    r = reporter()
    r.observe("r1", STANDBY, at=0.0)
    assert send(r, 0.0) == {"r1": STANDBY}
    r.observe("r1", STANDBY, at=1.0)
    assert send(r, 1.0) is None
    r.observe("r1", ACTIVE, at=2.0)
    r.observe("r1", ACTIVE, at=2.09)  # vrrpd's snapshot after a reconnect says it again
    assert send(r, 2.1) == {"r1": ACTIVE}


def test_the_latest_state_wins() -> None:
    r = reporter()
    r.observe("r1", STANDBY, at=0.0)
    r.observe("r1", FAULT, at=0.01)
    assert send(r, 0.02) == {"r1": FAULT}


def test_a_thousand_transitions_are_a_few_reports() -> None:
    r = reporter()
    bodies = []
    for n in range(1000):  # the crash of a peer: every router's backup here takes over
        r.observe(f"r{n}", ACTIVE, at=5.0 + n * 0.0002)
    now = 5.0
    while now < 6.0:
        body = send(r, now)
        if body:
            bodies.append(body)
        due = r.next_due(now)
        if due is None:
            break
        now = due
    assert sum(len(b) for b in bodies) == 1000
    assert len(bodies) <= 3
    assert all(state == ACTIVE for b in bodies for state in b.values())


def test_batches_are_spaced_by_the_interval() -> None:
    r = reporter()
    r.observe("r1", STANDBY, at=0.0)
    assert send(r, 0.0) == {"r1": STANDBY}
    r.observe("r2", STANDBY, at=0.01)
    r.observe("r3", FAULT, at=0.02)
    assert send(r, 0.05) is None
    assert r.next_due(0.05) == pytest.approx(0.1)
    assert send(r, 0.1) == {"r2": STANDBY, "r3": FAULT}


def test_a_big_batch_is_split() -> None:
    r = HaReporter(hold=0.0, interval=0.0, max_batch=2)
    for n in range(5):
        r.observe(f"r{n}", STANDBY, at=0.0)
    assert [len(send(r, 0.0) or {}) for _ in range(4)] == [2, 2, 1, 0]


def test_one_report_in_flight_and_a_failed_one_is_retried_in_the_next_batch() -> None:
    r = reporter()
    r.observe("r1", STANDBY, at=0.0)
    first = r.take(0.0)
    assert first is not None
    r.observe("r2", STANDBY, at=0.01)
    assert r.take(1.0) is None  # the first is still in flight
    assert r.next_due(1.0) is None
    r.failed(first)
    assert r.reported == {}
    assert r.next_due(1.0) == 1.0
    assert send(r, 1.0) == {"r1": STANDBY, "r2": STANDBY}


def test_a_failed_report_does_not_undo_a_newer_state() -> None:
    r = reporter()
    r.observe("r1", STANDBY, at=0.0)
    report = r.take(0.0)
    assert report is not None
    r.observe("r1", ACTIVE, at=0.05)  # while the report was on its way
    r.failed(report)
    assert send(r, 0.1) is None  # active is still held, standby is not resent
    assert send(r, 0.16) == {"r1": ACTIVE}


def test_a_router_gone_while_in_flight_is_forgotten() -> None:
    r = reporter()
    r.observe("r1", STANDBY, at=0.0)
    report = r.take(0.0)
    assert report is not None
    r.forget("r1")
    r.failed(report)
    assert r.next_due(1.0) is None
    with pytest.raises(ValueError, match="not the one in flight"):
        r.sent(report)


def test_vrrpd_state_names() -> None:
    assert [ha_state(s) for s in ("MASTER", "BACKUP", "FAULT", "INITIALIZE")] == [
        ACTIVE, STANDBY, FAULT, None]  # fmt: skip
    with pytest.raises(ValueError, match="state"):
        reporter().observe("r1", "MASTER", at=0.0)


EVENTS = st.lists(
    st.tuples(st.sampled_from(["r1", "r2", "r3"]), st.sampled_from([ACTIVE, STANDBY, FAULT]),
              st.floats(0, 0.5), st.booleans()),
    max_size=40,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_the_server_ends_with_each_routers_last_state(
    events: list[tuple[str, str, float, bool]],
) -> None:
    """Whatever the order, gaps and failures: once things settle, the server shows each
    router's last state; no report repeats what the server shows; no active is reported
    that did not last one hold."""
    r = reporter()
    now = 0.0
    server: dict[str, str] = {}
    last: dict[str, str] = {}
    since: dict[str, float] = {}
    for router, state, gap, fails in events:
        now += gap
        if last.get(router) != state:
            since[router] = now
        last[router] = state
        r.observe(router, state, at=now)
        report: Report | None = r.take(now)
        if report is not None:
            for rid, s in report.states.items():
                assert server.get(rid) != s
                if s == ACTIVE:
                    assert last[rid] != ACTIVE or now - since[rid] >= HOLD - 1e-9
            if fails:
                r.failed(report)
            else:
                r.sent(report)
                server.update(report.states)
    for _ in range(10):
        due = r.next_due(now)
        if due is None:
            break
        now = due
        body = send(r, now)
        server.update(body or {})
    assert server == last
