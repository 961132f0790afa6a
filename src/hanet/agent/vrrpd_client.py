"""The node's vrrpd, driven over its control socket (version 1, docs/vrrpd.md): ``sync`` of
every router instance, ``hold_backup``/``release``, and ``subscribe`` for state changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

VERSION = 1
LINE_LIMIT = 256 << 20  # a status or snapshot of thousands of instances is one line


class VrrpdError(RuntimeError):
    """vrrpd cannot be reached, or refused a request (its message says where and why)."""


class VrrpdRefused(VrrpdError):
    pass


def _answer(command: Any, line: bytes) -> dict[str, Any]:
    """vrrpd's answer line to ``command``: an object with ``ok`` true, else VrrpdError
    (VrrpdRefused with vrrpd's message when it said no)."""
    if not line:
        raise VrrpdError(f"vrrpd: {command}: closed without an answer")
    try:
        answer = json.loads(line)
    except ValueError:
        raise VrrpdError(f"vrrpd: {command}: answer is not JSON") from None
    if not isinstance(answer, dict):
        raise VrrpdError(f"vrrpd: {command}: answer is not an object")
    if not answer.get("ok"):
        raise VrrpdRefused(str(answer.get("error", "refused")))
    return answer


class VrrpdClient:
    def __init__(self, socket_path: Path, timeout: float = 60.0) -> None:
        self.socket_path, self.timeout = socket_path, timeout

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """One request on its own connection; the answer, or VrrpdError."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.socket_path), limit=LINE_LIMIT),
                self.timeout,
            )
        except (TimeoutError, OSError) as exc:
            raise VrrpdError(f"vrrpd at {self.socket_path}: {exc or type(exc).__name__}") from None
        try:
            writer.write(json.dumps({**message, "version": VERSION}).encode() + b"\n")
            line = await asyncio.wait_for(reader.readline(), self.timeout)
        except (TimeoutError, OSError, ValueError) as exc:
            raise VrrpdError(f"vrrpd: {message.get('command')}: no answer: {exc!r}") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return _answer(message.get("command"), line)

    async def sync(
        self, instances: dict[str, dict[str, Any]], keep: set[str] | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"command": "sync", "instances": instances}
        if keep:
            message["keep"] = sorted(keep)
        return await self.request(message)

    async def hold_backup(self, name: str, reason: str) -> None:
        await self.request({"command": "hold_backup", "name": name, "reason": reason})

    async def release(self, name: str) -> None:
        await self.request({"command": "release", "name": name})

    async def announce(self, name: str) -> bool:
        answer = await self.request({"command": "announce", "name": name})
        return bool(answer.get("announced"))

    async def status(self) -> dict[str, Any]:
        return await self.request({"command": "status"})

    async def subscribe(self) -> AsyncIterator[dict[str, Any]]:
        """Events as vrrpd sends them: a ``snapshot`` first (and again after an
        ``overflow``), then ``state`` events. Ends (VrrpdError) when vrrpd goes away."""
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(self.socket_path), limit=LINE_LIMIT
            )
        except OSError as exc:
            raise VrrpdError(f"vrrpd at {self.socket_path}: {exc}") from None
        try:
            writer.write(json.dumps({"command": "subscribe", "version": VERSION}).encode() + b"\n")
            try:
                _answer("subscribe", await reader.readline())
            except VrrpdRefused as exc:
                raise VrrpdError(f"vrrpd: subscribe refused: {exc}") from None
            while True:
                line = await reader.readline()
                if not line:
                    raise VrrpdError("vrrpd closed the subscription")
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if isinstance(event, dict):
                        yield event
        except (OSError, ValueError) as exc:
            raise VrrpdError(f"vrrpd subscription: {exc!r}") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
