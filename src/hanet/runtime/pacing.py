"""When to read a busy VRRP socket: pure, time passed in.

A master with hundreds of instances sends them all in one burst per interval (they share a
grid), and the burst takes milliseconds to cross the bridge. Read as it trickles in, a
backup wakes many times per burst, and the wake-up costs more than the packets. So once
a link has seen big bursts, the first packet of the next burst starts a short hold-off:
the socket is left alone until the burst is likely over and then drained in one go.
A link that sees one packet at a time (a few instances) is never held off.
"""

from __future__ import annotations

# Seconds; packets closer together than this are one burst. Longer than the longest
# hold-off, so that the drain which ends a hold-off belongs to the burst it waited for.
BURST_GAP = 0.01
MIN_BURST = 8  # packets; smaller bursts are read as they come
MIN_HOLD_OFF = 0.001  # seconds
MAX_HOLD_OFF = 0.005  # seconds; the most a received advert waits to be read
assert BURST_GAP > MAX_HOLD_OFF


class BurstPacer:
    def __init__(self) -> None:
        self.last_read = float("-inf")  # the last time a drain found packets
        self.burst_start = 0.0
        self.burst_count = 0
        self.previous_count = 0
        self.previous_span = 0.0

    def drained(self, now: float, count: int) -> float | None:
        """Note a drain at ``now`` that found ``count`` packets; returns when to read
        again if the socket should be left alone until then, else None."""
        if count == 0:
            return None
        new_burst = now - self.last_read > BURST_GAP
        if new_burst:
            self.previous_count = self.burst_count
            self.previous_span = self.last_read - self.burst_start
            self.burst_start, self.burst_count = now, 0
        self.burst_count += count
        self.last_read = now
        if new_burst and self.previous_count >= MIN_BURST:
            return now + min(max(self.previous_span, MIN_HOLD_OFF), MAX_HOLD_OFF)
        return None
