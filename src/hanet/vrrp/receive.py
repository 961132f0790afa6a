"""Receive-side checks that need the instance's configuration (RFC 3768 §7.1, RFC 5798 §7.1).

The codec already dropped what no receiver may accept; these checks drop what this
instance must not accept. Each returns a stable reason slug for the drop counters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from hanet.vrrp.codec import AUTH_NONE, Advertisement, IPAddress

VERSION_MISMATCH: Final = "version_mismatch"
AUTH_MISMATCH: Final = "auth_mismatch"
INTERVAL_MISMATCH: Final = "interval_mismatch"
VRID_NOT_OURS: Final = "vrid_not_ours"
NOT_A_PEER: Final = "not_a_peer"


@dataclass(frozen=True)
class ReceivePolicy:
    version: int
    advert_int_cs: int
    auth_type: int = AUTH_NONE
    auth_data: bytes = b""
    peers: frozenset[IPAddress] = frozenset()  # unicast mode: only these may speak


def drop_reason(advert: Advertisement, policy: ReceivePolicy) -> str | None:
    """None if the advert may go to the state machine, else why it is dropped."""
    if advert.version != policy.version:
        return VERSION_MISMATCH
    if policy.peers and advert.source not in policy.peers:
        return NOT_A_PEER
    if advert.version == 2:
        # RFC 3768 §7.1: auth type and data must match the local configuration.
        if advert.auth_type != policy.auth_type:
            return AUTH_MISMATCH
        if advert.auth_type != AUTH_NONE and advert.auth_data != policy.auth_data.ljust(8, b"\0"):
            return AUTH_MISMATCH
        # RFC 3768 §7.1: a v2 router drops adverts whose interval differs from its own.
        if advert.advert_int_cs != policy.advert_int_cs:
            return INTERVAL_MISMATCH
    return None
