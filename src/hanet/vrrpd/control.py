"""The local control socket: one JSON object per line, one answer per request.

Requests (``{"command": ..., "version": 1}``; schema.py has what each may say):
- ``status``: every instance and script;
- ``subscribe``: then a line per state change, until the client hangs up (see events.py);
  in version 1, a snapshot of every instance first, and again after an overflow;
- ``add`` / ``change`` with ``name`` and ``instance``, and ``remove`` with ``name``:
  instances managed at run time, by an agent for example;
- ``sync`` with ``instances``: the complete set of run-time instances, applied as one
  difference, all or nothing;
- ``hold_backup`` with ``name`` (and ``reason``), ``release`` with ``name``: a sticky hold
  in BACKUP (hanet.vrrp.HoldBackup);
- ``announce`` with ``name``: a master sends its gratuitous ARPs / unsolicited NAs again.
A request without ``version`` is version 0: the original five, with the keys of hanet's
instance files. Every answer has ``ok``; a refused request has ``error`` saying where and
why. A bad request never affects the daemon or its other clients. The socket is 0600: only
root may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any, Protocol

from hanet.linux.addresses import InterfaceNotFound
from hanet.linux.netns import NamespaceNotFound
from hanet.runtime.config import ConfigError
from hanet.vrrpd.events import Subscription
from hanet.vrrpd.schema import InstanceSpec, Request, SchemaError, parse_request

log = logging.getLogger(__name__)

# A node's whole set of routers is one sync request: about 600 bytes an HA router, so
# 10,000 routers fit; only root may connect (0600), and a longer line is refused.
MAX_REQUEST = 16 << 20
IDLE_TIMEOUT = 60.0
BACKLOG = 1024  # an agent may open many connections at once; asyncio's default is 100


class RequestError(ValueError):
    pass


class Controlled(Protocol):
    def status(self) -> dict[str, Any]: ...
    async def add_instance(self, name: str, entry: InstanceSpec) -> None: ...
    async def change_instance(self, name: str, entry: InstanceSpec) -> None: ...
    async def remove_instance(self, name: str) -> None: ...
    async def sync_instances(
        self, instances: dict[str, InstanceSpec], keep: frozenset[str] = frozenset()
    ) -> dict[str, Any]: ...
    def hold(self, name: str, held: bool, reason: str) -> None: ...
    def announce(self, name: str) -> bool: ...
    def subscribe(self, snapshots: bool = False) -> Subscription: ...
    def unsubscribe(self, subscription: Subscription) -> None: ...


class ControlSocketError(RuntimeError):
    pass


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a directory"),
             (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "a device or other file")


def _clear_stale(path: Path) -> None:
    """Remove a socket nobody answers on; refuse anything else at ``path``."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketError(
            f"control socket {path}: {_kind(mode)} is in the way; only a stale socket is "
            "replaced (remove it, or give another --control-socket)"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        # A listener with a full backlog keeps connect() waiting: it is alive all the same.
        probe.settimeout(1)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            pass  # nobody listens: a daemon that died left it
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlSocketError(f"control socket {path}: cannot tell if it is in use: "
                                     f"{exc.strerror or exc}") from None  # fmt: skip
        else:
            raise ControlSocketError(f"control socket {path} is in use by another daemon")
    path.unlink()


def _private_dir(directory: Path) -> None:
    """Create the socket's directory 0700 if missing; one that exists is the user's choice."""
    if directory.is_dir():
        return
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
    except FileExistsError:
        if not directory.is_dir():
            raise ControlSocketError(f"control socket directory {directory} is not a "
                                     "directory") from None  # fmt: skip
    except OSError as exc:
        raise ControlSocketError(f"control socket directory {directory}: "
                                 f"{exc.strerror or exc}") from None  # fmt: skip


