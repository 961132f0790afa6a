"""hanet-server on inherited sockets (--listen-fd, systemd's LISTEN_FDS): the lab binds
127.0.0.1 in the machine's namespace and serves it from the controller's namespace."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hanet.server.listeners import ListenerError, inherited_socket, systemd_fds


def test_an_inherited_listening_socket_is_served(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        argv = [
            sys.executable,
            "-m",
            "hanet.server.main",
            "--listen-fd",
            str(listener.fileno()),
            "--db",
            f"sqlite:///{tmp_path}/db.sqlite",
        ]
        server = subprocess.Popen(argv, pass_fds=[listener.fileno()], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2.0/networks") as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "no answer on the inherited socket"
                time.sleep(0.05)
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0
    assert f"listening on 127.0.0.1:{port} (inherited)" in err.decode()


def test_anything_but_a_listening_stream_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with open(path) as handle, pytest.raises(ListenerError, match="not a socket"):
        inherited_socket(handle.fileno())
    with socket.socket() as idle:
        idle.bind(("127.0.0.1", 0))
        with pytest.raises(ListenerError, match="not listening"):
            inherited_socket(idle.fileno())
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with datagram, pytest.raises(ListenerError, match="not a TCP or unix stream socket"):
        inherited_socket(datagram.fileno())
    with pytest.raises(ListenerError, match="--listen-fd 999:"):
        inherited_socket(999)


def test_systemd_fds_are_taken_only_when_meant_for_this_process() -> None:
    me = str(os.getpid())
    assert systemd_fds({"LISTEN_PID": me, "LISTEN_FDS": "2"}) == [3, 4]
    assert systemd_fds({"LISTEN_PID": "1", "LISTEN_FDS": "2"}) == []
    assert systemd_fds({}) == []
    with pytest.raises(ListenerError, match="LISTEN_FDS"):
        systemd_fds({"LISTEN_PID": me, "LISTEN_FDS": "two"})


def test_a_bad_fd_stops_the_server_with_its_reason() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hanet.server.main", "--listen-fd", "0"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--listen-fd 0: not a socket" in result.stderr
