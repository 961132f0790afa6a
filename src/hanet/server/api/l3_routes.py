"""Routes beyond plain CRUD: router interfaces, agent scheduling, and the agents' own
protocol (register, heartbeat) under /hanet/v1 (see docs/server.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from hanet.server.api import attributes
from hanet.server.api.app import CONFIG, STORE, context_of, identifier, in_thread, read_body
from hanet.server.api.errors import BadRequest
from hanet.server.api.validate import free_dict, mapping, optional, string, uuid_string

log = logging.getLogger(__name__)

REGISTRATION = mapping(
    {"host": string(255), "agent_type": string(64),
     "availability_zone": optional(string(255)), "configurations": free_dict},
    required=("host", "agent_type"),
)  # fmt: skip
AGENT_TYPES = ("L3 agent", "DHCP agent")


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


async def router_l3_agents(request: web.Request) -> web.Response:
    ctx = context_of(request)
    router_id = identifier(request, "router")
    agents = await in_thread(request.app[STORE].router_agents, ctx, router_id)
    return web.json_response({"agents": agents})


async def agent_l3_routers(request: web.Request) -> web.Response:
    ctx = context_of(request)
    agent_id = identifier(request, "agent")
    routers = await in_thread(request.app[STORE].agent_routers, ctx, agent_id)
    return web.json_response({"routers": routers})


async def bind_router(request: web.Request) -> web.Response:
    ctx = context_of(request)
    agent_id = identifier(request, "agent")
    body = await read_body(request)
    if not isinstance(body, dict) or set(body) != {"router_id"}:
        raise BadRequest("Expected {'router_id': ...}")
    router_id = uuid_string("router_id", body["router_id"])
    await in_thread(request.app[STORE].bind_router, ctx, agent_id, router_id)
    return web.json_response(None, status=201)


async def unbind_router(request: web.Request) -> web.Response:
    ctx = context_of(request)
    agent_id = identifier(request, "agent")
    router_id = uuid_string("router_id", request.match_info["router_id"])
    await in_thread(request.app[STORE].unbind_router, ctx, agent_id, router_id)
    return web.Response(status=204)


async def register_agent(request: web.Request) -> web.Response:
    ctx = context_of(request)
    if not ctx.is_admin:
        raise attributes.NotAuthorized("agents register with an admin token")
    body = await read_body(request)
    if not isinstance(body, dict) or set(body) != {"agent"}:
        raise BadRequest("Expected {'agent': {...}}")
    fields = REGISTRATION("agent", body["agent"])
    if fields["agent_type"] not in AGENT_TYPES:
        raise BadRequest(f"Invalid input for agent_type. Reason: not in {list(AGENT_TYPES)}.")
    agent = await in_thread(request.app[STORE].register_agent, fields["host"],
                            fields["agent_type"], fields.get("availability_zone"),
                            fields.get("configurations", {}))  # fmt: skip
    config = request.app[CONFIG]
    return web.json_response({"agent": agent, "report_interval": config.report_interval},
                             status=201)  # fmt: skip


async def heartbeat(request: web.Request) -> web.Response:
    ctx = context_of(request)
    if not ctx.is_admin:
        raise attributes.NotAuthorized("agents report with an admin token")
    agent_id = identifier(request, "agent")
    return web.json_response({"agent": await in_thread(request.app[STORE].heartbeat, agent_id)})


async def watch_agents(app: web.Application) -> AsyncIterator[None]:
    """Every report_interval: routers on agents that stopped reporting get new places."""
    config, store = app[CONFIG], app[STORE]

    async def loop() -> None:
        while True:
            await asyncio.sleep(config.report_interval)
            try:
                dead = await in_thread(store.reschedule_dead)
            except Exception:  # the database may be restarting: try again next round
                log.exception("rescheduling failed")
                continue
            if dead:
                log.warning("agents %s are dead: their routers were rescheduled", dead)

    task = asyncio.get_running_loop().create_task(loop())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def l3_routes() -> list[web.RouteDef]:
    return [
        web.put("/v2.0/routers/{id}/add_router_interface", add_interface),
        web.put("/v2.0/routers/{id}/remove_router_interface", remove_interface),
        web.get("/v2.0/routers/{id}/l3-agents", router_l3_agents),
        web.get("/v2.0/agents/{id}/l3-routers", agent_l3_routers),
        web.post("/v2.0/agents/{id}/l3-routers", bind_router),
        web.delete("/v2.0/agents/{id}/l3-routers/{router_id}", unbind_router),
        web.post("/hanet/v1/agents", register_agent),
        web.put("/hanet/v1/agents/{id}/heartbeat", heartbeat),
    ]