def bind_private(path: Path) -> socket.socket:
    """A unix socket bound at ``path`` with mode 0600 from the moment it exists.

    bind() creates the file with the process umask; chmod afterwards would leave a moment
    in which others may connect. The umask is process-wide, but this runs at start-up,
    before the daemon starts threads or scripts.
    """
    _private_dir(path.parent)
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ControlSocketError(f"control socket {path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old)
    return sock


# The answer to a request names the problem; a traceback in the log is for our own bugs.
REFUSALS = (RequestError, ConfigError, InterfaceNotFound, NamespaceNotFound)


class ControlServer:
    """Serves ``target`` on ``path``. A client that sends nothing for ``idle_timeout``
    seconds (or reads no answer for as long) is closed; subscribers only listen, and stay."""

    def __init__(self, path: Path, target: Controlled, idle_timeout: float = IDLE_TIMEOUT,
                 backlog: int = BACKLOG) -> None:  # fmt: skip
        self.path, self.target = path, target
        self.idle_timeout, self.backlog = idle_timeout, backlog
        self.server: asyncio.base_events.Server | None = None
        self.bound: tuple[int, int] | None = None  # (device, inode) of the socket we made

    async def start(self) -> None:
        sock = bind_private(self.path)
        info = os.stat(self.path)
        self.bound = (info.st_dev, info.st_ino)
        try:
            self.server = await asyncio.start_unix_server(
                self._client, sock=sock, limit=MAX_REQUEST, backlog=self.backlog
            )
        except BaseException:
            sock.close()
            raise

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)
        # Only our own socket: what a refused start found at the path stays where it was.
        with contextlib.suppress(OSError):
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == self.bound:
                self.path.unlink()
        self.bound = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), self.idle_timeout)
                except (ValueError, asyncio.LimitOverrunError):
                    error = f"request longer than {MAX_REQUEST >> 20} MiB"
                    await self._send(writer, {"ok": False, "error": error})
                    return
                except TimeoutError:
                    log.debug("control client idle for %g s: closed", self.idle_timeout)
                    error = f"no request for {self.idle_timeout:g} s: closing"
                    await self._send(writer, {"ok": False, "error": error})
                    return
                if not line:
                    return
                try:
                    request = _parse(line)
                except RequestError as exc:
                    await self._send(writer, {"ok": False, "error": str(exc)})
                    continue
                if request.command == "subscribe":
                    await self._stream(reader, writer, snapshots=request.version >= 1)
                    return
                await self._send(writer, await self._answer(request))
        except (ConnectionError, OSError) as exc:  # TimeoutError is an OSError
            log.debug("control client gone: %s", exc or type(exc).__name__)
        except asyncio.CancelledError:
            # The daemon is stopping. Not re-raised: asyncio's stream callback (3.11) would
            # log a cancelled client task as an error with a traceback at every shutdown.
            log.debug("control client closed: the daemon stops")
        finally:
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
        """Answer a request; a client that reads nothing for the idle timeout is dropped."""
        await asyncio.wait_for(_send(writer, message), self.idle_timeout)

    async def _answer(self, request: Request) -> dict[str, Any]:
        try:
            return await self._handle(request)
        except REFUSALS as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a failing request must not take the daemon down
            log.exception("control request failed")
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def _handle(self, request: Request) -> dict[str, Any]:
        command, name = request.command, request.name
        if command == "status":
            return {"ok": True, **self.target.status()}
        if command == "sync":
            assert request.instances is not None
            answer = await self.target.sync_instances(request.instances, request.keep)
            return {"ok": True, **answer}
        assert name is not None  # the schema requires it of every other command
        if command == "remove":
            await self.target.remove_instance(name)
        elif command == "add":
            assert request.instance is not None
            await self.target.add_instance(name, request.instance)
        elif command == "change":
            assert request.instance is not None
            await self.target.change_instance(name, request.instance)
        elif command in ("hold_backup", "release"):
            self.target.hold(name, command == "hold_backup", request.reason)
        elif command == "announce":
            return {"ok": True, "announced": self.target.announce(name)}
        return {"ok": True}

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      snapshots: bool = False) -> None:  # fmt: skip
        """Events until the subscriber hangs up, which it may do at any time: no error."""
        subscription = (
            self.target.subscribe(snapshots=True) if snapshots else self.target.subscribe()
        )
        log.info("control subscriber %d joined", subscription.number)
        # A subscriber only listens: its end of file is how it says goodbye, and noticing it
        # at once frees its queue even when no event comes to fail on.
        hangup = asyncio.ensure_future(_until_eof(reader))
        try:
            await _send(writer, {"ok": True})
            while True:
                getter = asyncio.ensure_future(subscription.get())
                await asyncio.wait({getter, hangup}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                await _send(writer, getter.result())
        except (ConnectionError, OSError):
            return
        finally:
            hangup.cancel()
            self.target.unsubscribe(subscription)
            log.info("control subscriber %d left", subscription.number)


async def _until_eof(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while await reader.read(4096):
            pass


def _parse(line: bytes) -> Request:
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestError(f"not JSON: {exc}") from None
    try:
        return parse_request(data)
    except SchemaError as exc:
        raise RequestError(str(exc)) from None


async def _send(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    writer.write(json.dumps(message).encode() + b"\n")
    await writer.drain()


# An answer is one line: status is ~0.5 KB per instance, so the 64 KiB asyncio reads by
# default failed above ~200 instances. This fits 10,000 instances many times over.
MAX_ANSWER = 256 << 20


async def request(path: Path, message: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    """One request to a daemon's control socket (the CLI's side)."""
    connect = asyncio.open_unix_connection(str(path), limit=MAX_ANSWER)
    reader, writer = await asyncio.wait_for(connect, timeout)
    try:
        await _send(writer, message)
        line = await asyncio.wait_for(reader.readline(), timeout)
        answer: dict[str, Any] = json.loads(line)
        return answer
    finally:
        writer.close()
