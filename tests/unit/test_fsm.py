"""The VRRP state machine: one test per rule of RFC 5798 §6 / RFC 3768 §6."""

from __future__ import annotations

import ipaddress

import pytest

from hanet.vrrp import (
    ALLOWED_TRANSITIONS,
    AdvertReceived,
    AnnounceAddresses,
    FaultChanged,
    ForceState,
    HoldBackup,
    Params,
    PriorityChanged,
    ReleaseAddresses,
    SendAdvert,
    Shutdown,
    Startup,
    State,
    StateChanged,
    TakeAddresses,
    Timeout,
    TransitionError,
    VrrpMachine,
    WantsMaster,
)

ME = ipaddress.IPv4Address("10.0.0.2")
LOWER_ADDR = ipaddress.IPv4Address("10.0.0.1")
HIGHER_ADDR = ipaddress.IPv4Address("10.0.0.3")


def machine(**kw: object) -> VrrpMachine:
    base: dict[str, object] = dict(vrid=1, priority=100, primary_address=ME, advert_int_cs=100)
    base.update(kw)
    return VrrpMachine(Params(**base))  # type: ignore[arg-type]


def advert(priority: int, source: ipaddress.IPv4Address = HIGHER_ADDR, interval: int = 100):
    return AdvertReceived(priority=priority, advert_int_cs=interval, source=source)


def run_to_master(m: VrrpMachine, now: float = 0.0) -> float:
    m.handle(Startup(), now)
    deadline = m.next_deadline()
    assert deadline is not None
    m.handle(Timeout(), deadline)
    assert m.state is State.MASTER
    return deadline


def test_startup_non_owner_goes_backup_with_master_down_timer_6_4_1() -> None:
    m = machine(priority=100)
    actions = m.handle(Startup(), 10.0)
    assert m.state is State.BACKUP
    assert actions == [StateChanged(State.INITIALIZE, State.BACKUP, "startup")]
    # §6.1: Master_Down_Interval = 3 * Master_Adver_Interval + Skew_Time
    assert m.next_deadline() == pytest.approx(10.0 + 3 * 1.0 + (256 - 100) / 256)


def test_startup_owner_goes_master_at_once_6_4_1() -> None:
    m = machine(priority=255)
    actions = m.handle(Startup(), 0.0)
    assert m.state is State.MASTER
    assert actions[:2] == [SendAdvert(255), TakeAddresses(False)]


def test_skew_time_v3_scales_with_interval_6_1() -> None:
    m = machine(priority=200, advert_int_cs=10, version=3)
    assert m.skew_time == pytest.approx((256 - 200) * 0.10 / 256)
    assert m.master_down_interval == pytest.approx(0.3 + (256 - 200) * 0.10 / 256)


def test_skew_time_v2_is_interval_independent_rfc3768_6_1() -> None:
    m = machine(priority=200, advert_int_cs=300, version=2)
    assert m.skew_time == pytest.approx((256 - 200) / 256)


def test_backup_becomes_master_when_master_down_timer_fires_6_4_2() -> None:
    m = machine()
    m.handle(Startup(), 0.0)
    assert m.handle(Timeout(), 1.0) == []  # not yet
    deadline = m.next_deadline()
    assert deadline is not None
    actions = m.handle(Timeout(), deadline)
    assert m.state is State.MASTER
    assert SendAdvert(100) in actions and TakeAddresses(False) in actions


def test_backup_resets_timer_on_higher_advert_6_4_2() -> None:
    m = machine()
    m.handle(Startup(), 0.0)
    m.handle(advert(150), 2.0)
    assert m.next_deadline() == pytest.approx(2.0 + m.master_down_interval)
    assert m.master_address == HIGHER_ADDR


def test_backup_learns_master_adver_interval_v3_6_4_2() -> None:
    m = machine(advert_int_cs=100, version=3)
    m.handle(Startup(), 0.0)
    m.handle(advert(150, interval=20), 1.0)
    assert m.master_adver_interval_cs == 20
    assert m.next_deadline() == pytest.approx(1.0 + 0.6 + (256 - 100) * 0.2 / 256)


