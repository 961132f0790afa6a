"""hanet-agent's session with the server over time (hanet.agent.session) against a real
hanet-server: it registers, hands the full state then the changes to the agent, registers
again and reads everything when the server forgot it, and rides out a server that is
away (backing off, ``reachable`` false, ``silent_for`` growing) until it is back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from sqlalchemy import delete

from hanet.agent import session as session_module
from hanet.agent.server_api import Backoff, ServerApi, StateAnswer
from hanet.agent.session import ServerSession
from hanet.server.api.app import make_app, server_options
from hanet.server.config import ServerConfig, Token
from hanet.server.models import Agent
from hanet.server.testing import ServerThread

T = TypeVar("T")
L3 = "L3 agent"
TOKENS = {"admin-token": Token("admin-project", "admin")}


class PortServer(ServerThread):
    """A ServerThread on a given port (0: any), that stops at once even while an agent's
    long-poll holds: a test can stop it and start another on the same port and database."""

    def __init__(self, config: ServerConfig, port: int = 0) -> None:
        super().__init__(config)
        self.port = port

    async def _start(self) -> None:
        app = make_app(self.store, self.config)
        options = {**server_options(self.config), "shutdown_timeout": 0.1}
        self._runner = web.AppRunner(app, **options)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"


def config_for(tmp_path: Path) -> ServerConfig:
    return ServerConfig(
        db=f"sqlite:///{tmp_path / 'hanet.db'}", auth="token", tokens=TOKENS,
        report_interval=0.2, agent_down_time=600,  # the agent lives through the test
    )  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PortServer]:
    with PortServer(config_for(tmp_path)) as running:
        yield running


class FastBackoff(Backoff):
    """The session's backoff, short for a test, remembering every delay it gave."""

    delays: list[float] = []

    def __init__(self, **_settings: float) -> None:
        super().__init__(first=0.05, limit=0.2)

    def next_delay(self) -> float:
        delay = super().next_delay()
        FastBackoff.delays.append(delay)
        return delay


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    FastBackoff.delays = []
    monkeypatch.setattr(session_module, "Backoff", FastBackoff)
    return FastBackoff.delays


class Agent_:
    """What the agent gets: every answer handed to on_state, in order."""

    def __init__(self, url: str) -> None:
        self.answers: asyncio.Queue[StateAnswer] = asyncio.Queue()
        self.api = ServerApi(url, "admin-token", timeout=2)
        self.session = ServerSession(self.api, "net0", L3, {}, self.on_state)

    async def on_state(self, answer: StateAnswer) -> None:
        await self.answers.put(answer)

    async def next(self, what: str) -> StateAnswer:
        try:
            return await asyncio.wait_for(self.answers.get(), 15)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


@asynccontextmanager
async def running_agent(url: str) -> AsyncIterator[Agent_]:
    agent = Agent_(url)
    await asyncio.wait_for(agent.session.register(), 15)
    tasks = [
        asyncio.create_task(agent.session.heartbeat_loop()),
        asyncio.create_task(agent.session.poll_loop()),
    ]
    try:
        yield agent
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:  # a loop that ended by itself is a bug: show it
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await agent.api.close()


