"""The aiohttp application: routes, auth, Neutron's error body, list queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.exc import OperationalError

from hanet.server.agent_sync import Store
from hanet.server.api import attributes, body, listing
from hanet.server.api.auth import CREDENTIALS, AgentCaller, Credentials
from hanet.server.api.errors import (
    BadRequest,
    NeutronError,
    NotAuthorized,
    NotFound,
    ServiceUnavailable,
)
from hanet.server.api.validate import short, uuid_string
from hanet.server.config import ServerConfig
from hanet.server.store import Context

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE: web.AppKey[Store] = web.AppKey("store", Store)
CONFIG: web.AppKey[ServerConfig] = web.AppKey("config", ServerConfig)
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Resource:
    singular: str
    spec: dict[str, attributes.Attr]
    creatable: bool = True  # agents come by registering, not by POST


RESOURCES = {
    "networks": Resource("network", attributes.NETWORK),
    "subnets": Resource("subnet", attributes.SUBNET),
    "ports": Resource("port", attributes.PORT),
    "routers": Resource("router", attributes.ROUTER),
    "floatingips": Resource("floatingip", attributes.FLOATINGIP),
    "agents": Resource("agent", attributes.AGENT, creatable=False),
}

EXTENSIONS = [
    ("external-net", "Neutron external network", "Adds external network attribute"),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical"),
    ("binding", "Port Binding", "Expose port bindings of a virtual port"),
    (
        "standard-attr-description",
        "standard-attr-description",
        "Extension to add descriptions to standard attributes",
    ),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at"),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    (
        "project-id",
        "project_id field enabled",
        "Extension that indicates that project_id field is enabled.",
    ),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    (
        "router",
        "Neutron L3 Router",
        "Router abstraction for basic L3 forwarding between L2 "
        "Neutron networks and access to external networks via a NAT gateway.",
    ),
    ("l3-ha", "HA Router extension", "Adds HA capability to routers."),
    (
        "ext-gw-mode",
        "Neutron L3 Configurable external gateway mode",
        "Extension of the "
        "router abstraction for specifying whether SNAT should occur on the external gateway",
    ),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("agent", "agent", "The agent management extension."),
    ("l3_agent_scheduler", "L3 Agent Scheduler", "Schedule routers among l3 agents"),
    ("dhcp_agent_scheduler", "DHCP Agent Scheduler", "Schedule networks among dhcp agents"),
    ("allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs"),
]


def error_response(error: NeutronError) -> web.Response:
    return web.json_response(error.body(), status=error.status)


class ClientGone(Exception):
    """The client hung up before its request was read whole."""


class BodyStalled(Exception):
    """The client did not send its whole body within client_timeout."""


@web.middleware
async def neutron_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NeutronError as error:
        return error_response(error)
    except web.HTTPRequestEntityTooLarge:
        too_large = NeutronError(
            f"Request is too large: larger than {MAX_BODY} bytes", "HTTPRequestEntityTooLarge"
        )
        too_large.status = 413
        return error_response(too_large)
    except ClientGone:
        # Nobody is left to answer: a note, not a failure. 499 only reaches the access log.
        log.info("%s %s: the client disconnected mid-request", request.method, request.path)
        return web.Response(status=499)
    except BodyStalled:
        stalled = NeutronError("Request body not received in time", "HTTPRequestTimeout")
        stalled.status = 408
        answer = error_response(stalled)
        # Answered and then cut off: aiohttp would otherwise wait lingering_time more for
        # the rest of a body that is not coming.
        await answer.prepare(request)
        await answer.write_eof()
        if request.transport is not None:
            request.transport.close()
        return answer
    except web.HTTPNotFound:
        return error_response(
            NotFound(f"The resource could not be found: {short(request.path)}", "HTTPNotFound")
        )
    except web.HTTPMethodNotAllowed:
        refused = NeutronError(
            f"Method {request.method} is not allowed for {short(request.path)}",
            "HTTPMethodNotAllowed",
        )
        refused.status = 405
        return error_response(refused)
    except web.HTTPException:
        raise
    except Exception:  # a bug: logged whole, answered without internals
        log.exception("%s %s failed", request.method, request.path)
        message = "Request Failed: internal server error while processing your request."
        return error_response(NeutronError(message, "HTTPInternalServerError"))


def context_of(request: web.Request) -> Context:
    """Who asks, for the Neutron API: an agent's credential gets no rights there."""
    caller = caller_of(request)
    if isinstance(caller, AgentCaller):
        raise NotAuthorized(
            f"The credential of the agents of host {caller.host} is only for the agents' "
            "own calls under /hanet/v1"
        )
    return caller


def caller_of(request: web.Request) -> Context | AgentCaller:
    """Who asks: a project (admin or not), or the agents of one host. 401 for no token or
    a token nobody has; in noauth mode every request is admin."""
    config = request.app[CONFIG]
    if config.auth == "noauth":
        project = request.headers.get("X-Project-Id", config.noauth_project)
        body.check_text("X-Project-Id", project)  # aiohttp keeps bytes not UTF-8 as surrogates
        return Context(project, is_admin=True)
    entry = request.app[CREDENTIALS].who(request.headers.get("X-Auth-Token"))
    if entry is None:
        error = NeutronError("Authentication required", "HTTPUnauthorized")
        error.status = 401
        raise error
    if isinstance(entry, AgentCaller):
        return entry
    return Context(entry.project, is_admin=entry.role == "admin")


async def read_body(request: web.Request) -> Any:
    """The request's JSON body (see hanet.server.api.body), read within client_timeout."""
    try:
        async with asyncio.timeout(request.app[CONFIG].client_timeout):
            raw = await request.read()
    except TimeoutError:
        log.info("%s %s: the client stalled sending its body", request.method, request.path)
        raise BodyStalled from None
    except ConnectionError:
        raise ClientGone from None
    return body.decode(raw)


