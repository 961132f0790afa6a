"""Default paths derived from the daemon's network namespace, and a pid file that locks.

Several daemons share one filesystem (one per lab host, or per router namespace), so the
defaults carry the namespace's inode number: two daemons in two namespaces never collide,
and a second daemon in the same namespace finds the first one's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

RUN_DIR = Path("/run/hanet")


class AlreadyRunning(RuntimeError):
    pass


def netns_id() -> str:
    return str(os.stat("/proc/self/ns/net").st_ino)


def default_pid_file() -> Path:
    return RUN_DIR / f"vrrpd-{netns_id()}.pid"


def default_control_socket() -> Path:
    return RUN_DIR / f"vrrpd-{netns_id()}.sock"


class PidFile:
    """Holds an exclusive lock for the daemon's life; removed on release."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        # Made before the control socket, often in the same directory: private, as it wants.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"{self.path} is held by pid {holder}: another hanet vrrpd uses this path "
                "(give --pid-file and --control-socket to run a second one)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None
