"""hanet-agent's client of the agents' protocol (hanet.agent.server_api) against a real
hanet-server: what the agent receives for register, heartbeat, the full state, a long-poll
that a change ends, HA states; a refusal is ``Refused`` with its status, anything the
agent cannot trust (garbage, an unreachable or silent server) a ``ServerError`` saying
what was wrong, never another exception; retries back off with jitter."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from hanet.agent import server_api
from hanet.agent.server_api import Backoff, Refused, ServerApi, ServerError
from hanet.server.config import ServerConfig, Token
from hanet.server.testing import ServerThread

T = TypeVar("T")
L3 = "L3 agent"
TOKENS = {"admin-token": Token("admin-project", "admin"), "alice-token": Token("alice", "member")}
NO_AGENT = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    config = ServerConfig(
        db=f"sqlite:///{tmp_path / 'hanet.db'}", auth="token", tokens=TOKENS,
        report_interval=0.5, agent_down_time=600,  # agents live through the test
    )  # fmt: skip
    with ServerThread(config) as running:
        yield running


def run(test: Callable[[], Awaitable[T]]) -> T:
    """One test's coroutine, bounded: a hang fails the test instead of stalling the run."""

    async def bounded() -> T:
        return await asyncio.wait_for(test(), 30)

    return asyncio.run(bounded())


async def until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_register_heartbeat_state_long_poll_and_ha_states(server: ServerThread) -> None:
    admin = server.client("admin-token")

    async def go() -> None:
        api = ServerApi(server.url, "admin-token")
        try:
            registration = await api.register("net0", L3, {"agent_mode": "legacy"})
            assert registration.report_interval == 0.5
            agent = registration.agent_id
            (listed,) = admin.get("/v2.0/agents").body["agents"]
            assert listed["id"] == agent and listed["host"] == "net0"
            assert listed["configurations"] == {"agent_mode": "legacy"}
            # One agent per (type, host): registering again is the same agent.
            assert (await api.register("net0", L3, {})).agent_id == agent
            await api.heartbeat(agent)
            empty = await api.state(agent, L3, None)
            assert empty.full and empty.items == [] and empty.removed == []
            first = await asyncio.to_thread(
                admin.post, "/v2.0/routers", {"router": {"name": "r1", "ha": True}}
            )
            full = await api.state(agent, L3, None)
            assert full.full and [r["id"] for r in full.items] == [first.body["router"]["id"]]
            assert full.items[0]["ha"] is True and full.revision > empty.revision
            # A long-poll holds until a router changes, then says what changed only.
            poll = asyncio.create_task(api.state(agent, L3, full.revision, wait=30))
            await until(lambda: server.waiting_polls() == 1, "the long-poll to hold")
            assert not poll.done()
            second = await asyncio.to_thread(
                admin.post, "/v2.0/routers", {"router": {"name": "r2", "ha": True}}
            )
            changed = await asyncio.wait_for(poll, 25)
            assert not changed.full and changed.revision > full.revision
            assert [r["name"] for r in changed.items] == ["r2"] and changed.removed == []
            # Deleted: it comes back in the changes as removed.
            router = second.body["router"]["id"]
            await asyncio.to_thread(admin.delete, f"/v2.0/routers/{router}")
            gone = await api.state(agent, L3, changed.revision, wait=5)
            assert gone.items == [] and gone.removed == [router]
            # HA states, as the API shows them.
            r1 = first.body["router"]["id"]
            await api.ha_states(agent, {r1: "active"})
            hosting = admin.get(f"/v2.0/routers/{r1}/l3-agents").body["agents"]
            assert [(a["id"], a["ha_state"]) for a in hosting] == [(agent, "active")]
            await api.router_errors(agent, {r1: "namespace: refused"})
            assert admin.get(f"/v2.0/routers/{r1}").body["router"]["status"] == "ERROR"
        finally:
            await api.close()

    run(go)


