"""The local control socket: one JSON object per line, one answer per request.

Requests (``{"command": ...}``):
- ``status``: every instance and script;
- ``subscribe``: then a line per state change, until the client hangs up;
- ``add`` / ``change`` with ``name`` and ``instance`` (the keys of hanet's instance files),
  and ``remove`` with ``name``: instances managed at run time, by an agent for example.
Every answer has ``ok``; a refused request has ``error`` saying where and why. A bad request
never affects the daemon or its other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAX_REQUEST = 1 << 20


class RequestError(ValueError):
    pass


class Controlled(Protocol):
    def status(self) -> dict[str, Any]: ...
    async def add_instance(self, name: str, entry: Any) -> None: ...
    async def change_instance(self, name: str, entry: Any) -> None: ...
    async def remove_instance(self, name: str) -> None: ...
    def subscribe(self) -> asyncio.Queue[dict[str, Any]]: ...
    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None: ...


def _socket_in_use(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


class ControlServer:
    def __init__(self, path: Path, target: Controlled) -> None:
        self.path, self.target = path, target
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            if _socket_in_use(self.path):
                raise RuntimeError(f"control socket {self.path} is in use by another daemon")
            self.path.unlink()
        self.server = await asyncio.start_unix_server(
            self._client, str(self.path), limit=MAX_REQUEST
        )
        os.chmod(self.path, 0o600)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    await _send(writer, {"ok": False, "error": "request longer than 1 MiB"})
                    return
                if not line:
                    return
                try:
                    request = _parse(line)
                    if request["command"] == "subscribe":
                        await self._stream(writer)
                        return
                    answer = await self._handle(request)
                except RequestError as exc:
                    answer = {"ok": False, "error": str(exc)}
                except Exception as exc:  # a failing request must not take the daemon down
                    log.exception("control request failed")
                    answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                await _send(writer, answer)
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()

    async def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request["command"]
        if command == "status":
            return {"ok": True, **self.target.status()}
        name = request.get("name")
        if not isinstance(name, str) or not name:
            raise RequestError(f"'{command}' needs 'name', a non-empty string")
        if command == "remove":
            await self.target.remove_instance(name)
        elif command in ("add", "change"):
            if not isinstance(request.get("instance"), dict):
                raise RequestError(f"'{command}' needs 'instance', an object")
            if command == "add":
                await self.target.add_instance(name, request["instance"])
            else:
                await self.target.change_instance(name, request["instance"])
        return {"ok": True}

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        queue = self.target.subscribe()
        try:
            await _send(writer, {"ok": True})
            while True:
                await _send(writer, await queue.get())
        finally:
            self.target.unsubscribe(queue)


COMMANDS = {"status", "subscribe", "add", "change", "remove"}


def _parse(line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError("a request is a JSON object")
    command = request.get("command")
    if command not in COMMANDS:
        raise RequestError(f"'command' must be one of {', '.join(sorted(COMMANDS))}")
    unknown = set(request) - {"command", "name", "instance"}
    if unknown:
        raise RequestError(f"unknown key {sorted(unknown)[0]!r}")
    return request


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()


async def request(path: Path, message: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    """One request to a daemon's control socket (the CLI's side)."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), timeout)
    try:
        await _send(writer, message)
        line = await asyncio.wait_for(reader.readline(), timeout)
        answer: dict[str, Any] = json.loads(line)
        return answer
    finally:
        writer.close()
