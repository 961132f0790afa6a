"""Running ``nft -f -`` in a namespace: one script, applied by nft as one transaction."""

from __future__ import annotations

import asyncio
import shutil


async def run(
    netns: str | None, script: str, *args: str, error: type[Exception], purpose: str
) -> str:
    """nft's output; ``error`` with nft's own message if it refuses the script.

    ``purpose`` says what needed nftables, for the message when nft is not installed."""
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
        raise error(f"{purpose} needs nftables ({exc.filename} not found)") from None
    out, err = await proc.communicate(script.encode())
    if proc.returncode != 0:
        where = f" in namespace {netns}" if netns is not None else ""
        raise error(f"nft failed{where}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")
