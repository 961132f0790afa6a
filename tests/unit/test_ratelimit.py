"""The rate limiter of drop log lines: first at once, then one line per period with a count."""

from __future__ import annotations

from hanet.runtime.ratelimit import RateLimiter


def test_first_event_is_said_at_once() -> None:
    limiter = RateLimiter(10.0)
    assert limiter.allow(("VI_1", "auth_mismatch"), 100.0) == 1


def test_events_within_the_period_are_held_and_counted_in_the_next_line() -> None:
    limiter = RateLimiter(10.0)
    key = ("VI_1", "auth_mismatch")
    assert limiter.allow(key, 0.0) == 1
    assert [limiter.allow(key, t) for t in (1.0, 5.0, 9.9)] == [None, None, None]
    assert limiter.allow(key, 10.0) == 4  # this one and the three held back
    assert limiter.allow(key, 10.5) is None
    assert limiter.allow(key, 25.0) == 2


def test_kinds_are_limited_separately() -> None:
    limiter = RateLimiter(10.0)
    assert limiter.allow(("VI_1", "auth_mismatch"), 0.0) == 1
    assert limiter.allow(("VI_1", "not_a_peer"), 0.1) == 1
    assert limiter.allow(("VI_2", "auth_mismatch"), 0.2) == 1
    assert limiter.allow(("VI_1", "auth_mismatch"), 0.3) is None


def test_counts_add_up() -> None:
    limiter = RateLimiter(10.0)
    assert limiter.allow("eth0", 0.0, count=300) == 300
    assert limiter.allow("eth0", 1.0, count=200) is None
    assert limiter.allow("eth0", 11.0, count=50) == 250


def test_memory_is_bounded_by_max_keys() -> None:
    limiter = RateLimiter(10.0, max_keys=3)
    for i in range(100):
        assert limiter.allow(i, 0.0) == 1  # a new kind is always said
    assert len(limiter._quiet_until) <= 3 and len(limiter._held) <= 3
    # Kinds whose quiet time is over go first; ones still quiet are kept when possible.
    limiter = RateLimiter(10.0, max_keys=2)
    limiter.allow("old", 0.0)
    limiter.allow("recent", 5.0)
    limiter.allow("recent", 6.0)  # held
    limiter.allow("new", 11.0)
    assert limiter.allow("recent", 12.0) is None  # still quiet: remembered
    assert limiter.allow("recent", 15.0) == 3


def test_drop_log_says_the_first_then_how_many_were_held_back(caplog) -> None:  # type: ignore[no-untyped-def]
    import ipaddress
    import logging

    from hanet.runtime.droplog import DropLog
    from hanet.vrrp import Advertisement, ReceivePolicy

    advert = Advertisement(
        version=2, vrid=51, priority=254, addresses=(ipaddress.IPv4Address("10.0.0.200"),),
        advert_int_cs=100, source=ipaddress.IPv4Address("10.0.0.250"),
        destination=ipaddress.IPv4Address("224.0.0.18"), auth_type=1, auth_data=b"guessed\0",
    )  # fmt: skip
    policy = ReceivePolicy(2, 100, 1, b"secret")
    drops = DropLog("eth0")
    with caplog.at_level(logging.INFO, logger="hanet.runtime.droplog"):
        for t in range(25):  # one a second for 25 s
            drops.refused("VI_1", "auth_mismatch", advert, policy, float(t))
        drops.malformed("truncated", b"\x45", "truncated: 1 byte", 0.0)
        drops.overflowed(300, 0.0)
        drops.overflowed(200, 1.0)
        drops.overflowed(1, 10.0)
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    said = "VI_1: dropped an advert from 10.0.0.250: auth_mismatch (authentication type or "
    assert lines == [
        ("WARNING", said + "password differs)"),  # t=0
        ("WARNING", said + "password differs); 9 more since the last such line"),  # t=10
        ("WARNING", said + "password differs); 9 more since the last such line"),  # t=20
        ("INFO", "eth0: dropped a packet from an unreadable address: truncated: 1 byte"),
        ("WARNING", "eth0: receive buffer full: the kernel dropped 300 VRRP packets "
                    "(receive_buffer_overflow)"),
        ("WARNING", "eth0: receive buffer full: the kernel dropped 201 VRRP packets "
                    "(receive_buffer_overflow)"),  # the 200 held back, and this one
    ]  # fmt: skip
