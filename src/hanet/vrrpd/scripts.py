"""Running keepalived's scripts: vrrp_script checks and notify hooks.

Scripts run without a shell, their command line split as keepalived splits it (whitespace,
with single or double quotes grouping), with a timeout, as tasks that never block the protocol
loop. A script that hangs or fails is logged and counted.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import shlex
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hanet.keepalived.model import KeepalivedConfig, Problem

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


def script_ids(user: str | None, group: str | None) -> tuple[int, int]:
    """The uid and gid a script runs with: as keepalived, a named user's own group unless a
    group is named too; with no user, the daemon's."""
    try:
        if user is None:
            uid, gid = os.geteuid(), os.getegid()
        else:
            entry = pwd.getpwnam(user)
            uid, gid = entry.pw_uid, entry.pw_gid
        if group is not None:
            gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise ScriptRefused(f"no user {user!r} or no group {group!r} to run it as") from None
    return uid, gid


def _find(name: str) -> Path:
    path = Path(name)
    if not path.is_absolute() and "/" not in name:
        found = next(
            (
                Path(d) / path
                for d in os.environ.get("PATH", "").split(":")
                if d and (Path(d) / path).is_file()
            ),
            None,
        )
        if found is None:
            raise ScriptRefused(f"{name}: not found on PATH")
        path = found
    try:
        return path.resolve(strict=True)
    except OSError as exc:
        raise ScriptRefused(f"{name}: {exc.strerror}") from None


def _insecure(part: Path, info: os.stat_result, last: bool) -> str | None:
    """Why a non-root user could change what runs through this element of the path, if so.

    keepalived 2.2.7's rule (check_security() in lib/notify.c): every element from / down
    must be owned by root; a directory without the sticky bit, and the file itself, must not
    be writable by others, nor by a group other than root's. In a root-owned sticky
    directory such as /tmp others may add files but not replace root's, so it is exempt.
    """
    mode = info.st_mode
    if last and not stat.S_ISREG(mode):
        return f"{part} is not a regular file"
    if info.st_uid != 0:
        return f"{part} is owned by uid {info.st_uid}, not root"
    if stat.S_ISDIR(mode) and mode & stat.S_ISVTX:
        return None
    sticky = "" if last else ", and it has no sticky bit"
    if mode & stat.S_IWOTH:
        return f"{part} is writable by a non-root user (everyone may write to it{sticky})"
    if info.st_gid != 0 and mode & stat.S_IWGRP:
        return (
            f"{part} is writable by a non-root user (group {info.st_gid} may write to it{sticky})"
        )
    return None


def check_script_security(argv: list[str], uid: int = 0, gid: int = 0) -> list[str]:
    """enable_script_security: the command line to run, or ScriptRefused if a non-root user
    could change a script that runs with root's rights.

    As keepalived 2.2.7 (check_script_secure()): only a script that runs as uid or gid 0, or
    is set-uid or set-gid root, is checked (another cannot do more than its user could), and
    the path checked is the resolved one, which is then what runs: a symlink repointed after
    the check changes nothing.
    """
    path = _find(argv[0])
    try:
        info = path.stat()
        mode = info.st_mode
        setid_root = (info.st_uid == 0 and mode & stat.S_ISUID and mode & stat.S_IXUSR) or (
            info.st_gid == 0 and mode & stat.S_ISGID and mode & stat.S_IXGRP
        )
        if uid == 0 or gid == 0 or setid_root:
            for part in [*reversed(path.parents), path]:
                reason = _insecure(part, part.lstat(), last=part == path)
                if reason is not None:
                    raise ScriptRefused(f"{argv[0]}: {reason}")
    except OSError as exc:
        raise ScriptRefused(f"{argv[0]}: {exc.strerror}") from None
    return [str(path), *argv[1:]]


@dataclass
class ScriptRunner:
    """Runs commands; shared counters say how many timed out or failed to start."""

    user: str | None = None
    group: str | None = None
    security: bool = False
    counters: Counter[str] = field(default_factory=Counter)

    def prepare(self, command: str, user: tuple[str, str | None] | None = None) -> list[str]:
        """The command line to run; ``user`` is a vrrp_script's own, as for run()."""
        argv = split_command(command)
        if self.security:
            argv = check_script_security(argv, *script_ids(*(user or (self.user, self.group))))
        return argv

    async def run(
        self, argv: list[str], timeout: float, user: tuple[str, str | None] | None = None
    ) -> int | None:
        """The exit status, or None if it could not start or timed out (then killed).

        ``user`` (a vrrp_script's own ``user``) overrides the global script_user.
        """
        run_as, group = user if user is not None else (self.user, self.group)
        ids: dict[str, Any] = {}
        try:
            uid, gid = script_ids(run_as, group)
            if (uid, gid) != (os.geteuid(), os.getegid()):
                # As keepalived: the user's own group and no other, never the daemon's root
                # group, which a script running as another user would otherwise keep.
                ids = {"user": uid, "group": gid, "extra_groups": [gid]}
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                **ids,
            )
        except (OSError, ValueError, KeyError, ScriptRefused) as exc:
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


NOTIFY_HOOKS = ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")


def refused_scripts(
    model: KeepalivedConfig, default_user: tuple[str | None, str | None]
) -> list[Problem]:
    """For ``--check``: each script enable_script_security would refuse, as a warning at its
    line. A warning, not an error: the daemon starts and runs without it, as keepalived does
    (which, unlike hanet, also stops tracking such a vrrp_script instead of counting it as
    failed)."""
    g = model.global_defs
    if not g.enable_script_security:
        return []
    user, group = g.script_user or default_user
    runner = ScriptRunner(user, group, security=True)
    problems: list[Problem] = []

    def check(owner: Any, attr: str, what: str, then: str, user: Any = None) -> None:
        command = getattr(owner, attr)
        if command is None:
            return
        try:
            runner.prepare(command, user)
        except ScriptRefused as exc:
            message = f"{what}: enable_script_security refuses {exc}; {then}"
            problems.append(Problem(owner.places.get(attr, owner.where), message, "warning"))

    for script in model.scripts.values():
        check(script, "command", f"vrrp_script {script.name}", "it counts as failed", script.user)
    owners: list[tuple[str, Any]] = [("vrrp_instance", i) for i in model.instances.values()]
    owners += [("vrrp_sync_group", sg) for sg in model.sync_groups.values()]
    for kind, owner in owners:
        for attr in NOTIFY_HOOKS:
            check(owner, attr, f"{kind} {owner.name} {attr}", "it will not run")
    return problems


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
