"""The burst pacer: when a backup of many instances leaves its socket alone."""

from __future__ import annotations

import pytest

from hanet.runtime.pacing import MAX_HOLD_OFF, MIN_BURST, MIN_HOLD_OFF, BurstPacer


def test_one_packet_at_a_time_is_never_held_off() -> None:
    pacer = BurstPacer()
    for k in range(50):
        assert pacer.drained(k * 0.1, 1) is None


def test_after_a_big_burst_the_next_one_is_read_in_one_go() -> None:
    pacer = BurstPacer()
    # A burst of 100 packets read in five wake-ups over 3 ms.
    for k in range(5):
        assert pacer.drained(1.0 + k * 0.00075, 20) is None
    # The next burst's first packet: hold off for the last burst's length.
    resume = pacer.drained(1.1, 1)
    assert resume == pytest.approx(1.1 + 0.003)
    # Reading it at the end of the hold-off belongs to the same burst: no new hold-off.
    assert pacer.drained(1.103, 99) is None
    # That burst lasted until its drain at the end of the hold-off, which sets the next one.
    assert pacer.drained(1.2, 1) == pytest.approx(1.2 + 0.003)


def test_a_longest_hold_off_ends_inside_its_burst() -> None:
    pacer = BurstPacer()
    for k in range(40):
        pacer.drained(1.0 + k * 0.001, MIN_BURST)
    resume = pacer.drained(2.0, 1)
    assert resume == pytest.approx(2.0 + MAX_HOLD_OFF)
    assert resume is not None and pacer.drained(resume, 99) is None
    assert pacer.burst_count == 100


def test_the_hold_off_is_bounded() -> None:
    pacer = BurstPacer()
    for k in range(40):  # a 40 ms stream with no gap
        pacer.drained(1.0 + k * 0.001, MIN_BURST)
    assert pacer.drained(2.0, 1) == pytest.approx(2.0 + MAX_HOLD_OFF)
    pacer = BurstPacer()
    pacer.drained(1.0, MIN_BURST)  # a burst read in one wake-up: no length to go by
    assert pacer.drained(2.0, 1) == pytest.approx(2.0 + MIN_HOLD_OFF)


def test_empty_drains_change_nothing() -> None:
    pacer = BurstPacer()
    assert pacer.drained(1.0, 0) is None
    assert pacer.last_read == float("-inf")
