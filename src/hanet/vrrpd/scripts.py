"""Running keepalived's scripts: vrrp_script checks and notify hooks.

Scripts run without a shell, their command line split as keepalived splits it (whitespace,
with single or double quotes grouping), with a timeout, as tasks that never block the protocol
loop. A script that hangs or fails is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

NOTIFY_TIMEOUT = 30.0


class ScriptRefused(RuntimeError):
    pass


def state_hook(spec: object, word: str) -> str | None:
    """The notify_master / _backup / _fault / _stop command of an instance or sync group."""
    hook: str | None = getattr(spec, f"notify_{word.lower()}", None)
    return hook


def split_command(command: str) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ScriptRefused(f"cannot split {command!r}: {exc}") from None
    if not argv:
        raise ScriptRefused("empty command")
    return argv


def check_script_security(argv: list[str]) -> None:
    """enable_script_security: refuse a script that a non-root user could change.

    As keepalived does: the file and every folder above it must be owned by root and not
    writable by group or others.
    """
    path = Path(argv[0])
    if not path.is_absolute():
        found = next(
            (
                Path(d) / path
                for d in os.environ.get("PATH", "").split(":")
                if (Path(d) / path).is_file()
            ),
            None,
        )
        if found is None:
            raise ScriptRefused(f"{argv[0]}: not found on PATH")
        path = found
    try:
        path = path.resolve(strict=True)
    except OSError as exc:
        raise ScriptRefused(f"{argv[0]}: {exc.strerror}") from None
    for part in [path, *path.parents]:
        info = part.stat()
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ScriptRefused(f"{argv[0]}: {part} is writable by a non-root user")


@dataclass
class ScriptRunner:
    """Runs commands; shared counters say how many timed out or failed to start."""

    user: str | None = None
    group: str | None = None
    security: bool = False
    counters: Counter[str] = field(default_factory=Counter)

    def prepare(self, command: str) -> list[str]:
        argv = split_command(command)
        if self.security:
            check_script_security(argv)
        return argv

    async def run(
        self, argv: list[str], timeout: float, user: tuple[str, str | None] | None = None
    ) -> int | None:
        """The exit status, or None if it could not start or timed out (then killed).

        ``user`` (a vrrp_script's own ``user``) overrides the global script_user.
        """
        run_as, group = user if user is not None else (self.user, self.group)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                user=run_as,
                group=group,
                start_new_session=True,
            )
        except (OSError, ValueError, KeyError) as exc:
            self.counters["start_failed"] += 1
            log.warning("script %s could not start: %s", argv[0], exc)
            return None
        try:
            return await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            self.counters["timed_out"] += 1
            log.warning("script %s timed out after %s s; killed", argv[0], timeout)
            proc.kill()
            await proc.wait()
            return None

    def fire(self, argv: list[str], timeout: float = NOTIFY_TIMEOUT) -> asyncio.Task[None]:
        """Run in the background (notify hooks); failures are only logged and counted."""

        async def go() -> None:
            status = await self.run(argv, timeout)
            if status not in (0, None):
                self.counters["failed"] += 1
                log.warning("notify %s exited with %s", " ".join(argv), status)

        return asyncio.get_running_loop().create_task(go())


@dataclass
class CheckState:
    """A vrrp_script's result with rise/fall hysteresis (keepalived's semantics)."""

    rise: int
    fall: int
    ok: bool
    streak: int = 0
    runs: int = 0
    failures: int = 0

    def record(self, success: bool) -> bool:
        """Count one result; True when the state flipped."""
        self.runs += 1
        if not success:
            self.failures += 1
        if success == self.ok:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak >= (self.rise if success else self.fall):
            self.ok, self.streak = success, 0
            return True
        return False


class ScriptCheck:
    """One vrrp_script, run every ``interval`` seconds while the daemon runs."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        interval: float,
        timeout: float,
        state: CheckState,
        runner: ScriptRunner,
        on_change: Callable[[str, bool], None],
        user: tuple[str, str | None] | None = None,
    ) -> None:
        self.name, self.argv, self.interval, self.timeout = name, argv, interval, timeout
        self.state, self.runner, self.on_change = state, runner, on_change
        self.user = user
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            status = await self.runner.run(self.argv, self.timeout, self.user)
            if self.state.record(status == 0):
                log.info("vrrp_script %s is now %s", self.name, "OK" if self.state.ok else "FAIL")
                self.on_change(self.name, self.state.ok)
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    def status(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": "OK" if self.state.ok else "FAIL",
            "runs": self.state.runs,
            "failures": self.state.failures,
        }