TRANSIENT_TRIES = 8


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run one store operation (one transaction) in a worker thread. A transaction that the
    database aborted (deadlock, serialization, a restart, SQLite busy) left nothing behind,
    so it is run again, with growing pauses, before the client is told to retry."""
    for attempt in range(TRANSIENT_TRIES):
        try:
            return await asyncio.to_thread(function, *args)
        except OperationalError as exc:
            log.warning(
                "%s: transient database error, try %d: %s",
                function.__name__,
                attempt + 1,
                str(exc.orig).splitlines()[0] if exc.orig else exc,
            )
            await asyncio.sleep(min(0.02 * 2**attempt, 1.0))
    raise ServiceUnavailable("The database is unavailable; the request was not applied. Try again.")


def collection_routes(collection: str, resource: Resource) -> list[web.RouteDef]:
    name = resource.singular

    async def listing_(request: web.Request) -> web.Response:
        ctx = context_of(request)
        rows = await in_thread(getattr(request.app[STORE], f"list_{collection}"), ctx)
        rows = [attributes.shown(resource.spec, r, ctx.is_admin) for r in rows]
        query = {k: request.query.getall(k) for k in request.query}
        return web.json_response(
            listing.apply(rows, query, str(request.url.with_query(None)), collection)
        )

    async def create(request: web.Request) -> web.Response:
        ctx = context_of(request)
        values = attributes.parse(
            name, resource.spec, await read_body(request), creating=True, is_admin=ctx.is_admin
        )
        row = await in_thread(getattr(request.app[STORE], f"create_{name}"), ctx, values)
        row = attributes.shown(resource.spec, row, ctx.is_admin)
        return web.json_response({name: row}, status=201)

    async def show(request: web.Request) -> web.Response:
        ctx = context_of(request)
        row_id = identifier(request, name)
        row = await in_thread(getattr(request.app[STORE], f"get_{name}"), ctx, row_id)
        row = attributes.shown(resource.spec, row, ctx.is_admin)
        fields = [f for f in request.query.getall("fields", []) if f]
        if fields:
            row = {k: v for k, v in row.items() if k in fields}
        return web.json_response({name: row})

    async def update(request: web.Request) -> web.Response:
        ctx = context_of(request)
        row_id = identifier(request, name)
        values = attributes.parse(
            name, resource.spec, await read_body(request), creating=False, is_admin=ctx.is_admin
        )
        row = await in_thread(getattr(request.app[STORE], f"update_{name}"), ctx, row_id, values)
        return web.json_response({name: attributes.shown(resource.spec, row, ctx.is_admin)})

    async def delete(request: web.Request) -> web.Response:
        ctx = context_of(request)
        row_id = identifier(request, name)
        await in_thread(getattr(request.app[STORE], f"delete_{name}"), ctx, row_id)
        return web.Response(status=204)

    base = f"/v2.0/{collection}"
    return [
        web.get(base, listing_),
        *([web.post(base, create)] if resource.creatable else []),
        web.get(base + "/{id}", show),
        web.put(base + "/{id}", update),
        web.delete(base + "/{id}", delete),
    ]


def identifier(request: web.Request, name: str) -> str:
    raw = request.match_info["id"]
    try:
        return str(uuid_string("id", raw))
    except BadRequest:
        from hanet.server.api.errors import not_found

        raise not_found(name, short(raw)) from None


async def versions(request: web.Request) -> web.Response:
    url = str(request.url.with_path("/v2.0/").with_query(None))
    return web.json_response(
        {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [{"href": url, "rel": "self"}]}]}
    )


async def resources_index(request: web.Request) -> web.Response:
    base = str(request.url.with_path("/v2.0").with_query(None))
    return web.json_response(
        {
            "resources": [
                {
                    "name": r.singular,
                    "collection": c,
                    "links": [{"href": f"{base}/{c}", "rel": "self"}],
                }
                for c, r in RESOURCES.items()
            ]
        }
    )


async def extensions(request: web.Request) -> web.Response:
    context_of(request)
    return web.json_response(
        {
            "extensions": [
                {
                    "alias": alias,
                    "name": name,
                    "description": text,
                    "links": [],
                    "updated": "2026-11-22T00:00:00-00:00",
                }
                for alias, name, text in EXTENSIONS
            ]
        }
    )


async def openapi(request: web.Request) -> web.Response:
    from hanet.server.api.openapi import describe

    return web.json_response(describe(RESOURCES))


def server_options(config: ServerConfig) -> dict[str, Any]:
    """aiohttp's connection settings, for web.run_app and web.AppRunner alike. aiohttp closes
    a connection that has not sent a request's whole headers keepalive_timeout after it
    opened or was last answered: that bounds idle connections and stalled headers both."""
    return {"keepalive_timeout": config.client_timeout}


def make_app(store: Store, config: ServerConfig) -> web.Application:
    app = web.Application(middlewares=[neutron_errors], client_max_size=MAX_BODY)
    app[STORE], app[CONFIG] = store, config
    app[CREDENTIALS] = Credentials.of(config)
    routes = [
        web.get("/", versions),
        web.get("/v2.0", resources_index),
        web.get("/v2.0/", resources_index),
        web.get("/v2.0/extensions", extensions),
        web.get("/openapi.json", openapi),
    ]
    from hanet.server.api.l3_routes import LONG_POLLS, LongPolls, l3_routes, watch_agents

    app[LONG_POLLS] = LongPolls()
    routes += l3_routes()  # before the generic ones: their paths are more specific
    for collection, resource in RESOURCES.items():
        routes += collection_routes(collection, resource)
    app.add_routes(routes)
    app.cleanup_ctx.append(watch_agents)
    return app
