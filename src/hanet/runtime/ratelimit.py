"""Rate limiting for log lines about what peers send (pure: time is passed in).

A flood of bad packets must not become a flood of log lines: the first of a kind is said at
once, then at most one line per period says how many there were since. The exact totals are
in the drop counters; the log is there to say that, and from whom, it happens.
"""

from __future__ import annotations

from collections.abc import Hashable

MAX_KEYS = 4096  # kinds remembered at once; a flood of new kinds cannot grow memory


class RateLimiter:
    def __init__(self, period: float, max_keys: int = MAX_KEYS) -> None:
        self.period, self.max_keys = period, max_keys
        self._quiet_until: dict[Hashable, float] = {}
        self._held: dict[Hashable, int] = {}

    def allow(self, key: Hashable, now: float, count: int = 1) -> int | None:
        """None to stay silent; otherwise how many events the line is to report: these
        ``count`` and all held back for this key since its last line."""
        until = self._quiet_until.get(key)
        if until is not None and now < until:
            self._held[key] = self._held.get(key, 0) + count
            return None
        if until is None and len(self._quiet_until) >= self.max_keys:
            self._forget(now)
        self._quiet_until[key] = now + self.period
        return self._held.pop(key, 0) + count

    def _forget(self, now: float) -> None:
        """Drop kinds whose quiet time is over (what they held is lost: only a log line's
        worth), or all of them if none is."""
        expired = [k for k, until in self._quiet_until.items() if until <= now]
        for key in expired or list(self._quiet_until):
            del self._quiet_until[key]
            self._held.pop(key, None)
