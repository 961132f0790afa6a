"""IPAM's pure parts: drawing free addresses from pools."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given
from hypothesis import strategies as st

from hanet.server import ipam


def pool(start: str, end: str) -> tuple[ipam.IPAddress, ipam.IPAddress]:
    return ipaddress.ip_address(start), ipaddress.ip_address(end)


@given(
    size=st.integers(1, 600),
    used_share=st.floats(0, 1),
    count=st.integers(0, 700),
    seed=st.integers(0, 2**32),
)
def test_a_free_sample_is_distinct_free_and_in_the_pools(
    size: int, used_share: float, count: int, seed: int
) -> None:
    rng = random.Random(seed)
    first = ipaddress.ip_address("169.254.192.1")
    pools = [(first, first + size - 1)]
    everything = [str(first + i) for i in range(size)]
    used = set(rng.sample(everything, int(size * used_share)))
    sample = ipam.free_sample(pools, used, count, rng)
    texts = [str(a) for a in sample]
    assert len(set(texts)) == len(texts) == min(count, size - len(used))
    assert not set(texts) & used
    assert all(ipam.in_pools(a, pools) for a in sample)


def test_a_roomy_pool_gives_random_addresses_a_full_one_the_first_free() -> None:
    roomy = [pool("169.254.192.1", "169.254.255.254")]
    drawn = ipam.free_sample(roomy, set(), 3, random.Random(1))
    assert [str(a) for a in drawn] != ["169.254.192.1", "169.254.192.2", "169.254.192.3"]
    tight = [pool("10.0.0.2", "10.0.0.5")]
    assert [str(a) for a in ipam.free_sample(tight, {"10.0.0.3"}, 9)] == [
        "10.0.0.2",
        "10.0.0.4",
        "10.0.0.5",
    ]
