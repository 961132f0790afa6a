"""Log lines for the packets a link drops, rate-limited per instance (or link) and reason.

keepalived logs every advert it refuses; a flood of them must not flood the log, so the
first of a kind is said at once and then at most one line per PERIOD, with how many there
were meanwhile (the drop counters have the exact totals). Refused adverts, which mean a
misconfigured or hostile peer, are warnings; malformed packets are said at INFO, and adverts
for other VRIDs, normal on a shared segment, only at DEBUG. Only drops pay for this: an
accepted advert never comes here.
"""

from __future__ import annotations

import ipaddress
import logging

from hanet.runtime.ratelimit import RateLimiter
from hanet.vrrp import Advertisement, ReceivePolicy
from hanet.vrrp.receive import AUTH_MISMATCH, INTERVAL_MISMATCH, NOT_A_PEER, VERSION_MISMATCH

log = logging.getLogger(__name__)

PERIOD = 10.0  # seconds between two lines of one kind
RECEIVE_BUFFER_OVERFLOW = "receive_buffer_overflow"  # the drop reason of the kernel's drops


class DropLog:
    def __init__(self, ifname: str) -> None:
        self.ifname = ifname
        self.limiter = RateLimiter(PERIOD)

    def refused(self, instance: str, reason: str, advert: Advertisement,
                policy: ReceivePolicy, now: float) -> None:  # fmt: skip
        """An advert the instance's configuration refuses (hanet.vrrp.drop_reason)."""
        said = self.limiter.allow((instance, reason), now)
        if said is not None:
            log.warning("%s: dropped an advert from %s: %s (%s)%s", instance, advert.source,
                        reason, _why(reason, advert, policy), _more(said))  # fmt: skip

    def malformed(self, reason: str, packet: bytes, message: str, now: float) -> None:
        if log.isEnabledFor(logging.INFO):
            said = self.limiter.allow((None, reason), now)
            if said is not None:
                log.info("%s: dropped a packet from %s: %s%s", self.ifname, source_of(packet),
                         message, _more(said))  # fmt: skip

    def foreign(self, reason: str, advert: Advertisement, now: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            said = self.limiter.allow((None, reason), now)
            if said is not None:
                log.debug("%s: dropped an advert from %s for VRID %d: %s%s", self.ifname,
                          advert.source, advert.vrid, reason, _more(said))  # fmt: skip

    def overflowed(self, count: int, now: float) -> None:
        """The kernel dropped ``count`` packets: the socket's receive buffer was full."""
        said = self.limiter.allow((None, RECEIVE_BUFFER_OVERFLOW), now, count)
        if said is not None:
            log.warning("%s: receive buffer full: the kernel dropped %d VRRP packets (%s)",
                        self.ifname, said, RECEIVE_BUFFER_OVERFLOW)  # fmt: skip


def _more(said: int) -> str:
    return f"; {said - 1} more since the last such line" if said > 1 else ""


def _why(reason: str, advert: Advertisement, policy: ReceivePolicy) -> str:
    if reason == VERSION_MISMATCH:
        return f"VRRP version {advert.version}, ours is {policy.version}"
    if reason == NOT_A_PEER:
        return "not one of its unicast peers"
    if reason == AUTH_MISMATCH:
        return "authentication type or password differs"
    if reason == INTERVAL_MISMATCH:
        return (f"advert_int {advert.advert_int_cs / 100:g} s, "
                f"ours is {policy.advert_int_cs / 100:g} s")  # fmt: skip
    return reason


def source_of(packet: bytes) -> str:
    """The source address of a whole IP packet, as far as its header can be read."""
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= 20:
        return str(ipaddress.IPv4Address(packet[12:16]))
    if version == 6 and len(packet) >= 40:
        return str(ipaddress.IPv6Address(packet[8:24]))
    return "an unreadable address"
