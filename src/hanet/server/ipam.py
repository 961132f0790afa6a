"""IP address management, pure: pools, the next free address, MACs, SLAAC addresses.

The store makes an allocation stick (a unique key per subnet and address); this module only
says which address to try."""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Iterable, Iterator

from hanet.server.api.errors import Conflict, InvalidInput

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Pool = tuple[IPAddress, IPAddress]

BASE_MAC = (0xFA, 0x16, 0x3E)  # Neutron's default base_mac


def usable_range(network: IPNetwork) -> Pool:
    """First and last address a port may have: not the network address, nor IPv4's
    broadcast."""
    if network.prefixlen >= network.max_prefixlen - 1:  # /31, /32, /127, /128
        return network.network_address, network.broadcast_address
    last = network.broadcast_address - (1 if network.version == 4 else 0)
    return network.network_address + 1, last


def default_gateway(network: IPNetwork) -> IPAddress:
    return usable_range(network)[0]


def default_pools(network: IPNetwork, gateway: IPAddress | None) -> list[Pool]:
    """The whole usable range, around the gateway."""
    first, last = usable_range(network)
    if gateway is None or not int(first) <= int(gateway) <= int(last):
        return [(first, last)]
    pools: list[Pool] = []
    if int(first) < int(gateway):
        pools.append((first, gateway - 1))
    if int(gateway) < int(last):
        pools.append((gateway + 1, last))
    return pools


def check_pools(network: IPNetwork, pools: list[Pool], gateway: IPAddress | None) -> None:
    """Neutron's rules: inside the subnet, start <= end, no overlap, gateway outside."""
    first, last = (int(a) for a in usable_range(network))
    for start, end in pools:
        if start.version != network.version or end.version != network.version:
            raise InvalidInput("allocation_pools", f"{start}-{end} is not IPv{network.version}")
    spans = sorted((int(start), int(end), f"{start}-{end}") for start, end in pools)
    for low, high, text in spans:
        if low > high:
            raise InvalidInput("allocation_pools", f"{text}: the start is after the end")
        if not (first <= low and high <= last):
            raise InvalidInput("allocation_pools", f"{text} is outside {network}")
        if gateway is not None and low <= int(gateway) <= high:
            raise Conflict(
                f"Gateway ip {gateway} conflicts with allocation pool {text}",
                "GatewayConflictWithAllocationPools",
            )
    for (_, high, _), (low, _, text) in itertools.pairwise(spans):
        if low <= high:
            raise InvalidInput("allocation_pools", f"{text} overlaps another pool")


def free_addresses(pools: Iterable[Pool], used: set[str]) -> Iterator[IPAddress]:
    """Free addresses in pool order. ``used`` holds the addresses as strings."""
    for start, end in pools:
        factory = ipaddress.IPv4Address if start.version == 4 else ipaddress.IPv6Address
        for number in range(int(start), int(end) + 1):
            address = factory(number)
            if str(address) not in used:
                yield address


def pool_size(pools: Iterable[Pool]) -> int:
    return sum(int(end) - int(start) + 1 for start, end in pools)


def random_addresses(
    pools: list[Pool], count: int, rng: random.Random | None = None
) -> Iterator[IPAddress]:
    """``count`` addresses drawn evenly from all the pools (a bigger pool, more often)."""
    draw = rng or random
    total = pool_size(pools)
    for _ in range(count):
        offset = draw.randrange(total)
        for start, end in pools:
            width = int(end) - int(start) + 1
            if offset < width:
                yield start + offset
                break
            offset -= width


def free_sample(
    pools: list[Pool], used: set[str], count: int, rng: random.Random | None = None
) -> list[IPAddress]:
    """``count`` distinct free addresses, random when the pools are roomy (so that
    concurrent writers rarely meet), else the first free ones; fewer if there are not."""
    chosen: dict[str, IPAddress] = {}
    if count <= 0:
        return []
    if pool_size(pools) >= 4 * (len(used) + count):
        for candidate in random_addresses(pools, 20 * count + 100, rng):
            if str(candidate) not in used:
                chosen.setdefault(str(candidate), candidate)
                if len(chosen) == count:
                    return list(chosen.values())
    for candidate in free_addresses(pools, used):
        if len(chosen) == count:
            break
        chosen.setdefault(str(candidate), candidate)
    return list(chosen.values())


def in_pools(address: IPAddress, pools: Iterable[Pool]) -> bool:
    return any(int(start) <= int(address) <= int(end) for start, end in pools)


def random_mac(rng: random.Random | None = None) -> str:
    tail = (rng or random).getrandbits(24)
    octets = (*BASE_MAC, tail >> 16, (tail >> 8) & 0xFF, tail & 0xFF)
    return ":".join(f"{o:02x}" for o in octets)


def slaac_address(network: ipaddress.IPv6Network, mac: str) -> ipaddress.IPv6Address:
    """RFC 4291 §2.5.1 modified EUI-64: the MAC with ff:fe inside and the U/L bit flipped."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    interface_id = bytes([*octets[:3], 0xFF, 0xFE, *octets[3:]])
    return network.network_address + int.from_bytes(interface_id, "big")