def test_refusals_carry_their_status(server: ServerThread) -> None:
    async def go() -> None:
        api = ServerApi(server.url, "admin-token")
        stranger = ServerApi(server.url, "nobody-s-token")
        member = ServerApi(server.url, "alice-token")
        try:
            with pytest.raises(Refused) as unknown:
                await api.heartbeat(NO_AGENT)
            assert unknown.value.status == 404 and NO_AGENT in str(unknown.value)
            with pytest.raises(Refused) as gone:
                await api.state(NO_AGENT, L3, 3, wait=1)
            assert gone.value.status == 404
            with pytest.raises(Refused) as bad_token:
                await stranger.register("net0", L3, {})
            assert bad_token.value.status == 401
            with pytest.raises(Refused) as not_admin:
                await member.register("net0", L3, {})
            assert not_admin.value.status == 403
            registration = await api.register("net0", L3, {})
            with pytest.raises(Refused) as bad_state:
                await api.ha_states(registration.agent_id, {NO_AGENT: "boss"})
            assert bad_state.value.status == 400
        finally:
            for client in (api, stranger, member):
                await client.close()

    run(go)


# Answers the agent cannot trust, from a server that is not hanet-server.

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def fake_server(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # a silent handler is cut short
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def answering(status: int, body: bytes, content_type: str = "application/json") -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    return handler


STATE = b'{"schema_version": 1, "revision": 7, "full": true, "routers": [], "removed": []}'


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"<html>hello</html>", "the answer is not JSON"),
        (b'["state"]', "state: expected an object"),
        (STATE.replace(b'"schema_version": 1', b'"schema_version": 2'), "schema_version 2"),
        (STATE.replace(b'"revision": 7', b'"revision": "7"'), "revision: expected a count"),
        (STATE.replace(b'"revision": 7', b'"revision": -1'), "revision: expected a count"),
        (STATE.replace(b'"revision": 7', b'"revision": true'), "revision: expected a count"),
        (STATE.replace(b'"revision": 7, ', b""), "revision: expected a count, got None"),
        (STATE.replace(b'"routers": []', b'"routers": {}'), "routers: expected a list"),
        (STATE.replace(b'"routers": []', b'"routers": [{"name": "r"}]'), "routers[0]:"),
        (STATE.replace(b'"routers": []', b'"routers": [7]'), "routers[0]: expected an object"),
        (STATE.replace(b'"removed": []', b'"removed": [7]'), "removed: expected a list"),
        (STATE.replace(b'"full": true', b'"full": "yes"'), "full: expected true or false"),
        # Without its routers, a full state would read as "this node hosts none": every
        # router here would be torn down.
        (STATE.replace(b', "routers": []', b""), "routers: missing"),
        (STATE.replace(b'"routers": []', b'"networks": []'), "routers: missing"),
        (b'{"revision": 1, "schema_version": 1, "routers": []}', "full: missing"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_a_malformed_state_is_a_server_error_saying_what(body: bytes, says: str) -> None:
    async def go() -> None:
        async with fake_server(answering(200, body)) as url:
            api = ServerApi(url, None)
            try:
                with pytest.raises(ServerError) as caught:
                    await api.state(NO_AGENT, L3, None)
            finally:
                await api.close()
        assert not isinstance(caught.value, Refused)
        assert says in str(caught.value), str(caught.value)

    run(go)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"report_interval": 30}', "register: the answer has no agent id"),
        (b'{"agent": {"id": 7}}', "register: the answer has no agent id"),
        (b'{"agent": {"id": "a"}, "report_interval": "30"}', "report_interval '30' is not"),
        (b'{"agent": {"id": "a"}, "report_interval": 0}', "report_interval 0 is not"),
        (b'{"agent": {"id": "a"}, "report_interval": NaN}', "report_interval nan is not"),
        (b'{"agent": {"id": "a"}, "report_interval": Infinity}', "report_interval inf is"),
    ],
)
def test_a_malformed_registration_is_a_server_error(body: bytes, says: str) -> None:
    async def go() -> None:
        async with fake_server(answering(201, body)) as url:
            api = ServerApi(url, None)
            try:
                with pytest.raises(ServerError) as caught:
                    await api.register("net0", L3, {})
            finally:
                await api.close()
        assert says in str(caught.value), str(caught.value)

    run(go)