def test_v2_does_not_learn_the_interval_rfc3768() -> None:
    m = machine(advert_int_cs=100, version=2)
    m.handle(Startup(), 0.0)
    m.handle(advert(150, interval=300), 1.0)
    assert m.master_adver_interval_cs == 100


def test_backup_preempts_lower_priority_master_6_4_2() -> None:
    m = machine(priority=150)
    m.handle(Startup(), 0.0)
    first = m.next_deadline()
    m.handle(advert(100), 1.0)  # discarded: Preempt_Mode is true and it is lower
    assert m.next_deadline() == first


def test_nopreempt_backup_keeps_lower_priority_master_6_4_2() -> None:
    m = machine(priority=150, preempt=False)
    m.handle(Startup(), 0.0)
    m.handle(advert(100), 1.0)
    assert m.next_deadline() == pytest.approx(1.0 + m.master_down_interval)


def test_preempt_delay_holds_off_preemption_then_preempts() -> None:
    m = machine(priority=150, preempt_delay=5.0)
    m.handle(Startup(), 0.0)
    m.handle(advert(100), 1.0)  # inside the delay: accepted as master
    assert m.next_deadline() == pytest.approx(1.0 + m.master_down_interval)
    held = m.next_deadline()
    m.handle(advert(100), 6.0)  # delay over: discarded, the timer runs out
    assert m.next_deadline() == held


def test_priority_zero_makes_backup_wait_skew_time_only_6_4_2() -> None:
    m = machine(priority=100)
    m.handle(Startup(), 0.0)
    m.handle(advert(0), 2.0)
    deadline = m.next_deadline()
    assert deadline == pytest.approx(2.0 + (256 - 100) / 256 * 1.0)
    changes = [a for a in m.handle(Timeout(), deadline) if isinstance(a, StateChanged)]
    assert changes[0].reason == "master left (priority 0) and Skew_Time passed"


def test_master_sends_advert_every_interval_6_4_3() -> None:
    m = machine()
    run_to_master(m)
    first = m.next_deadline()
    assert first is not None
    assert m.handle(Timeout(), first) == [SendAdvert(100)]
    assert m.next_deadline() == pytest.approx(first + 1.0)
    assert m.handle(Timeout(), first + 1.0) == [SendAdvert(100)]


def test_adverts_keep_to_a_grid_of_the_interval() -> None:
    """§6.4.3 resets Adver_Timer to Advertisement_Interval after each advert. hanet puts
    the deadlines on a grid of the interval, so that instances with one interval send
    together; a late wake-up is absorbed, and the first wait after becoming master is half
    to one and a half intervals (a backup waits three and more)."""
    m = machine(advert_int_cs=10)  # 0.1 s
    m.handle(Startup(), 0.0)
    m.handle(Timeout(), 0.3654)  # Master_Down_Interval passed: master, first advert now
    assert m.state is State.MASTER
    assert m.next_deadline() == pytest.approx(0.5)
    assert m.handle(Timeout(), 0.5031) == [SendAdvert(100)]  # 3.1 ms late
    assert m.next_deadline() == pytest.approx(0.6)  # not 0.6031


def test_two_instances_with_one_interval_share_their_advert_deadlines() -> None:
    a, b = machine(advert_int_cs=10), machine(advert_int_cs=10, priority=150)
    a.handle(Startup(), 0.0)
    b.handle(Startup(), 0.0137)
    a.handle(Timeout(), a.next_deadline() or 0.0)
    b.handle(Timeout(), b.next_deadline() or 0.0)
    assert a.state is b.state is State.MASTER
    assert a.next_deadline() == b.next_deadline()


def test_master_yields_to_higher_priority_6_4_3() -> None:
    m = machine()
    t = run_to_master(m)
    actions = m.handle(advert(200, source=LOWER_ADDR), t + 0.1)
    assert m.state is State.BACKUP
    assert actions[0] == ReleaseAddresses()


