"""Routes beyond plain CRUD: router interfaces, agent scheduling, and the agents' own
protocol (register, heartbeat) under /hanet/v1 (see docs/server.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from hanet.server import changelog
from hanet.server.api import attributes
from hanet.server.api.app import (
    CONFIG,
    STORE,
    Handler,
    caller_of,
    context_of,
    identifier,
    in_thread,
    read_body,
)
from hanet.server.api.auth import CREDENTIALS, AgentCaller
from hanet.server.api.errors import BadRequest
from hanet.server.api.validate import free_dict, mapping, optional, string, uuid_string
from hanet.server.router_errors import parse_report

log = logging.getLogger(__name__)

REGISTRATION = mapping(
    {
        "host": string(255),
        "agent_type": string(64),
        "availability_zone": optional(string(255)),
        "configurations": free_dict,
    },
    required=("host", "agent_type"),
)
AGENT_TYPES = ("L3 agent", "DHCP agent", "Linux bridge agent")


async def add_interface(request: web.Request) -> web.Response:
    ctx = context_of(request)
    router_id = identifier(request, "router")
    info = attributes.parse_interface(await read_body(request))
    store = request.app[STORE]
    return web.json_response(await in_thread(store.add_router_interface, ctx, router_id, info))


async def remove_interface(request: web.Request) -> web.Response:
    ctx = context_of(request)
    router_id = identifier(request, "router")
    info = attributes.parse_interface(await read_body(request))
    store = request.app[STORE]
    return web.json_response(await in_thread(store.remove_router_interface, ctx, router_id, info))


def related(method: str, owner: str, key: str) -> Handler:
    """GET of what an owner hosts or is hosted by: a router's agents, an agent's routers."""

    async def handler(request: web.Request) -> web.Response:
        ctx = context_of(request)
        owner_id = identifier(request, owner)
        rows = await in_thread(getattr(request.app[STORE], method), ctx, owner_id)
        return web.json_response({key: rows})

    return handler


def bind(method: str, field: str) -> Handler:
    """POST /agents/{id}/...: place a router or a network on the agent by hand."""

    async def handler(request: web.Request) -> web.Response:
        ctx = context_of(request)
        agent_id = identifier(request, "agent")
        body = await read_body(request)
        if not isinstance(body, dict) or set(body) != {field}:
            raise BadRequest(f"Expected {{'{field}': ...}}")
        target = str(uuid_string(field, body[field]))
        await in_thread(getattr(request.app[STORE], method), ctx, agent_id, target)
        return web.json_response(None, status=201)

    return handler


def unbind(method: str, field: str) -> Handler:
    """DELETE /agents/{id}/.../{target}: take it off the agent."""

    async def handler(request: web.Request) -> web.Response:
        ctx = context_of(request)
        agent_id = identifier(request, "agent")
        target = str(uuid_string(field, request.match_info[field]))
        await in_thread(getattr(request.app[STORE], method), ctx, agent_id, target)
        return web.Response(status=204)

    return handler


def agents_host(request: web.Request) -> str | None:
    """The host whose agents the caller may speak for: None for an admin (any host).
    Projects' tokens have no part in the agents' protocol."""
    caller = caller_of(request)
    if isinstance(caller, AgentCaller):
        return caller.host
    if not caller.is_admin:
        raise attributes.NotAuthorized(
            "agents use their host's agent token or an admin token for the agents' protocol"
        )
    return None


async def own_agent(request: web.Request) -> str:
    """The agent id of the path, once the caller may speak for it: an agent's credential
    only for the agents of its own host (403 for another's)."""
    host = agents_host(request)
    agent_id = identifier(request, "agent")
    if host is not None:
        hosts = request.app[CREDENTIALS].agent_hosts
        if agent_id not in hosts:
            hosts[agent_id] = await in_thread(request.app[STORE].agent_host, agent_id)
        if hosts[agent_id] != host:
            raise attributes.NotAuthorized(
                f"The credential of host {host} is not for agent {agent_id} of another host"
            )
    return agent_id


async def register_agent(request: web.Request) -> web.Response:
    host = agents_host(request)
    body = await read_body(request)
    if not isinstance(body, dict) or set(body) != {"agent"}:
        raise BadRequest("Expected {'agent': {...}}")
    fields = REGISTRATION("agent", body["agent"])
    if host is not None and fields["host"] != host:
        raise attributes.NotAuthorized(
            f"The credential of host {host} cannot register an agent of host {fields['host']}"
        )
    if fields["agent_type"] not in AGENT_TYPES:
        raise BadRequest(f"Invalid input for agent_type. Reason: not in {list(AGENT_TYPES)}.")
    agent = await in_thread(
        request.app[STORE].register_agent,
        fields["host"],
        fields["agent_type"],
        fields.get("availability_zone"),
        fields.get("configurations", {}),
    )
    config = request.app[CONFIG]
    return web.json_response(
        {"agent": agent, "report_interval": config.report_interval}, status=201
    )


async def heartbeat(request: web.Request) -> web.Response:
    agent_id = await own_agent(request)
    return web.json_response({"agent": await in_thread(request.app[STORE].heartbeat, agent_id)})


MAX_WAIT = 30.0  # seconds a long-poll may hold
POLL = 0.1  # seconds between looks at the change log while holding


@dataclass
class LongPolls:
    """How many long-polls hold now, having found nothing newer than their ``since``: what
    a test waits for before it makes the change a poll should return with."""

    waiting: int = 0


LONG_POLLS: web.AppKey[LongPolls] = web.AppKey("long_polls", LongPolls)


async def agent_state(request: web.Request) -> web.Response:
    """GET /hanet/v1/agents/{id}/state[?since=N&wait=S]: without ``since`` all the agent's
    routers (networks for a DHCP agent, its host's instance ports for a compute agent);
    with it, those changed after change N, held up to S seconds until there is something
    newer of the agent's kind (a long-poll)."""
    agent_id = await own_agent(request)
    since = _number(request, "since", None, int)  # absent: the full state, at once
    wait = min(_number(request, "wait", 0.0, float), MAX_WAIT)
    store = request.app[STORE]
    kind = await in_thread(store.agent_kind, agent_id)
    # A compute agent waits for its own host's ports only, not for every port's change.
    host = await in_thread(store.agent_host, agent_id) if kind == changelog.PORT else None
    deadline = asyncio.get_running_loop().time() + wait
    polls, holding = request.app[LONG_POLLS], False
    try:
        while since is not None and asyncio.get_running_loop().time() < deadline:
            if await in_thread(store.latest_change, kind, host) > since:
                break
            if not holding:  # looked, found nothing newer: from now on it holds
                holding, polls.waiting = True, polls.waiting + 1
            await asyncio.sleep(POLL)
    finally:
        if holding:
            polls.waiting -= 1
    return web.json_response(await in_thread(store.agent_state, agent_id, since))


def _number(request: web.Request, name: str, default: Any, kind: type) -> Any:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise BadRequest(
            f"Invalid input for {name}. Reason: '{raw[:40]}' is not a number."
        ) from None
    if value < 0:
        raise BadRequest(f"Invalid input for {name}. Reason: must not be negative.")
    return value


async def ha_states(request: web.Request) -> web.Response:
    """POST /hanet/v1/agents/{id}/ha_states {"routers": {router_id: state}}."""
    agent_id = await own_agent(request)
    body = await read_body(request)
    if (
        not isinstance(body, dict)
        or set(body) != {"routers"}
        or not isinstance(body["routers"], dict)
    ):
        raise BadRequest("Expected {'routers': {router_id: 'active' | 'standby' | 'fault'}}")
    states = {uuid_string("routers", k): v for k, v in body["routers"].items()}
    changed = await in_thread(request.app[STORE].report_ha_states, agent_id, states)
    return web.json_response({"changed": changed})


async def router_errors(request: web.Request) -> web.Response:
    """POST /hanet/v1/agents/{id}/router_errors {"routers": {router_id: reason or null}}:
    the routers the agent could not set up, and why (null: it could now)."""
    agent_id = await own_agent(request)
    report = parse_report(await read_body(request))
    changed = await in_thread(request.app[STORE].router_errors.report, agent_id, report)
    return web.json_response({"changed": changed})


async def router_events(request: web.Request) -> web.Response:
    ctx = context_of(request)
    router_id = identifier(request, "router")
    events = await in_thread(request.app[STORE].router_events, ctx, router_id)
    return web.json_response({"events": events})


async def watch_agents(app: web.Application) -> AsyncIterator[None]:
    """Every report_interval: routers on agents that stopped reporting get replacement
    places (an HA router's dead place is kept until agent_gone_time, then released), agents
    back before that lose extra places, short routers and networks get places, split
    brains are arbitrated (hanet.server.failover, docs/server.md)."""
    config, store = app[CONFIG], app[STORE]

    async def loop() -> None:
        while True:
            await asyncio.sleep(config.report_interval)
            try:
                dead = await in_thread(store.reschedule_dead)
                trimmed = await in_thread(store.trim_places)
                await in_thread(store.fill_places)
                await in_thread(store.schedule_dhcp)
                split = await in_thread(store.resolve_split_brain)
            except Exception:  # the database may be restarting: try again next round
                log.exception("the agent watch failed")
                continue
            if dead:
                log.warning(
                    "L3 agents %s stopped reporting: HA places kept beside replacements until "
                    "gone, or released; legacy routers moved (see the routers' events)",
                    dead,
                )
            if trimmed:
                log.warning("routers %s had a place too many (an agent came back)", trimmed)
            if split:
                log.warning("split brain arbitrated on routers %s", split)

    task = asyncio.get_running_loop().create_task(loop())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def l3_routes() -> list[web.RouteDef]:
    return [
        web.put("/v2.0/routers/{id}/add_router_interface", add_interface),
        web.put("/v2.0/routers/{id}/remove_router_interface", remove_interface),
        web.get("/v2.0/routers/{id}/l3-agents", related("router_agents", "router", "agents")),
        web.get("/v2.0/agents/{id}/l3-routers", related("agent_routers", "agent", "routers")),
        web.post("/v2.0/agents/{id}/l3-routers", bind("bind_router", "router_id")),
        web.delete(
            "/v2.0/agents/{id}/l3-routers/{router_id}", unbind("unbind_router", "router_id")
        ),
        web.get(
            "/v2.0/networks/{id}/dhcp-agents", related("network_dhcp_agents", "network", "agents")
        ),
        web.get(
            "/v2.0/agents/{id}/dhcp-networks", related("agent_dhcp_networks", "agent", "networks")
        ),
        web.post("/v2.0/agents/{id}/dhcp-networks", bind("bind_network", "network_id")),
        web.delete(
            "/v2.0/agents/{id}/dhcp-networks/{network_id}", unbind("unbind_network", "network_id")
        ),
        web.post("/hanet/v1/agents", register_agent),
        web.put("/hanet/v1/agents/{id}/heartbeat", heartbeat),
        web.get("/hanet/v1/agents/{id}/state", agent_state),
        web.post("/hanet/v1/agents/{id}/ha_states", ha_states),
        web.post("/hanet/v1/agents/{id}/router_errors", router_errors),
        web.get("/hanet/v1/routers/{id}/events", router_events),
    ]