def test_4xx_and_5xx_whatever_their_body(tmp_path: Path) -> None:
    """A proxy in front of the server answers in HTML: a 4xx is still a refusal with its
    status (a 404 makes the agent register again), a 5xx a failure to retry."""

    async def go() -> None:
        for status, body, kind in [
            (404, b"<html>Not Found</html>", Refused),
            (403, b"Forbidden", Refused),
            (404, b'{"NeutronError": {"message": "Agent x could not be found"}}', Refused),
            (502, b"<html>Bad Gateway</html>", ServerError),
            (503, b"", ServerError),
        ]:
            async with fake_server(answering(status, body, "text/html")) as url:
                api = ServerApi(url, None)
                try:
                    with pytest.raises(ServerError) as caught:
                        await api.heartbeat(NO_AGENT)
                finally:
                    await api.close()
            assert type(caught.value) is kind, (status, body, caught.value)
            assert str(status) in str(caught.value)
            if kind is Refused:
                assert isinstance(caught.value, Refused) and caught.value.status == status
            if b"NeutronError" in body:
                assert "Agent x could not be found" in str(caught.value)

    run(go)


def test_an_unreachable_server_is_a_server_error_at_once() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def go() -> None:
        api = ServerApi(f"http://127.0.0.1:{port}", None, timeout=60)
        try:
            with pytest.raises(ServerError, match=r"POST /hanet/v1/agents: .*Connect"):
                # Refused at once: well before the 60 s timeout.
                await asyncio.wait_for(api.register("net0", L3, {}), 10)
        finally:
            await api.close()

    run(go)


def test_a_silent_server_is_a_server_error_after_the_timeout() -> None:
    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def go() -> None:
        async with fake_server(silent) as url:
            api = ServerApi(url, None, timeout=0.2)
            try:
                with pytest.raises(ServerError, match=r"PUT /hanet/v1/agents/.*/heartbeat: "):
                    await asyncio.wait_for(api.heartbeat(NO_AGENT), 10)
            finally:
                await api.close()

    run(go)


# Backoff.


def test_backoff_doubles_to_its_limit_with_jitter_and_resets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        draws.append((low, high))
        return high if len(draws) % 2 else low

    monkeypatch.setattr(server_api.random, "uniform", uniform)
    backoff = Backoff(first=0.5, limit=30.0)
    delays = [backoff.next_delay() for _ in range(10)]
    bases = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    assert draws == [(0.8, 1.2)] * 10  # ±20 %
    assert delays == pytest.approx(
        [base * (1.2 if i % 2 == 0 else 0.8) for i, base in enumerate(bases)]
    )
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.5 * 1.2)


def test_backoff_jitter_stays_within_twenty_percent() -> None:
    backoff = Backoff(first=1.0, limit=4.0)
    for expected in [1, 2, 4, 4, 4]:
        assert 0.8 * expected <= backoff.next_delay() <= 1.2 * expected
    spread = {round(Backoff(first=1.0).next_delay(), 6) for _ in range(50)}
    assert len(spread) > 1  # jitter: not every agent comes back at the same instant


def test_backoff_through_a_long_outage() -> None:
    """Hours of a server away (a failure every 30 s) must not end the agent: 0.5 * 2 ** n
    overflows a float after about a thousand failures."""
    backoff = Backoff(first=0.5, limit=30.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert 24.0 <= delay <= 36.0


def test_the_agent_type_decides_where_the_items_are() -> None:
    assert server_api.STATE_KEYS == {"L3 agent": "routers", "Linux bridge agent": "ports"}
    answer: dict[str, Any] = {"schema_version": 1, "revision": 3, "full": False,
                              "ports": [{"id": "p1"}], "removed": ["p2"]}  # fmt: skip

    async def go() -> None:
        async with fake_server(answering(200, json.dumps(answer).encode())) as url:
            api = ServerApi(url, None)
            try:
                state = await api.state(NO_AGENT, "Linux bridge agent", 2, wait=1)
            finally:
                await api.close()
        assert state.items == [{"id": "p1"}] and state.removed == ["p2"] and not state.full

    run(go)
