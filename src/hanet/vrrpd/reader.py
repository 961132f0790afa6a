"""Reading keepalived.conf for a reload, in a child process with a deadline.

A running daemon must never stop sending adverts while it reads its file, or its backups
take over and there are two masters. A worker thread is not enough: parsing a large file
makes millions of small objects, and CPython's garbage collector then holds the
interpreter for a second at a time, long enough for a backup at 0.1 s to take over. A
child process has an interpreter of its own, and a file that never finishes reading (a
slow disk, a pipe that slipped past the loader's checks) is ended at the deadline.

The child prints the pickled result on its stdout; its log lines (the file's warnings) go
to the daemon's stderr like the daemon's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import resource
import sys
from pathlib import Path

from hanet.keepalived.loader import load_config
from hanet.keepalived.model import KeepalivedConfig
from hanet.runtime.config import ConfigError, InstanceConfig
from hanet.runtime.ownership import check_instance_set
from hanet.vrrpd.mapping import runtime_instances

log = logging.getLogger(__name__)

READ_DEADLINE = 60.0  # seconds; a real keepalived.conf reads in well under one
CHILD_MEMORY = 2 << 30  # bytes of address space

Loaded = tuple[KeepalivedConfig, list[InstanceConfig]]


def load(path: Path, report: bool = True) -> Loaded:
    """The model and the runtime configs; ConfigError lists every error of the file."""
    model = load_config(path)
    for problem in model.problems if report else []:
        if problem.severity != "error":
            log.warning("%s", problem)
    configs = runtime_instances(model)
    try:
        check_instance_set(configs)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return model, configs


async def load_in_child(path: Path, deadline: float = READ_DEADLINE) -> Loaded:
    """``load(path)`` in a child process; ConfigError if it fails or takes too long."""
    child = await asyncio.create_subprocess_exec(
        # -P: the daemon's working folder is not on the path; the child runs as root.
        sys.executable, "-P", "-m", "hanet.vrrpd.reader", str(path.absolute()),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(child.communicate(), deadline)
    except TimeoutError:
        raise ConfigError(f"{path}: not read within {deadline:g} s; reading stopped") from None
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    try:
        outcome = pickle.loads(output)
    except Exception:
        raise ConfigError(f"{path}: the reader ended with status {child.returncode}") from None
    if isinstance(outcome, str):
        raise ConfigError(outcome)
    model, configs = outcome
    return model, configs


def _child(path: str) -> None:
    # The loader caps what it reads, but a pathological file still costs far more memory
    # than its size; a child past this bound fails with MemoryError, a refused reload.
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    outcome: object
    try:
        outcome = load(Path(path))
    except ConfigError as exc:
        outcome = str(exc)
    except Exception as exc:  # anything else is a refusal too, never a crash of the daemon
        outcome = f"{path}: cannot be read: {type(exc).__name__}: {exc}"
    sys.stdout.buffer.write(pickle.dumps(outcome))


if __name__ == "__main__":
    _child(sys.argv[1])
