"""The ``hanet`` client of hanet-server: routers, agents and their events.

It talks to the Neutron API (and hanet's own /hanet/v1 for events) with the same
environment the openstack client uses: HANET_URL or OS_ENDPOINT, and OS_TOKEN."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from hanet.server.client import ApiClient

DEFAULT_URL = "http://127.0.0.1:9696"


class Connection:
    def __init__(self, url: str | None, token: str | None, output: str) -> None:
        url = url or os.environ.get("HANET_URL") or os.environ.get("OS_ENDPOINT") or DEFAULT_URL
        self.api = ApiClient(url.rstrip("/"), token or os.environ.get("OS_TOKEN"))
        self.output = output

    def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            reply = self.api.request(method, path, body)
        except OSError as exc:
            sys.exit(f"hanet: cannot reach hanet-server at {self.api.url}: {exc}")
        if reply.status >= 400:
            error = (reply.body or {}).get("NeutronError", {})
            sys.exit(f"hanet: {error.get('type', reply.status)}: {error.get('message', '')}")
        return reply.body

    def show(self, rows: list[dict[str, Any]], columns: list[str], title: str = "") -> None:
        if self.output == "json":
            click.echo(json.dumps(rows, indent=2))
            return
        table = Table(title=title or None)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


pass_connection = click.make_pass_decorator(Connection)


def connection_options(function: Any) -> Any:
    function = click.option("--url", help="hanet-server URL (HANET_URL, OS_ENDPOINT)")(function)
    function = click.option("--token", help="token (OS_TOKEN); none in noauth mode")(function)
    return click.option(
        "-f",
        "--format",
        "output",
        type=click.Choice(["table", "json"]),
        default="table",
        help="Rich table or JSON",
    )(function)


@click.group()
@connection_options
@click.pass_context
def router(ctx: click.Context, url: str | None, token: str | None, output: str) -> None:
    """Routers on hanet-server."""
    ctx.obj = Connection(url, token, output)


@router.command("create")
@click.argument("name")
@click.option("--ha/--no-ha", default=None, help="HA router (default: the server's l3_ha)")
@click.option("--external-gateway", help="external network id for the gateway")
@pass_connection
def router_create(
    conn: Connection, name: str, ha: bool | None, external_gateway: str | None
) -> None:
    body: dict[str, Any] = {"name": name}
    if ha is not None:
        body["ha"] = ha
    if external_gateway:
        body["external_gateway_info"] = {"network_id": external_gateway}
    created = conn.call("POST", "/v2.0/routers", {"router": body})["router"]
    conn.show([created], ["id", "name", "ha", "status", "external_gateway_info"])


@router.command("list")
@pass_connection
def router_list(conn: Connection) -> None:
    rows = conn.call("GET", "/v2.0/routers")["routers"]
    conn.show(rows, ["id", "name", "ha", "status", "project_id"])


@router.command("show")
@click.argument("router_id")
@pass_connection
def router_show(conn: Connection, router_id: str) -> None:
    """The router, and its agents with their ha_state."""
    row = conn.call("GET", f"/v2.0/routers/{router_id}")["router"]
    agents = conn.call("GET", f"/v2.0/routers/{router_id}/l3-agents")["agents"]
    if conn.output == "json":
        click.echo(json.dumps({**row, "l3_agents": agents}, indent=2))
        return
    conn.show([row], ["id", "name", "ha", "status", "admin_state_up", "external_gateway_info"])
    conn.show(agents, ["id", "host", "alive", "ha_state"], title="L3 agents")


@router.command("events")
@click.argument("router_id")
@pass_connection
def router_events(conn: Connection, router_id: str) -> None:
    """Fail-overs and the server's interventions, with their times."""
    rows = conn.call("GET", f"/hanet/v1/routers/{router_id}/events")["events"]
    conn.show(rows, ["at", "kind", "host", "detail"])


@click.group()
@connection_options
@click.pass_context
def agent(ctx: click.Context, url: str | None, token: str | None, output: str) -> None:
    """Agents known to hanet-server."""
    ctx.obj = Connection(url, token, output)


@agent.command("list")
@pass_connection
def agent_list(conn: Connection) -> None:
    rows = conn.call("GET", "/v2.0/agents")["agents"]
    conn.show(rows, ["id", "agent_type", "host", "availability_zone", "alive", "admin_state_up"])


@click.group("l3-agent")
@connection_options
@click.pass_context
def l3_agent(ctx: click.Context, url: str | None, token: str | None, output: str) -> None:
    """L3 agents and the routers they host."""
    ctx.obj = Connection(url, token, output)


@l3_agent.command("list-hosting-router")
@click.argument("router_id")
@pass_connection
def list_hosting_router(conn: Connection, router_id: str) -> None:
    rows = conn.call("GET", f"/v2.0/routers/{router_id}/l3-agents")["agents"]
    conn.show(rows, ["id", "host", "admin_state_up", "alive", "ha_state"])
