"""hanet vrrpd's control socket against a stand-in daemon: the path it takes over, idle
clients, subscribers that hang up or fall behind."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hanet.vrrpd.control import ControlServer, ControlSocketError
from hanet.vrrpd.events import EventHub, Subscription

WAIT = 10  # seconds: a bound on waiting for something that must happen, never a measure


class FakeDaemon:
    def __init__(self, limit: int = 1000) -> None:
        self.hub = EventHub(limit)

    def status(self) -> dict[str, Any]:
        return {"instances": [], "control": self.hub.status()}

    async def add_instance(self, name: str, entry: Any) -> None: ...
    async def change_instance(self, name: str, entry: Any) -> None: ...
    async def remove_instance(self, name: str) -> None: ...

    def subscribe(self) -> Subscription:
        return self.hub.subscribe()

    def unsubscribe(self, subscription: Subscription) -> None:
        self.hub.unsubscribe(subscription)

    masters = {"router-a"}

    def announce(self, name: str) -> bool:
        return name in self.masters


def serve(path: Path, body: Callable[[ControlServer], Awaitable[None]], **kw: Any) -> FakeDaemon:
    target = FakeDaemon(kw.pop("limit", 1000))

    async def go() -> None:
        server = ControlServer(path, target, **kw)
        await server.start()
        try:
            await body(server)
        finally:
            await server.stop()

    asyncio.run(go())
    return target


async def line(reader: asyncio.StreamReader) -> dict[str, Any]:
    data = await asyncio.wait_for(reader.readline(), WAIT)
    assert data, "the server closed the connection"
    answer: dict[str, Any] = json.loads(data)
    return answer


async def until(predicate: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("kind", ["file", "directory", "fifo", "symlink"])
def test_anything_but_a_socket_at_the_path_is_refused_and_kept(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "control.sock"
    if kind == "file":
        path.write_text("precious\n")
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        (tmp_path / "target").write_text("precious\n")
        path.symlink_to(tmp_path / "target")
    before = os.lstat(path)

    async def body(server: ControlServer) -> None:
        raise AssertionError("started over a file")

    with pytest.raises(ControlSocketError, match=str(path)):
        serve(path, body)
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    if kind == "file":
        assert path.read_text() == "precious\n"


def test_a_stale_socket_is_replaced_and_a_live_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays; nobody listens: what a killed daemon leaves

    async def body(server: ControlServer) -> None:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"command": "status"}\n')
        assert (await line(reader))["ok"] is True
        writer.close()
        with pytest.raises(ControlSocketError, match="in use by another daemon"):
            await ControlServer(path, FakeDaemon()).start()

    serve(path, body)
    assert not path.exists()  # removed on stop: it was ours


def test_socket_is_0600_and_a_directory_it_creates_0700(tmp_path: Path) -> None:
    path = tmp_path / "made" / "for" / "hanet" / "control.sock"
    modes: dict[str, int] = {}

    async def body(server: ControlServer) -> None:
        modes["socket"] = os.lstat(path).st_mode
        modes["dir"] = os.stat(path.parent).st_mode

    old = os.umask(0o022)
    try:
        serve(path, body)
    finally:
        os.umask(old)
    assert stat.S_ISSOCK(modes["socket"]) and stat.S_IMODE(modes["socket"]) == 0o600
    assert stat.S_IMODE(modes["dir"]) == 0o700


def test_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    serve(shared / "control.sock", lambda server: asyncio.sleep(0))
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o755


def test_listen_backlog_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    original = socket.socket.listen

    def listen(self: socket.socket, backlog: int = 0) -> None:
        seen.append(backlog)
        original(self, backlog)

    monkeypatch.setattr(socket.socket, "listen", listen)
    serve(tmp_path / "control.sock", lambda server: asyncio.sleep(0))
    assert seen == [1024]  # asyncio's default is 100; an agent may open many at once


def test_an_idle_client_is_closed_and_told_why(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"

    async def body(server: ControlServer) -> None:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"command": "status"}\n')
        assert (await line(reader))["ok"] is True  # a request, then nothing more
        answer = await line(reader)
        assert answer["ok"] is False and "no request for 0.2 s" in answer["error"]
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # closed by the server
        writer.close()

    serve(path, body, idle_timeout=0.2)


def test_a_subscriber_is_not_closed_for_being_idle(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"

    async def body(server: ControlServer) -> None:
        hub: EventHub = server.target.hub  # type: ignore[attr-defined]
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"command": "subscribe"}\n')
        assert await line(reader) == {"ok": True}
        # An idle client would be closed after 0.05 s; wait for ten times that in events.
        idle, writer_idle = await asyncio.open_unix_connection(str(path))
        assert (await line(idle))["ok"] is False
        assert await asyncio.wait_for(idle.read(), WAIT) == b""
        writer_idle.close()
        hub.publish({"event": "state", "instance": "VI_1"})
        assert (await line(reader))["instance"] == "VI_1"
        writer.close()

    serve(path, body, idle_timeout=0.05)


def test_a_subscriber_hanging_up_is_a_clean_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "control.sock"
    caplog.set_level(logging.DEBUG)

    async def body(server: ControlServer) -> None:
        hub: EventHub = server.target.hub  # type: ignore[attr-defined]
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"command": "subscribe"}\n')
        assert await line(reader) == {"ok": True}
        writer.close()
        await until(lambda: not hub.subscriptions, "the subscriber to be forgotten")
        for n in range(3):  # events after the hang-up find nobody to fail on
            hub.publish({"event": "state", "n": n})
            await asyncio.sleep(0)

    target = serve(path, body)
    assert target.hub.status()["subscribers"] == 0
    assert "control subscriber 1 left" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "Traceback" not in caplog.text


def test_a_slow_subscriber_is_told_how_many_events_it_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "control.sock"

    async def body(server: ControlServer) -> None:
        hub: EventHub = server.target.hub  # type: ignore[attr-defined]
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"command": "subscribe"}\n')
        assert await line(reader) == {"ok": True}
        # Ten events in one go: the stream can take none before the tenth, and holds five.
        for n in range(10):
            hub.publish({"event": "state", "n": n})
        got = [await line(reader) for _ in range(6)]
        assert [e["n"] for e in got[:5]] == [0, 1, 2, 3, 4]
        assert [e["seq"] for e in got[:5]] == [1, 2, 3, 4, 5]
        assert got[5] == {"event": "overflow", "dropped": 5, "first_seq": 6, "last_seq": 10}
        hub.publish({"event": "state", "n": 10})
        assert await line(reader) == {"event": "state", "n": 10, "seq": 11}
        status = hub.status()
        assert status["events_dropped"] == 5 and status["subscribers"] == 1
        writer.close()

    serve(path, body, limit=5)
    assert "control subscriber 1 lost 5 events (seq 6 to 10)" in caplog.text


def test_event_hub_counts_drops_per_subscriber() -> None:
    async def go() -> None:
        hub = EventHub(limit=2)
        slow, fast = hub.subscribe(), hub.subscribe()
        hub.publish({"event": "a"})
        assert (await fast.get())["event"] == "a"
        hub.publish({"event": "b"})
        hub.publish({"event": "c"})  # slow holds a, b: c is its first loss
        assert [(await fast.get())["event"] for _ in range(2)] == ["b", "c"]
        assert [(await slow.get())["event"] for _ in range(2)] == ["a", "b"]
        hub.publish({"event": "d"})  # slow has room again: d comes after the gap
        assert await slow.get() == {"event": "overflow", "dropped": 1, "first_seq": 3,
                                    "last_seq": 3}  # fmt: skip
        assert (await slow.get())["event"] == "d"
        assert hub.status() == {"subscribers": 2, "events_dropped": 1, "seq": 4}
        hub.unsubscribe(slow)
        assert hub.status()["subscribers"] == 1

    asyncio.run(go())


def test_announce_answers_whether_the_master_announced(tmp_path: Path) -> None:
    """Version 1 only: an agent asks a master to send its GARPs again (hanet.agent.l3)."""
    path = tmp_path / "control.sock"

    async def body(server: ControlServer) -> None:
        reader, writer = await asyncio.open_unix_connection(str(path))
        for name, announced in (("router-a", True), ("router-b", False)):
            request = {"command": "announce", "name": name, "version": 1}
            writer.write(json.dumps(request).encode() + b"\n")
            assert await line(reader) == {"ok": True, "announced": announced}
        writer.write(b'{"command": "announce", "name": "router-a"}\n')
        answer = await line(reader)
        assert answer["ok"] is False and "version" in answer["error"]
        writer.write(b'{"command": "announce", "version": 1}\n')
        answer = await line(reader)
        assert answer["ok"] is False and "name" in answer["error"]
        writer.close()

    serve(path, body)
