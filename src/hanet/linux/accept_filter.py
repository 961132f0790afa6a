"""Accept_Mode off (RFC 5798 §6.4.3): drop traffic addressed to the virtual addresses.

A non-owner master must not accept packets sent to the virtual addresses unless Accept_Mode
is on; it must still answer ARP and Neighbor Discovery for them. Each instance gets its own
nftables base chain on the input hook in its namespace. On a backup the addresses are not
local, so the chain matches nothing there: it is installed at start and removed at stop,
independent of the state. A chain left by a crashed run is flushed and refilled.
"""

from __future__ import annotations

import ipaddress

from hanet.linux import nft

TABLE = "hanet_vrrp"
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class FilterError(RuntimeError):
    pass


def chain_name(ifname: str, vrid: int, family: int) -> str:
    safe = "".join(c if c.isalnum() else "_" for c in ifname)
    return f"vr{vrid}_{safe}_ip{family}"


def install_script(chain: str, addresses: tuple[IPInterface, ...]) -> str:
    lines = [
        f"add table inet {TABLE}",
        f"add chain inet {TABLE} {chain} {{ type filter hook input priority 0; policy accept; }}",
        f"flush chain inet {TABLE} {chain}",
    ]
    for iface in addresses:
        if iface.version == 4:
            lines.append(f"add rule inet {TABLE} {chain} ip daddr {iface.ip} drop")
        else:
            # Neighbor Discovery for the address must still work (RFC 5798 §6.4.3).
            lines.append(
                f"add rule inet {TABLE} {chain} ip6 daddr {iface.ip} icmpv6 type "
                "{ nd-neighbor-solicit, nd-neighbor-advert } accept"
            )
            lines.append(f"add rule inet {TABLE} {chain} ip6 daddr {iface.ip} drop")
    return "\n".join(lines) + "\n"


async def _nft(netns: str | None, script: str, *args: str) -> str:
    return await nft.run(netns, script, *args, error=FilterError, purpose="accept: false")


async def install(netns: str | None, chain: str, addresses: tuple[IPInterface, ...]) -> None:
    await _nft(netns, install_script(chain, addresses))


async def remove(netns: str | None, chain: str) -> None:
    """Remove the chain, and the table once no instance has a chain left in it."""
    # "add" first, so that the delete cannot fail on a chain that is already gone.
    await _nft(netns, f"add table inet {TABLE}\nadd chain inet {TABLE} {chain}\n"
               f"delete chain inet {TABLE} {chain}\n")  # fmt: skip
    listing = await _nft(netns, f"list table inet {TABLE}\n")
    if " chain " not in listing:
        await _nft(netns, f"delete table inet {TABLE}\n")
