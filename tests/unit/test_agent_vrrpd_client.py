"""hanet-agent's client of the node's vrrpd (hanet.agent.vrrpd_client) against a fake
control socket that speaks one JSON line per request: requests carry ``"version": 1``,
answers come back, a refusal is ``VrrpdRefused`` with vrrpd's message, and anything else
that goes wrong (no socket, no answer, garbage) a ``VrrpdError`` saying what, never
another exception; a subscription yields the snapshot then state events and ends with a
VrrpdError when vrrpd goes away."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from hanet.agent.vrrpd_client import VrrpdClient, VrrpdError, VrrpdRefused

T = TypeVar("T")
Script = Callable[[dict[str, Any], asyncio.StreamWriter], Awaitable[None]]


class FakeVrrpd:
    """A control socket: each connection's first line is a request, kept in ``requests``;
    ``script`` answers it (writes lines, may close)."""

    def __init__(self, path: Path, script: Script) -> None:
        self.path, self.script = path, script
        self.requests: list[dict[str, Any]] = []
        self.server: asyncio.AbstractServer | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if line:
                request = json.loads(line)
                self.requests.append(request)
                await self.script(request, writer)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def fake_vrrpd(tmp_path: Path, script: Script) -> AsyncIterator[FakeVrrpd]:
    fake = FakeVrrpd(tmp_path / "vrrpd.sock", script)
    fake.server = await asyncio.start_unix_server(fake._handle, str(fake.path), limit=1 << 24)
    try:
        yield fake
    finally:
        fake.server.close()


def line(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def answer(obj: Any) -> Script:
    async def script(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(obj if isinstance(obj, bytes) else line(obj))

    return script


def run(test: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(test(), 20)

    return asyncio.run(bounded())


def test_requests_carry_version_1_and_answers_come_back(tmp_path: Path) -> None:
    async def script(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(line({"ok": True, "echo": request.get("command")}))

    async def go() -> None:
        async with fake_vrrpd(tmp_path, script) as fake:
            client = VrrpdClient(fake.path, timeout=5)
            instances = {"router-r1": {"interface": "ha-1", "vrid": 1}}
            assert await client.sync(instances) == {"ok": True, "echo": "sync"}
            assert (await client.status())["echo"] == "status"
            await client.hold_backup("router-r1", "split brain")
            await client.release("router-r1")
            assert await client.request({"command": "x", "version": 7}) == {
                "ok": True, "echo": "x"}  # fmt: skip
        assert fake.requests == [
            {"command": "sync", "instances": instances, "version": 1},
            {"command": "status", "version": 1},
            {"command": "hold_backup", "name": "router-r1", "reason": "split brain",
             "version": 1},
            {"command": "release", "name": "router-r1", "version": 1},
            {"command": "x", "version": 1},  # the client speaks version 1, whatever it is given
        ]  # fmt: skip

    run(go)


def test_a_refusal_is_vrrpd_refused_with_its_message(tmp_path: Path) -> None:
    message = "instances.router-r1.vrid: 0 is outside 1..255"

    async def go() -> None:
        async with fake_vrrpd(tmp_path, answer({"ok": False, "error": message})) as fake:
            with pytest.raises(VrrpdRefused) as caught:
                await VrrpdClient(fake.path, timeout=5).sync({})
        assert str(caught.value) == message

    run(go)


def test_a_huge_answer_is_one_line(tmp_path: Path) -> None:
    # The status of thousands of instances is one line of megabytes.
    big = {f"router-{i}": {"state": "BACKUP", "pad": "x" * 200} for i in range(10000)}

    async def go() -> None:
        async with fake_vrrpd(tmp_path, answer({"ok": True, "instances": big})) as fake:
            status = await VrrpdClient(fake.path, timeout=5).status()
        assert status["instances"] == big

    run(go)


def test_no_socket_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.sock"

    async def go() -> None:
        with pytest.raises(VrrpdError, match=f"vrrpd at {missing}: ") as caught:
            await VrrpdClient(missing, timeout=5).status()
        assert not isinstance(caught.value, VrrpdRefused)
        with pytest.raises(VrrpdError, match=f"vrrpd at {missing}: "):
            async for _ in VrrpdClient(missing).subscribe():
                pass

    run(go)


def test_a_socket_nobody_listens_on_names_the_path(tmp_path: Path) -> None:
    async def go() -> None:
        async with fake_vrrpd(tmp_path, answer({"ok": True})) as fake:
            pass  # closed: the file stays, nobody accepts
        assert fake.path.exists()
        with pytest.raises(VrrpdError, match=f"vrrpd at {fake.path}: "):
            await VrrpdClient(fake.path, timeout=5).status()

    run(go)


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (b"I am not JSON\n", "vrrpd: status: answer is not JSON"),
        (b"[1, 2]\n", "vrrpd: status: answer is not an object"),
        (b"", "vrrpd: status: closed without an answer"),
    ],
)
def test_garbage_is_a_vrrpd_error_saying_what(tmp_path: Path, reply: bytes, says: str) -> None:
    async def go() -> None:
        async with fake_vrrpd(tmp_path, answer(reply)) as fake:
            with pytest.raises(VrrpdError) as caught:
                await VrrpdClient(fake.path, timeout=5).status()
        assert not isinstance(caught.value, VrrpdRefused)
        assert str(caught.value).startswith(says), str(caught.value)

    run(go)


def test_a_silent_vrrpd_is_a_vrrpd_error_after_the_timeout(tmp_path: Path) -> None:
    async def silent(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    async def go() -> None:
        async with fake_vrrpd(tmp_path, silent) as fake:
            with pytest.raises(VrrpdError, match=r"vrrpd: sync: no answer"):
                await VrrpdClient(fake.path, timeout=0.2).sync({})

    run(go)


# Subscriptions.

SNAPSHOT = {"event": "snapshot", "seq": 4, "instances": [
    {"instance": "router-r1", "state": "BACKUP", "priority": 50, "held": False,
     "hold_reason": None, "fault": None, "source": "control"}]}  # fmt: skip
STATE = {"event": "state", "instance": "router-r1", "old": "BACKUP", "new": "MASTER",
         "reason": "master_down_timer", "priority": 50, "seq": 5}  # fmt: skip


def events_then_close(*lines: bytes, first: bytes = line({"ok": True})) -> Script:
    async def script(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(first)
        for item in lines:
            writer.write(item)
            await writer.drain()

    return script


def test_subscribe_yields_the_snapshot_then_events_then_ends_with_an_error(
    tmp_path: Path,
) -> None:
    later = STATE | {"old": "MASTER", "new": "BACKUP", "seq": 6}
    overflow = {"event": "overflow", "dropped": 3, "first_seq": 7, "last_seq": 9}
    script = events_then_close(
        line(SNAPSHOT), line(STATE), b"not JSON, skipped\n", line([1]), line(later),
        line(overflow), line(SNAPSHOT | {"seq": 9}),
    )  # fmt: skip

    async def go() -> None:
        got: list[dict[str, Any]] = []
        async with fake_vrrpd(tmp_path, script) as fake:
            with pytest.raises(VrrpdError, match="vrrpd closed the subscription"):
                async for event in VrrpdClient(fake.path).subscribe():
                    got.append(event)
        assert fake.requests == [{"command": "subscribe", "version": 1}]
        assert got == [SNAPSHOT, STATE, later, overflow, SNAPSHOT | {"seq": 9}]

    run(go)


def test_a_huge_snapshot_is_one_event(tmp_path: Path) -> None:
    instances = [SNAPSHOT["instances"][0] | {"instance": f"router-{i}"} for i in range(10000)]
    snapshot = {"event": "snapshot", "seq": 1, "instances": instances}

    async def go() -> None:
        async with fake_vrrpd(tmp_path, events_then_close(line(snapshot))) as fake:
            subscription = VrrpdClient(fake.path).subscribe()
            first = await anext(subscription)
            await subscription.aclose()
        assert first == snapshot

    run(go)


@pytest.mark.parametrize(
    ("first", "says"),
    [
        (line({"ok": False, "error": "version: 2 is not supported"}),
         "vrrpd: subscribe refused: version: 2 is not supported"),
        (b"", "vrrpd: subscribe: closed without an answer"),
        (b"nonsense\n", "vrrpd: subscribe: answer is not JSON"),
        (b"[1]\n", "vrrpd: subscribe: answer is not an object"),
        (b"null\n", "vrrpd: subscribe: answer is not an object"),
    ],
)  # fmt: skip
def test_a_subscription_refused_or_garbled_is_a_vrrpd_error(
    tmp_path: Path, first: bytes, says: str
) -> None:
    async def go() -> None:
        async with fake_vrrpd(tmp_path, events_then_close(first=first)) as fake:
            with pytest.raises(VrrpdError) as caught:
                async for _ in VrrpdClient(fake.path).subscribe():
                    raise AssertionError("no event expected")
        assert str(caught.value).startswith(says), str(caught.value)

    run(go)


def test_vrrpd_going_away_mid_subscription_ends_it(tmp_path: Path) -> None:
    """The agent's follower learns of a vrrpd restart by the error, then subscribes again."""
    gone = asyncio.Event()

    async def script(request: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(line({"ok": True}) + line(SNAPSHOT))
        await writer.drain()
        await gone.wait()
        transport = writer.transport
        transport.abort()  # a crash: reset, not a clean close

    async def go() -> None:
        got = []
        async with fake_vrrpd(tmp_path, script) as fake:
            with pytest.raises(VrrpdError):
                async for event in VrrpdClient(fake.path).subscribe():
                    got.append(event)
                    gone.set()
            assert got == [SNAPSHOT]
            # vrrpd is back: a new subscription starts with its snapshot again.
            gone.clear()
            again = VrrpdClient(fake.path).subscribe()
            assert await anext(again) == SNAPSHOT
            await again.aclose()

    run(go)
