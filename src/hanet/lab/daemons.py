"""VRRP daemons in lab hosts: hanet's own and keepalived, driven the same way.

Both are judged as a user would: a host is master when it holds the virtual address.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hanet.lab.lab import Lab


class WaitTimeout(AssertionError):
    pass


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def hanet_command() -> list[str]:
    """How to start the hanet CLI of this very environment."""
    return [sys.executable, "-m", "hanet.cli.main"]


def holds_address(lab: Lab, host: str, address: str) -> bool:
    result = lab.run(host, ["ip", "-o", "addr", "show"], check=False)
    return any(f" {address}/" in line for line in result.stdout.splitlines())


class Daemon:
    """A process in a lab host that can be stopped gracefully or killed."""

    def __init__(self, lab: Lab, host: str) -> None:
        self.lab, self.host = lab, host
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{lab.prefix}-{host}-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: Sequence[str]) -> None:
        self.stdout = open(self.workdir / "stdout", "wb")  # noqa: SIM115
        self.stderr = open(self.workdir / "stderr", "wb")  # noqa: SIM115
        self.proc = self.lab.spawn(self.host, argv, stdout=self.stdout, stderr=self.stderr)

    def holds(self, address: str) -> bool:
        return holds_address(self.lab, self.host, address)

    def wait_master(self, address: str, timeout: float = 10) -> None:
        wait_until(lambda: self.holds(address), timeout, f"{self.host} to hold {address}")

    def wait_backup(self, address: str, timeout: float = 10) -> None:
        wait_until(lambda: not self.holds(address), timeout, f"{self.host} to drop {address}")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, as a service manager would; waits for the exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        parts = []
        for name in ("stdout", "stderr"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {self.host} {name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def cleanup(self) -> None:
        self.kill()
        for stream in ("stdout", "stderr"):
            handle = getattr(self, stream, None)
            if handle is not None:
                handle.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


class HanetVrrp(Daemon):
    """``hanet vrrp run`` with a status file the test can read."""

    def start(self, config: dict[str, Any]) -> HanetVrrp:
        import yaml

        path = self.workdir / "instances.yaml"
        path.write_text(yaml.safe_dump({"instances": config}))
        self.status_file = self.workdir / "status.json"
        self._spawn([*hanet_command(), "vrrp", "run", "--config", str(path),
                     "--status-file", str(self.status_file)])  # fmt: skip
        return self

    def status(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            data: dict[str, Any] = json.loads(self.status_file.read_text())
            return {i["name"]: i for i in data["instances"]}
        return {}

    def events(self) -> list[dict[str, Any]]:
        text = (self.workdir / "stdout").read_text()
        # The daemon may be writing right now: a last line without its newline is not whole yet.
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line.startswith("{")]


def control_request(path: Path, message: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    """One request to a hanet vrrpd control socket; {} if nobody answers."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        answer: dict[str, Any] = json.loads(data)
        return answer
    except (OSError, ValueError):
        return {}


class HanetVrrpd(Daemon):
    """``hanet vrrpd -f keepalived.conf`` with its own pid file and control socket."""

    def start(self, config_text: str, *, default_paths: bool = False,
              extra: Sequence[str] = ()) -> HanetVrrpd:  # fmt: skip
        self.conf = self.workdir / "keepalived.conf"
        self.conf.write_text(config_text)
        self.control = self.workdir / "control.sock"
        argv = [*hanet_command(), "--log-level", "info", "vrrpd", "-f", str(self.conf), *extra]
        if not default_paths:
            argv += ["--pid-file", str(self.workdir / "vrrpd.pid"),
                     "--control-socket", str(self.control)]  # fmt: skip
        self._spawn(argv)
        return self

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        return control_request(self.control, message)

    def status_at_default(self) -> bool:
        """True when the daemon answers on the default control socket of its namespace."""
        import sys

        probe = ("from hanet.vrrpd.paths import default_control_socket as d;"
                 "print(d().exists())")  # fmt: skip
        result = self.lab.run(self.host, [sys.executable, "-c", probe], check=False)
        return result.stdout.strip() == "True"

    def status(self) -> dict[str, Any]:
        answer = self.request({"command": "status"})
        return {i["name"]: i for i in answer.get("instances", [])}

    def reload(self, config_text: str | None = None) -> None:
        if config_text is not None:
            self.conf.write_text(config_text)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def wait_state(self, name: str, state: str, timeout: float = 15) -> None:
        wait_until(lambda: self.status().get(name, {}).get("state") == state, timeout,
                   f"{self.host}'s {name} to be {state}")  # fmt: skip


def keepalived_available() -> bool:
    return shutil.which("keepalived") is not None or Path("/usr/sbin/keepalived").exists()


def keepalived_conf(
    *, version: int, priority: int, vip: str, advert_int: float, vrid: int = 51,
    interface: str = "eth0", auth_pass: str | None = None,
) -> str:  # fmt: skip
    """One vrrp_instance in keepalived.conf syntax, in state BACKUP (keepalived's advice)."""
    auth = ""
    if auth_pass is not None:
        auth = f"  authentication {{\n    auth_type PASS\n    auth_pass {auth_pass}\n  }}\n"
    return (
        f"global_defs {{\n  vrrp_version {version}\n}}\n"
        f"vrrp_instance VI_{vrid} {{\n  state BACKUP\n  interface {interface}\n"
        f"  virtual_router_id {vrid}\n  priority {priority}\n  advert_int {advert_int}\n{auth}"
        f"  virtual_ipaddress {{\n    {vip}\n  }}\n}}\n"
    )


class Keepalived(Daemon):
    """A real keepalived in a lab host, with its own pid files so several can run."""

    def start(self, config_text: str) -> Keepalived:
        conf = self.workdir / "keepalived.conf"
        conf.write_text(config_text)
        os.chmod(self.workdir, 0o755)
        self._spawn([
            shutil.which("keepalived") or "/usr/sbin/keepalived",
            "--dont-fork", "--log-console", "--vrrp", "--use-file", str(conf),
            "--pid", str(self.workdir / "keepalived.pid"),
            "--vrrp_pid", str(self.workdir / "vrrp.pid"),
            "--checkers_pid", str(self.workdir / "checkers.pid"),
        ])  # fmt: skip
        return self
