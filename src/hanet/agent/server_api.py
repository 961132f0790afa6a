"""The agents' protocol, client side (docs/server.md, "The agents' protocol").

Every answer is checked before the agent acts on it: a malformed answer is a ``ServerError``
like a refused connection or a 5xx, so the caller backs off and keeps the data path as it
is. A 4xx is a ``Refused`` (the server understood and said no: bad token, unknown agent).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from typing import Any

import aiohttp

STATE_KEYS = {"L3 agent": "routers", "Linux bridge agent": "ports"}
MAX_WAIT = 30.0


class ServerError(RuntimeError):
    """The server could not be reached, failed, or answered something malformed."""


class Refused(ServerError):
    """The server answered 4xx: it understood and refused."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class StateAnswer:
    revision: int
    full: bool
    items: list[dict[str, Any]]  # router or port documents, each with a string "id"
    removed: list[str]


@dataclass(frozen=True)
class Registration:
    agent_id: str
    report_interval: float


class Backoff:
    """Delays between retries: doubling from ``first`` to ``limit``, with jitter so that
    the agents of a cloud do not all come back at the same instant after a server restart."""

    def __init__(self, first: float = 0.5, limit: float = 30.0) -> None:
        self.first, self.limit, self.failures = first, limit, 0

    def next_delay(self) -> float:
        self.failures += 1
        # The exponent is capped: after a thousand failures (hours of a server away) 2 ** n
        # would no longer convert to a float (OverflowError), ending the agent's loop.
        delay = min(self.limit, self.first * 2.0 ** min(self.failures - 1, 64))
        return float(delay * random.uniform(0.8, 1.2))

    def reset(self) -> None:
        self.failures = 0


def _check_state(body: Any, key: str) -> StateAnswer:
    if not isinstance(body, dict):
        raise ServerError("state: expected an object")
    revision = body.get("revision")
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise ServerError(f"state: revision: expected a count, got {revision!r}")
    if body.get("schema_version") != 1:
        raise ServerError(f"state: schema_version {body.get('schema_version')!r} is not 1")
    # Required: a full state without its list would read as "this node hosts nothing" and
    # tear every router down.
    if key not in body:
        raise ServerError(f"state: {key}: missing")
    items = body[key]
    if not isinstance(items, list):
        raise ServerError(f"state: {key}: expected a list")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ServerError(f"state: {key}[{index}]: expected an object with an id")
    removed = body.get("removed", [])
    if not isinstance(removed, list) or not all(isinstance(r, str) for r in removed):
        raise ServerError("state: removed: expected a list of ids")
    if "full" not in body:  # a full state read as changes would never remove a router
        raise ServerError("state: full: missing")
    full = body["full"]
    if not isinstance(full, bool):
        raise ServerError("state: full: expected true or false")
    return StateAnswer(revision, full, items, removed)


def _neutron_message(text: str) -> str | None:
    """The message of a Neutron error body (``{"NeutronError": {"message": ...}}``)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    error = parsed.get("NeutronError") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


class ServerApi:
    """One agent's calls; a session per agent process, closed with ``close``."""

    def __init__(self, url: str, token: str | None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if token is not None:
            self.headers["X-Auth-Token"] = token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self.headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, method: str, path: str, body: Any = None, timeout: float | None = None
    ) -> Any:
        limit = aiohttp.ClientTimeout(total=timeout or self.timeout)
        data = None if body is None else json.dumps(body)
        try:
            async with self._http().request(
                method, self.url + path, data=data, timeout=limit
            ) as answer:
                raw = await answer.read()
                status = answer.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ServerError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        text = raw.decode("utf-8", errors="replace")
        # A 4xx is a refusal whatever its body: a proxy in front of the server answers
        # in HTML, and a 404 must still make the agent register again.
        if 400 <= status < 500:
            raise Refused(status, f"{method} {path}: {_neutron_message(text) or text[:200]}")
        if status >= 300:
            raise ServerError(f"{method} {path}: {status}: {text[:200]}")
        try:
            return json.loads(raw.decode("utf-8")) if raw else None
        except UnicodeDecodeError:
            raise ServerError(f"{method} {path}: {status}: the answer is not UTF-8") from None
        except ValueError:
            raise ServerError(f"{method} {path}: {status}: the answer is not JSON") from None

    async def register(
        self, host: str, agent_type: str, configurations: dict[str, Any]
    ) -> Registration:
        body = {"agent": {"host": host, "agent_type": agent_type, "configurations": configurations}}
        answer = await self._call("POST", "/hanet/v1/agents", body)
        agent = answer.get("agent") if isinstance(answer, dict) else None
        if not isinstance(agent, dict) or not isinstance(agent.get("id"), str):
            raise ServerError("register: the answer has no agent id")
        interval = answer.get("report_interval", 30)
        # Not NaN or Infinity (Python's json reads both): a heartbeat never sent is an
        # agent the server declares dead.
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise ServerError(f"register: report_interval {interval!r} is not a positive number")
        return Registration(agent["id"], float(interval))

    async def heartbeat(self, agent_id: str) -> None:
        await self._call("PUT", f"/hanet/v1/agents/{agent_id}/heartbeat")

    async def state(
        self, agent_id: str, agent_type: str, since: int | None, wait: float = MAX_WAIT
    ) -> StateAnswer:
        path = f"/hanet/v1/agents/{agent_id}/state"
        if since is not None:
            path += f"?since={since}&wait={int(wait)}"
        answer = await self._call("GET", path, timeout=wait + self.timeout)
        return _check_state(answer, STATE_KEYS[agent_type])

    async def ha_states(self, agent_id: str, states: dict[str, str]) -> None:
        await self._call("POST", f"/hanet/v1/agents/{agent_id}/ha_states", {"routers": states})

    async def router_errors(self, agent_id: str, errors: dict[str, str | None]) -> None:
        await self._call("POST", f"/hanet/v1/agents/{agent_id}/router_errors", {"routers": errors})
