"""Where hanet-server listens: addresses it binds (``--bind``, several allowed) and sockets
it inherits already bound and listening (``--listen-fd N``, or systemd's socket activation:
``LISTEN_FDS`` from fd 3 when ``LISTEN_PID`` is this process). An inherited socket may
belong to another network namespace than the server's: the lab binds 127.0.0.1 in the
machine's own namespace and serves it from a controller namespace."""

from __future__ import annotations

import os
import socket
import stat

SD_LISTEN_FDS_START = 3


class ListenerError(ValueError):
    pass


def systemd_fds(environ: dict[str, str] | None = None) -> list[int]:
    """The fds systemd passed (sd_listen_fds), or none when they are not for us."""
    env = os.environ if environ is None else environ
    if env.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(env.get("LISTEN_FDS", "0"))
    except ValueError:
        raise ListenerError(f"LISTEN_FDS={env.get('LISTEN_FDS')!r} is not a count") from None
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def inherited_socket(fd: int, origin: str | None = None) -> socket.socket:
    """The listening stream socket at ``fd``; anything else is refused, naming the fd as
    ``origin`` gave it (``--listen-fd N`` unless told, ``LISTEN_FDS (fd 3)``)."""
    origin = origin or f"--listen-fd {fd}"
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ListenerError(f"{origin}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ListenerError(f"{origin}: not a socket")
    sock = socket.socket(fileno=fd)
    if sock.type != socket.SOCK_STREAM or sock.family not in (
        socket.AF_INET, socket.AF_INET6, socket.AF_UNIX,
    ):  # fmt: skip
        sock.detach()
        raise ListenerError(f"{origin}: not a TCP or unix stream socket")
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ListenerError(f"{origin}: the socket is not listening")
    sock.setblocking(False)
    return sock


def inherited_sockets(fds: list[tuple[int, str]]) -> list[socket.socket]:
    """Each (fd, origin) as inherited_socket, all or none: a descriptor given twice or a
    bad one refuses them all, and leaves every descriptor open as it was."""
    seen: set[int] = set()
    for fd, origin in fds:
        if fd in seen:
            raise ListenerError(f"{origin}: fd {fd} is given twice")
        seen.add(fd)
    sockets: list[socket.socket] = []
    try:
        for fd, origin in fds:
            sockets.append(inherited_socket(fd, origin))
    except ListenerError:
        for sock in sockets:
            sock.detach()
        raise
    return sockets


def describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}"
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
