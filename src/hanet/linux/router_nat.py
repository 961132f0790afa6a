"""Apply a router's NAT table (``hanet.agent.nat``) in its namespace, and remove it.

The text is fed to ``nft -f -`` run by ``ip netns exec NS``, as ``accept_filter`` does:
nft applies the whole input as one transaction, so the table is replaced atomically or not
at all. A failure raises ``NatApplyError`` carrying nft's own message.
"""

from __future__ import annotations

from hanet.agent.nat import TABLE, check_table_name, removal
from hanet.linux import nft


class NatApplyError(RuntimeError):
    pass


async def _nft(netns: str | None, script: str, *args: str) -> str:
    return await nft.run(netns, script, *args, error=NatApplyError, purpose="router NAT")


async def apply(netns: str | None, text: str) -> None:
    """Make the router's table what ``text`` (from ``hanet.agent.nat.ruleset``) says."""
    await _nft(netns, text)


async def remove(netns: str | None, table: str = TABLE) -> None:
    """Remove the router's table; nothing happens if there is none."""
    await _nft(netns, removal(table))


async def listing(netns: str | None, table: str = TABLE) -> str:
    """The table as nft lists it (what ``nft list table ip TABLE`` shows)."""
    return await _nft(netns, f"list table ip {check_table_name(table)}\n")
