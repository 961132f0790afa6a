"""Apply a router's NAT table (``hanet.agent.nat``) in its namespace, and remove it.

The text is fed to ``nft -f -`` run by ``ip netns exec NS``, as ``accept_filter`` does:
nft applies the whole input as one transaction, so the table is replaced atomically or not
at all. A failure raises ``NatApplyError`` carrying nft's own message.
"""

from __future__ import annotations

import asyncio
import shutil

from hanet.agent.nat import TABLE, check_table_name, removal


class NatApplyError(RuntimeError):
    pass


async def _nft(netns: str | None, script: str, *args: str) -> str:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    argv = [nft, *args, "-f", "-"]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise NatApplyError(f"router NAT needs nftables ({exc.filename} not found)") from None
    out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        where = f" in namespace {netns}" if netns is not None else ""
        raise NatApplyError(f"nft failed{where}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


async def apply(netns: str | None, text: str) -> None:
    """Make the router's table what ``text`` (from ``hanet.agent.nat.ruleset``) says."""
    await _nft(netns, text)


async def remove(netns: str | None, table: str = TABLE) -> None:
    """Remove the router's table; nothing happens if there is none."""
    await _nft(netns, removal(table))


async def listing(netns: str | None, table: str = TABLE) -> str:
    """The table as nft lists it (what ``nft list table ip TABLE`` shows)."""
    return await _nft(netns, f"list table ip {check_table_name(table)}\n")