def run(test: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(test(), 60)

    return asyncio.run(bounded())


async def until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def new_router(server: ServerThread, name: str) -> str:
    reply = await asyncio.to_thread(
        server.client("admin-token").post, "/v2.0/routers", {"router": {"name": name, "ha": True}}
    )
    assert reply.status == 201, reply.body
    return str(reply.body["router"]["id"])


def names(answer: StateAnswer) -> list[str]:
    return sorted(str(item["name"]) for item in answer.items)


def test_registers_then_full_state_then_changes(server: PortServer) -> None:
    async def go() -> None:
        async with running_agent(server.url) as agent:
            session = agent.session
            assert session.registered.is_set() and session.reachable
            assert session.report_interval == 0.2
            (listed,) = server.client("admin-token").get("/v2.0/agents").body["agents"]
            assert listed["id"] == session.agent_id and listed["host"] == "net0"
            first = await agent.next("the full state")
            assert first.full and first.items == []
            await until(lambda: server.waiting_polls() == 1, "the long-poll")
            await new_router(server, "r1")
            changes = await agent.next("the change")
            assert not changes.full and names(changes) == ["r1"]
            item: dict[str, Any] = changes.items[0]
            assert item["ha"] is True and isinstance(item["vrid"], int)
            assert session.revision == changes.revision > first.revision
            assert session.silent_for() < 5

    run(go)


def test_a_full_read_asked_during_a_long_poll_is_not_lost(server: PortServer) -> None:
    """The agent asks for a full read (it stopped its legacy routers while the server was
    away, and now must rebuild them) while a long-poll holds: the poll's answer must not
    cancel the request, the next read is the full state."""

    async def go() -> None:
        async with running_agent(server.url) as agent:
            await agent.next("the full state")
            await until(lambda: server.waiting_polls() == 1, "the long-poll")
            agent.session.request_full()
            await new_router(server, "r1")
            changes = await agent.next("the change that ends the poll")
            assert names(changes) == ["r1"]
            again = await agent.next("the full state asked for")
            assert again.full and names(again) == ["r1"]

    run(go)


def test_a_server_that_forgot_the_agent_gets_it_again_and_it_reads_everything(
    server: PortServer,
) -> None:
    admin = server.client("admin-token")

    async def go() -> None:
        async with running_agent(server.url) as agent:
            session = agent.session
            await agent.next("the full state")
            await new_router(server, "r1")
            while names(await agent.next("r1")) != ["r1"]:
                pass
            forgotten = session.agent_id
            with server.store.writes.begin() as db:  # a database rebuilt from nothing
                db.execute(delete(Agent).where(Agent.id == forgotten))
            # The heartbeat (every 0.2 s) finds out; a change ends the held poll too.
            await until(lambda: session.agent_id != forgotten, "the agent to register again")
            await new_router(server, "r2")
            # What the agent holds, from the answers it gets, becomes what the server says
            # the new agent hosts; it got there by a full read.
            held: dict[str, str] = {}
            full_reads = 0

            def hosted() -> dict[str, str]:
                state = admin.get(f"/hanet/v1/agents/{session.agent_id}/state").body
                return {r["id"]: r["name"] for r in state["routers"]}

            while not full_reads or held != await asyncio.to_thread(hosted):
                answer = await agent.next("the agent to hold what the server says")
                if answer.full:
                    held, full_reads = {}, full_reads + 1
                for router in answer.removed:
                    held.pop(router, None)
                held.update({r["id"]: r["name"] for r in answer.items})
            (listed,) = admin.get("/v2.0/agents").body["agents"]
            assert session.agent_id == listed["id"] != forgotten
            assert "r2" in held.values()

    run(go)


def test_an_unreachable_server_is_retried_with_backoff_until_it_is_back(
    tmp_path: Path, fast_backoff: list[float]
) -> None:
    async def go() -> None:
        first = PortServer(config_for(tmp_path))
        first.__enter__()
        port, url = first.port, first.url
        stopped = False
        try:
            async with running_agent(url) as agent:
                session = agent.session
                full = await agent.next("the full state")
                await until(lambda: first.waiting_polls() == 1, "the long-poll")
                await asyncio.to_thread(first.__exit__, None, None, None)
                stopped = True
                await until(lambda: not session.reachable, "the session to see it")
                await until(lambda: len(fast_backoff) >= 4, "four retries")
                silent = session.silent_for()
                await until(lambda: session.silent_for() > silent + 0.2, "silence to grow")
                assert not session.reachable
                # Doubling (0.05, 0.1, 0.2 then the limit), each within ±20 %.
                assert fast_backoff[0] <= 0.06 and max(fast_backoff) <= 0.24
                assert fast_backoff[1] >= 0.08 and fast_backoff[2] >= 0.16
                # The same server, back on its port and database: the agent carries on.
                with PortServer(config_for(tmp_path), port) as second:
                    await until(lambda: session.reachable, "the session to reach it again")
                    assert session.silent_for() < 5
                    await new_router(second, "r1")
                    answer = await agent.next("the change after the outage")
                    while not answer.items:
                        answer = await agent.next("the change after the outage")
                    assert names(answer) == ["r1"] and answer.revision > full.revision
        finally:
            if not stopped:
                first.__exit__(None, None, None)

    run(go)


def test_a_dropped_long_poll_is_asked_again_and_loses_nothing(server: PortServer) -> None:
    """restart_poll (the management link was cut and is back): the held request goes, a
    new one follows at once from the same revision, and the next change arrives."""

    async def go() -> None:
        async with running_agent(server.url) as agent:
            first = await agent.next("the full state")
            await until(lambda: server.waiting_polls() >= 1, "the long-poll")
            agent.session.restart_poll()
            agent.session.restart_poll()  # twice, or with nothing held: harmless
            await new_router(server, "r1")
            changes = await agent.next("the change")
            assert not changes.full and names(changes) == ["r1"]
            assert changes.revision > first.revision
            assert agent.session.revision == changes.revision

    run(go)


class ScriptedApi:
    """The server as a script of state answers, recording the ``since`` of each read;
    once the script is done, reads hold for ever (a long-poll with nothing new)."""

    def __init__(self, answers: list[StateAnswer]) -> None:
        self.answers, self.asked = list(answers), []  # type: ignore[var-annotated]

    async def register(self, host: str, agent_type: str, configurations: Any) -> Any:
        from hanet.agent.server_api import Registration

        return Registration("a1", 30.0)

    async def state(self, agent_id: str, agent_type: str, since: int | None) -> StateAnswer:
        self.asked.append(since)
        if not self.answers:
            await asyncio.Event().wait()
        return self.answers.pop(0)


def test_a_server_whose_changes_went_back_is_read_in_full() -> None:
    """A server database restored from a backup numbers its changes from an older point:
    an agent asking for changes after its own, newer, number would miss every change until
    the numbers caught up. The agent reads everything instead."""
    api = ScriptedApi(
        [
            StateAnswer(revision=500, full=True, items=[], removed=[]),
            StateAnswer(revision=120, full=False, items=[], removed=[]),  # restored
            StateAnswer(revision=121, full=True, items=[{"id": "r1"}], removed=[]),
        ]
    )

    async def go() -> None:
        got: list[StateAnswer] = []

        async def on_state(answer: StateAnswer) -> None:
            got.append(answer)

        session = ServerSession(api, "net0", L3, {}, on_state)  # type: ignore[arg-type]
        await session.register()
        poll = asyncio.create_task(session.poll_loop())
        try:
            await until(lambda: len(api.asked) == 4, "the reads")
        finally:
            poll.cancel()
        assert api.asked == [None, 500, None, 121]
        assert [a.revision for a in got] == [500, 120, 121] and session.revision == 121

    run(go)