def test_tie_break_higher_primary_address_wins_6_4_3() -> None:
    m = machine()
    t = run_to_master(m)
    m.handle(advert(100, source=LOWER_ADDR), t + 0.1)
    assert m.state is State.MASTER
    actions = m.handle(advert(100, source=HIGHER_ADDR), t + 0.2)
    assert m.state is State.BACKUP
    (change,) = [a for a in actions if isinstance(a, StateChanged)]
    assert change.reason == "equal-priority master 10.0.0.3 (priority 100) with a higher address"


def test_master_yielding_to_a_higher_priority_says_so() -> None:
    m = machine()
    t = run_to_master(m)
    actions = m.handle(advert(200, source=LOWER_ADDR), t + 0.1)
    (change,) = [a for a in actions if isinstance(a, StateChanged)]
    assert change.reason == "higher priority master 10.0.0.1 (priority 200)"


def test_tie_break_compares_ipv6_as_unsigned_integers() -> None:
    me = ipaddress.IPv6Address("fe80::8000:0:0:1")
    m = machine(primary_address=me)
    t = run_to_master(m)
    m.handle(advert(100, source=ipaddress.IPv6Address("fe80::1")), t + 0.1)  # type: ignore[arg-type]
    assert m.state is State.MASTER


def test_master_answers_lower_priority_at_once_rfc9568_6_4_3() -> None:
    m = machine()
    t = run_to_master(m)
    actions = m.handle(advert(50, source=HIGHER_ADDR), t + 0.1)
    assert actions == [SendAdvert(100), AnnounceAddresses()]


def test_master_answers_a_lower_master_once_per_master_down_interval() -> None:
    # A starved peer that keeps advertising (or a backlog of its adverts read at once) gets
    # one answer, not an advert and a burst of GARPs for each of its adverts.
    m = machine()
    t = run_to_master(m)
    assert m.handle(advert(50), t + 0.1) == [SendAdvert(100), AnnounceAddresses()]
    for step in range(1, 20):
        assert m.handle(advert(50), t + 0.1 + step * 0.01) == []
    quiet_until = t + 0.1 + m.master_down_interval
    assert m.handle(advert(50), quiet_until - 0.01) == []
    assert m.handle(advert(50), quiet_until) == [SendAdvert(100), AnnounceAddresses()]
    assert m.state is State.MASTER


def test_the_quiet_to_a_lower_master_ends_with_mastership() -> None:
    m = machine()
    t = run_to_master(m)
    m.handle(advert(50), t + 0.1)
    m.handle(advert(200), t + 0.2)  # a higher master: we step down
    assert m.state is State.BACKUP
    t2 = t + 0.2 + m.master_down_interval + 0.01
    m.handle(Timeout(), t2)
    assert m.state is State.MASTER
    assert m.handle(advert(50), t2 + 0.01) == [SendAdvert(100), AnnounceAddresses()]


def test_lower_prio_no_advert_stays_silent_but_reannounces() -> None:
    m = machine(lower_prio_no_advert=True)
    t = run_to_master(m)
    assert m.handle(advert(50), t + 0.1) == [AnnounceAddresses()]


def test_master_answers_priority_zero_with_advert_6_4_3() -> None:
    m = machine()
    t = run_to_master(m)
    assert m.handle(advert(0), t + 0.1) == [SendAdvert(100)]
    assert m.state is State.MASTER


def test_master_shutdown_sends_priority_zero_6_4_3() -> None:
    m = machine()
    t = run_to_master(m)
    actions = m.handle(Shutdown(), t + 0.1)
    assert actions[:2] == [SendAdvert(0), ReleaseAddresses()]
    assert m.state is State.INITIALIZE
    assert m.next_deadline() is None


def test_backup_shutdown_is_silent_6_4_2() -> None:
    m = machine()
    m.handle(Startup(), 0.0)
    actions = m.handle(Shutdown(), 1.0)
    assert [a for a in actions if isinstance(a, SendAdvert)] == []
    assert m.state is State.INITIALIZE


def test_accept_mode_is_passed_to_take_addresses_6_1() -> None:
    m = machine(accept_mode=True)
    m.handle(Startup(), 0.0)
    deadline = m.next_deadline()
    assert deadline is not None
    assert TakeAddresses(True) in m.handle(Timeout(), deadline)


