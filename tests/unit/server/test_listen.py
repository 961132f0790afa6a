"""hanet-server listens where it is told, at once: on every address it binds (``--bind``
repeated, or the settings' ``bind`` list), and on every socket it inherits bound and
listening (``--listen-fd N``, systemd's LISTEN_FDS when LISTEN_PID is its own); the default
address only when neither is given. A descriptor it cannot serve is refused, naming it and
where it came from. The tests start the real command with sockets they made and talk HTTP
over them (tests/unit/server/test_listeners.py covers single sockets and the checks)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from hanet.server.config import ServerConfigError, load_config
from hanet.server.listeners import ListenerError, inherited_sockets

SERVER = [sys.executable, "-m", "hanet.server.main", "--log-level", "info"]
ANSWER_WITHIN = 60.0  # seconds: start-up (imports, migrations) on a loaded machine


def tcp_listener() -> socket.socket:
    return socket.create_server(("127.0.0.1", 0))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(connect: Any, path: str = "/v2.0/networks") -> tuple[int, Any]:
    """GET over a fresh connection made by ``connect()`` (TCP or unix alike): the status and
    the JSON body. A listening socket queues the connection until the server serves it."""
    with connect() as conn:
        conn.settimeout(ANSWER_WITHIN)
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: hanet\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def over_tcp(port: int) -> Any:
    return lambda: socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)


def bound_by_server(proc: subprocess.Popen[bytes], port: int) -> Any:
    """Connections to an address the server binds itself: refused until it has started."""

    def connect() -> socket.socket:
        deadline = time.monotonic() + ANSWER_WITHIN
        while True:
            try:
                return socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
            except ConnectionRefusedError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    return connect


def over_unix(path: Path) -> Any:
    def connect() -> socket.socket:
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(str(path))
        return conn

    return connect


@contextmanager
def server(
    tmp_path: Path, args: list[str], pass_fds: tuple[int, ...] = (), launch: list[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """The real hanet-server (exec'd by ``launch``, if given) on a fresh database; stopped
    (by its PID) however the test ends."""
    argv = [*launch, *SERVER, "--db", f"sqlite:///{tmp_path / 'hanet.db'}", *args]
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(argv, pass_fds=pass_fds, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def listening_lines(tmp_path: Path) -> list[str]:
    lines = (tmp_path / "server.log").read_text().splitlines()
    return [line.split(" INFO ", 1)[1] for line in lines if "listening on" in line]


def test_the_server_answers_on_an_inherited_tcp_socket(tmp_path: Path) -> None:
    with tcp_listener() as sock:
        fd, port = sock.fileno(), sock.getsockname()[1]
        with server(tmp_path, ["--listen-fd", str(fd)], pass_fds=(fd,)) as proc:
            assert get(over_tcp(port)) == (200, {"networks": []})
            proc.terminate()
            assert proc.wait(30) == 0  # SIGTERM: a clean stop
    # Only the inherited socket: the default address is not bound besides it.
    assert listening_lines(tmp_path) == [f"listening on 127.0.0.1:{port} (inherited)"]


def test_inherited_unix_socket_and_several_binds_are_served_at_once(tmp_path: Path) -> None:
    path = tmp_path / "hanet.sock"
    with socket.socket(socket.AF_UNIX) as unix:
        unix.bind(str(path))
        unix.listen()
        fd = unix.fileno()
        ports = [free_port(), free_port()]
        args = ["--listen-fd", str(fd)] + [a for p in ports for a in ("--bind", f"127.0.0.1:{p}")]
        with server(tmp_path, args, pass_fds=(fd,)) as proc:
            assert get(over_unix(path)) == (200, {"networks": []})
            for port in ports:
                assert get(bound_by_server(proc, port)) == (200, {"networks": []})
    assert sorted(listening_lines(tmp_path)) == sorted(
        [f"listening on 127.0.0.1:{p}" for p in ports] + [f"listening on unix:{path} (inherited)"]
    )


# As systemd starts a socket-activated service: the socket moved to fd 3, LISTEN_FDS=1 and
# LISTEN_PID the service's own PID (exec keeps it), or another process's.
SYSTEMD = (
    "import os, sys; fd, pid, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]; "
    "os.dup2(fd, 3); fd != 3 and os.close(fd); "
    "os.environ.update(LISTEN_PID=str(os.getpid()) if pid == 'self' else pid, LISTEN_FDS='1'); "
    "os.execv(argv[0], argv)"
)


def systemd(fd: int, pid: str = "self") -> list[str]:
    return [sys.executable, "-c", SYSTEMD, str(fd), pid]


def test_systemd_socket_activation(tmp_path: Path) -> None:
    with tcp_listener() as sock:
        fd, port = sock.fileno(), sock.getsockname()[1]
        with server(tmp_path, [], pass_fds=(fd,), launch=systemd(fd)):
            assert get(over_tcp(port)) == (200, {"networks": []})
    assert listening_lines(tmp_path) == [f"listening on 127.0.0.1:{port} (inherited)"]


def test_systemd_sockets_for_another_process_are_left_alone(tmp_path: Path) -> None:
    with tcp_listener() as sock:
        fd, bound = sock.fileno(), free_port()
        args = ["--bind", f"127.0.0.1:{bound}"]
        with server(tmp_path, args, pass_fds=(fd,), launch=systemd(fd, "1")) as proc:
            assert get(bound_by_server(proc, bound)) == (200, {"networks": []})
    assert listening_lines(tmp_path) == [f"listening on 127.0.0.1:{bound}"]


def test_a_bad_systemd_descriptor_is_named_as_systemds(tmp_path: Path) -> None:
    read, write = os.pipe()
    try:
        with server(tmp_path, [], pass_fds=(read,), launch=systemd(read)) as proc:
            assert proc.wait(ANSWER_WITHIN) == 1
        text = (tmp_path / "server.log").read_text()
        assert "hanet-server: LISTEN_FDS (fd 3): not a socket" in text
        assert not (tmp_path / "hanet.db").exists()  # refused before anything was made
    finally:
        os.close(read)
        os.close(write)


def test_the_settings_addresses_are_served_beside_an_inherited_socket(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    settings = tmp_path / "server.yaml"
    settings.write_text(f"bind: ['127.0.0.1:{ports[0]}', '127.0.0.1:{ports[1]}']\n")
    with tcp_listener() as sock:
        fd, inherited = sock.fileno(), sock.getsockname()[1]
        args = ["--listen-fd", str(fd), "--config", str(settings)]
        with server(tmp_path, args, pass_fds=(fd,)) as proc:
            assert get(over_tcp(inherited)) == (200, {"networks": []})
            for port in ports:
                assert get(bound_by_server(proc, port)) == (200, {"networks": []})
    assert sorted(listening_lines(tmp_path)) == sorted(
        [f"listening on 127.0.0.1:{p}" for p in ports]
        + [f"listening on 127.0.0.1:{inherited} (inherited)"]
    )


def test_descriptors_are_taken_all_or_none() -> None:
    read, write = os.pipe()
    good = tcp_listener()
    try:
        fd = good.fileno()
        with pytest.raises(ListenerError, match=f"--listen-fd {fd}: fd {fd} is given twice"):
            inherited_sockets([(fd, f"--listen-fd {fd}"), (fd, f"--listen-fd {fd}")])
        with pytest.raises(ListenerError, match="LISTEN_FDS \\(fd 3\\): not a socket"):
            inherited_sockets([(fd, f"--listen-fd {fd}"), (read, "LISTEN_FDS (fd 3)")])
        # Nothing was closed by the refusal: the good one is still the test's, listening.
        assert good.getsockname()[1] > 0 and os.fstat(read)
        assert good.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        good.close()
        os.close(read)
        os.close(write)


def test_bind_is_one_address_or_a_list(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("bind: 0.0.0.0:9696\n")
    assert load_config(path).addresses == [("0.0.0.0", 9696)]
    path.write_text("bind: ['127.0.0.1:1', '[::1]:2']\n")
    assert load_config(path).addresses == [("127.0.0.1", 1), ("::1", 2)]
    assert load_config(None).bind == [] and load_config(None).host_port == ("127.0.0.1", 9696)
    assert load_config(path, bind=["10.0.0.1:3"]).addresses == [("10.0.0.1", 3)]
    for bad, message in (
        ("bind: 9696\n", "bind: expected HOST:PORT or a list of them"),
        ("bind: [localhost]\n", "bind: 'localhost': expected HOST:PORT"),
        ("bind: ['a:99999']\n", "bind: 'a:99999': expected HOST:PORT"),
    ):
        path.write_text(bad)
        with pytest.raises(ServerConfigError) as refused:
            load_config(path)
        assert str(refused.value) == f"{path}: {message}"
