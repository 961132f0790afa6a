"""The agent's side of the agents' protocol over time: register, heartbeat, and follow the
desired state (a full read, then long-polls for changes), with backoff while the server is
gone or answers nonsense. The data path is never touched from here: a server that is away
only delays changes (hanet.agent.l3 decides what a long absence means: fencing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hanet.agent.server_api import Backoff, Refused, ServerApi, ServerError, StateAnswer

log = logging.getLogger(__name__)

NOT_FOUND = 404
# Retries back off to at most this: an agent is one client of its server, and a node that
# recovers while the server is away should be back within seconds of the server.
RETRY_LIMIT = 5.0


class ServerSession:
    def __init__(
        self,
        api: ServerApi,
        host: str,
        agent_type: str,
        configurations: dict[str, Any],
        on_state: Callable[[StateAnswer], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api, self.host, self.agent_type = api, host, agent_type
        self.configurations = configurations
        self.on_state = on_state
        self.clock = clock
        self.agent_id: str | None = None
        self.report_interval = 30.0
        self.revision: int | None = None  # None: the next read is a full one
        self.last_contact = clock()
        self.reachable = False
        self.registered = asyncio.Event()
        self._last_error = ""
        self._full_requests = 0  # request_full calls, to tell a read asked before one
        self._call: asyncio.Future[StateAnswer] | None = None

    def contact(self) -> None:
        self.last_contact = self.clock()
        if not self.reachable:
            log.info("server reachable")
        self.reachable = True

    def silent_for(self) -> float:
        return self.clock() - self.last_contact

    def _trouble(self, what: str, exc: Exception) -> None:
        self.reachable = False
        message = f"{what}: {exc}"
        # A server that stays away is one line, not one line per retry.
        if message != self._last_error:
            log.warning("%s", message)
            self._last_error = message

    def request_full(self) -> None:
        """The next read is a full one, even if a long-poll is in flight now: its answer
        does not count as that read."""
        self.revision = None
        self._full_requests += 1

    def restart_poll(self) -> None:
        """Drop the long-poll under way and ask again at once: after the management link
        was cut, the held request may sit on a connection that no longer leads anywhere."""
        if self._call is not None and not self._call.done():
            self._call.cancel()

    async def register(self) -> str:
        backoff = Backoff(limit=RETRY_LIMIT)
        while True:
            try:
                registration = await self.api.register(
                    self.host, self.agent_type, self.configurations
                )
            except ServerError as exc:
                self._trouble("cannot register", exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            self.contact()
            self.agent_id = registration.agent_id
            self.report_interval = registration.report_interval
            self.registered.set()
            log.info(
                "registered as %s agent %s of host %s (report every %s s)",
                self.agent_type,
                self.agent_id,
                self.host,
                self.report_interval,
            )
            return self.agent_id

    async def _reregister(self) -> None:
        """The server no longer knows this agent (its database was rebuilt): register again
        and read everything."""
        self.registered.clear()
        self.request_full()
        await self.register()

    async def heartbeat_loop(self) -> None:
        await self.registered.wait()
        while True:
            assert self.agent_id is not None
            try:
                await self.api.heartbeat(self.agent_id)
                self.contact()
            except Refused as exc:
                if exc.status == NOT_FOUND:
                    await self._reregister()
                    continue
                self._trouble("heartbeat refused", exc)
            except ServerError as exc:
                self._trouble("heartbeat failed", exc)
            await asyncio.sleep(self.report_interval)

    async def poll_loop(self) -> None:
        """Read the state and hand each answer to ``on_state``, for ever."""
        await self.registered.wait()
        backoff = Backoff(limit=RETRY_LIMIT)
        while True:
            assert self.agent_id is not None
            asked, since = self._full_requests, self.revision
            call = asyncio.ensure_future(
                self.api.state(self.agent_id, self.agent_type, self.revision)
            )
            self._call = call
            try:
                await asyncio.wait([call])
                if call.cancelled():  # restart_poll: ask again, now
                    continue
                answer = call.result()
            except asyncio.CancelledError:
                call.cancel()
                raise
            except Refused as exc:
                if exc.status == NOT_FOUND:
                    await self._reregister()
                    continue
                self._trouble("state refused", exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            except ServerError as exc:
                self._trouble("cannot read the state", exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            self.contact()
            backoff.reset()
            if self.revision is not None and answer.full:
                log.info("the server sent a full state")
            # A full read asked for while this one was in flight (fencing lifted, the agent
            # registered again) stays asked for: this answer came from the old request.
            if self._full_requests == asked:
                self.revision = answer.revision
            if since is not None and answer.revision < since:
                # The server's change numbers went back (its database restored from a
                # backup): changes after ours would be missed until they caught up.
                log.warning("the server's changes went back from %d to %d: reading all",
                            since, answer.revision)  # fmt: skip
                self.request_full()
            await self.on_state(answer)