def test_events_in_the_wrong_state_are_dropped() -> None:
    m = machine()
    assert m.handle(advert(200), 0.0) == []
    assert m.handle(Timeout(), 0.0) == []
    assert m.state is State.INITIALIZE
    m.handle(Startup(), 0.0)
    assert m.handle(Startup(), 0.1) == []


def test_transition_table_is_enforced() -> None:
    m = machine()
    assert (State.INITIALIZE, State.INITIALIZE) not in ALLOWED_TRANSITIONS
    with pytest.raises(TransitionError):
        m._move(State.INITIALIZE, "bogus")


@pytest.mark.parametrize("kw", [dict(vrid=0), dict(priority=0), dict(version=2, advert_int_cs=50)])
def test_params_refuse_invalid_values(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        machine(**kw)


# keepalived's tracking: effective priority and the FAULT state -----------------------------


def test_fault_from_master_sends_priority_zero_and_releases() -> None:
    m = machine()
    t = run_to_master(m)
    actions = m.handle(FaultChanged(True, "eth0 down"), t + 0.1)
    assert actions[:2] == [SendAdvert(0), ReleaseAddresses()]
    assert m.state is State.FAULT and m.next_deadline() is None
    assert m.handle(advert(50), t + 0.2) == [] and m.handle(Timeout(), t + 9) == []


def test_fault_cleared_goes_backup_with_a_fresh_down_timer() -> None:
    m = machine()
    m.handle(Startup(), 0.0)
    m.handle(FaultChanged(True), 1.0)
    actions = m.handle(FaultChanged(False, "eth0 up"), 5.0)
    assert actions == [StateChanged(State.FAULT, State.BACKUP, "eth0 up")]
    assert m.next_deadline() == pytest.approx(5.0 + m.master_down_interval)


def test_startup_while_faulty_goes_to_fault() -> None:
    m = machine()
    m.handle(FaultChanged(True), 0.0)
    m.handle(Startup(), 0.0)
    assert m.state is State.FAULT


def test_priority_change_on_master_is_advertised_at_once() -> None:
    m = machine()
    t = run_to_master(m)
    assert m.handle(PriorityChanged(60), t + 0.1) == [SendAdvert(60)]
    assert m.handle(Timeout(), m.next_deadline() or 0.0) == [SendAdvert(60)]


def test_lowered_backup_stops_preempting() -> None:
    """A backup whose weight fell below the master's accepts it instead of preempting."""
    m = machine(priority=150)
    m.handle(Startup(), 0.0)
    m.handle(PriorityChanged(90), 0.5)
    m.handle(advert(100), 1.0)
    assert m.next_deadline() == pytest.approx(1.0 + m.master_down_interval)
    assert m.skew_time == pytest.approx((256 - 90) / 256)


def test_owner_priority_never_moves() -> None:
    m = machine(priority=255)
    m.handle(Startup(), 0.0)
    assert m.handle(PriorityChanged(100), 0.1) == [] and m.priority == 255


def test_higher_prio_send_advert_sends_one_before_yielding() -> None:
    m = machine(higher_prio_send_advert=True)
    t = run_to_master(m)
    actions = m.handle(advert(200), t + 0.1)
    assert actions[:2] == [SendAdvert(100), ReleaseAddresses()]


def test_sync_group_forces_move_backup_to_master_and_back() -> None:
    m = machine()
    m.handle(Startup(), 0.0)
    actions = m.handle(ForceState(State.MASTER, "sync group G: a became MASTER"), 0.5)
    assert m.state is State.MASTER and TakeAddresses(False) in actions
    actions = m.handle(ForceState(State.BACKUP, "sync group G: a became BACKUP"), 0.6)
    # Priority 0 first, so that the peer's members take over after Skew_Time.
    assert m.state is State.BACKUP and actions[:2] == [SendAdvert(0), ReleaseAddresses()]
    assert m.handle(ForceState(State.BACKUP, "again"), 0.7) == []


def test_a_group_member_only_says_it_wants_master_when_its_timer_fires() -> None:
    m = machine(group_member=True)
    m.handle(Startup(), 0.0)
    deadline = m.next_deadline()
    assert deadline is not None
    assert m.handle(Timeout(), deadline) == [WantsMaster("master down timer expired")]
    assert m.state is State.BACKUP and m.wants_master
    again = m.next_deadline()  # it says so again a Master_Down_Interval later
    assert again is not None and again == pytest.approx(deadline + m.master_down_interval)
    m.handle(advert(150), again - 0.1)  # a live master that outranks it: no longer wants
    assert not m.wants_master
    m.handle(advert(0), again)  # the master leaves: wants again after Skew_Time
    assert m.handle(Timeout(), again + m.skew_time) == [
        WantsMaster("master left (priority 0) and Skew_Time passed")
    ]
    actions = m.handle(ForceState(State.MASTER, "sync group G: every member wants MASTER"), 9)
    assert m.state is State.MASTER and not m.wants_master and SendAdvert(100) in actions


def test_a_held_master_steps_down_with_priority_zero() -> None:
    m = machine()
    m.handle(Startup(), 0.0)
    m.handle(Timeout(), m.next_deadline() or 0.0)
    assert m.state is State.MASTER
    actions = m.handle(HoldBackup(True, "server: forced standby"), 5.0)
    assert actions[:2] == [SendAdvert(0), ReleaseAddresses()]
    assert actions[2] == StateChanged(State.MASTER, State.BACKUP,
                                      "held in BACKUP: server: forced standby")  # fmt: skip
    assert m.held and m.hold_reason == "server: forced standby"


def test_a_held_backup_never_takes_over_until_released() -> None:
    """ForceState(BACKUP) lasts until the Master_Down_Timer fires; a hold does not."""
    m = machine(priority=200)
    m.handle(Startup(), 0.0)
    m.handle(HoldBackup(True, "partition"), 0.1)
    now = 0.1
    for _ in range(5):  # the master is silent, or lower and preemptible: stays BACKUP
        deadline = m.next_deadline()
        if deadline is None:
            m.handle(advert(100), now)  # a lower-priority master is heard
            deadline = m.next_deadline()
        now = max(now, deadline or now) + 0.1
        assert m.handle(Timeout(), now) == []
        assert m.state is State.BACKUP
    assert m.handle(ForceState(State.MASTER, "sync group"), now) == []
    assert m.handle(advert(0), now) == [] and m.handle(Timeout(), now + 1) == []
    assert m.state is State.BACKUP and m.next_deadline() is None
    assert m.handle(HoldBackup(False), now + 2) == []
    assert not m.held and m.hold_reason == ""
    deadline = m.next_deadline()
    assert deadline == pytest.approx(now + 2 + m.master_down_interval)
    actions = m.handle(Timeout(), deadline)
    assert m.state is State.MASTER and SendAdvert(200) in actions


def test_a_hold_before_startup_keeps_even_the_owner_backup() -> None:
    m = machine(priority=255)
    assert m.handle(HoldBackup(True, "wiring"), 0.0) == []
    assert m.handle(Startup(), 0.0) == [StateChanged(State.INITIALIZE, State.BACKUP, "startup")]
    assert m.handle(Timeout(), 10.0) == [] and m.state is State.BACKUP


def test_a_held_group_member_does_not_ask_for_master() -> None:
    m = machine(group_member=True)
    m.handle(Startup(), 0.0)
    m.handle(HoldBackup(True, "x"), 0.0)
    assert m.handle(Timeout(), 100.0) == [] and not m.wants_master


def test_a_held_instance_leaves_fault_as_backup_and_stays_held() -> None:
    m = machine()
    m.handle(Startup(), 0.0)
    m.handle(HoldBackup(True, "x"), 0.0)
    m.handle(FaultChanged(True, "eth0 down"), 1.0)
    assert m.state is State.FAULT and m.held
    m.handle(FaultChanged(False), 2.0)
    assert m.state is State.BACKUP and m.handle(Timeout(), 100.0) == []
