"""Run a real HAProxy in a namespace: a router's metadata proxy (``hanet.agent.metadata``).

HAProxy is started daemonised, ``ip netns exec NS haproxy -f CFG -p PID -D``, as Neutron
does (neutron/agent/linux/external_process.py): the proxy must outlive an agent restart,
which adopts it from its pid file instead of starting another. ``ip netns exec`` execs
haproxy in place; with ``-D`` haproxy writes the pid file before its first process exits,
so once the command returns the file names the process that serves.

Every file is the caller's: the config and pid file live under the node's run directory,
never /etc/haproxy or /run. A PID is only ever signalled after checking that it is still a
haproxy started with our config file, so a stale pid file whose number was reused by
something else is never killed. Nothing is stopped by name.

Errors are ``HaproxyError`` with haproxy's own message: the config is checked with
``haproxy -c -f`` before anything starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

STOP_TIMEOUT = 5.0


class HaproxyError(RuntimeError):
    pass


def _haproxy() -> str:
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(found):
        raise HaproxyError("the metadata proxy needs haproxy (Debian package haproxy)")
    return found


async def _run(argv: list[str], what: str, timeout: float = 30) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except FileNotFoundError as exc:
        raise HaproxyError(f"{what}: {exc.filename} not found") from None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise HaproxyError(f"{what}: no answer after {timeout} s") from None
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise HaproxyError(f"{what}: {_alerts(text) or f'exit status {proc.returncode}'}")
    return text


def _alerts(text: str) -> str:
    """haproxy's ALERT lines without their "[ALERT] (pid) :" prefix, one line; else all."""
    found = [
        line.split(" : ", 1)[-1].strip() for line in text.splitlines() if line.startswith("[ALERT]")
    ]
    return "; ".join(found) if found else " ".join(text.split())


def write_config(path: str | Path, text: str) -> Path:
    """Write the config atomically (a reader never sees half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)
    return target


async def check(config: str | Path) -> None:
    """``haproxy -c -f CONFIG``: raises with haproxy's message if it refuses the file."""
    await _run([_haproxy(), "-c", "-f", str(config)], f"haproxy refused {config}")


def _read_pid(pid_file: Path) -> int | None:
    try:
        first = pid_file.read_text().split()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not first or not first[0].isdigit():
        return None
    return int(first[0])


def _is_ours(pid: int, config: Path) -> bool:
    """A live (not zombie) haproxy whose command line names our config file."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the parenthesised command name, which may itself hold ") ".
    if stat[stat.rfind(")") + 2 :].startswith("Z"):
        return False
    names = [Path(arg.decode(errors="replace")).name for arg in argv[:1]]
    return names == ["haproxy"] and str(config).encode() in argv


def running(pid_file: str | Path, config: str | Path) -> int | None:
    """The PID of the haproxy that ``pid_file`` names and that runs ``config``; else None."""
    pid = _read_pid(Path(pid_file))
    if pid is None or not _is_ours(pid, Path(config)):
        return None
    return pid


async def start(netns: str | None, config: str | Path, pid_file: str | Path) -> int:
    """Start haproxy with ``config`` (already written) in ``netns``; returns its PID.

    If one already runs from this pid file and config, it is kept (adopted) and its PID
    returned: starting twice never makes two proxies.
    """
    config, pid_file = Path(config), Path(pid_file)
    where = f" in namespace {netns}" if netns is not None else ""
    pid = running(pid_file, config)
    if pid is not None:
        return pid
    await check(config)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    argv = [_haproxy(), "-f", str(config), "-p", str(pid_file), "-D"]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    await _run(argv, f"haproxy did not start{where}")
    pid = running(pid_file, config)
    if pid is None:
        raise HaproxyError(f"haproxy started{where} but {pid_file} names no running haproxy")
    return pid


async def stop(pid_file: str | Path, config: str | Path, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the haproxy that ``pid_file`` names (only if it runs ``config``).

    SIGTERM (haproxy's immediate stop), then SIGKILL if it is still there after ``timeout``.
    Returns whether one was running. The pid file is removed either way.
    """
    config, pid_file = Path(config), Path(pid_file)
    pid = running(pid_file, config)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        killed = False
        deadline = time.monotonic() + timeout
        while _is_ours(pid, config):
            if time.monotonic() > deadline:
                if killed:
                    raise HaproxyError(f"haproxy {pid} ({pid_file}) survived SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed = True
                deadline = time.monotonic() + timeout
            await asyncio.sleep(0.01)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
    return pid is not None
