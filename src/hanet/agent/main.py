"""``hanet-agent``: one process per node (mode ``l3`` on network nodes, ``compute`` on
compute nodes). ``hanet-agent run --config FILE`` runs it in the foreground; SIGTERM stops
the agent and leaves the data path running (namespaces, vrrpd's instances, proxies), so a
restart adopts it without a lost packet. ``hanet-agent cleanup`` removes what it made."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import sys
from pathlib import Path

import click

from hanet.cli.agent_commands import cleanup_command

log = logging.getLogger("hanet.agent")


@click.group()
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def main(log_level: str) -> None:
    """hanet's node agent: builds HA routers (l3) or wires instance ports (compute)."""
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


main.add_command(cleanup_command)


def _raise_file_limit() -> None:
    """Each router's namespace costs netlink and proxy descriptors; systemd's default soft
    limit of 1,024 would stop the agent at a few hundred routers."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@main.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The agent's YAML file.",
)
def run(config_path: Path) -> None:
    """Register with hanet-server and follow its state for this node."""
    from hanet.agent.settings import SettingsError, load_settings

    try:
        settings = load_settings(config_path)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        token = settings.auth_token()  # read now: an unreadable token file is a clear error
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    _raise_file_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(settings, token))


async def _run(settings: object, token: str | None) -> None:
    from hanet.agent.compute import ComputeAgent
    from hanet.agent.l3 import L3Agent
    from hanet.agent.metrics import AgentMetrics
    from hanet.agent.routers import RouterBuilder
    from hanet.agent.server_api import ServerApi
    from hanet.agent.settings import AgentSettings
    from hanet.agent.vrrpd_client import VrrpdClient

    assert isinstance(settings, AgentSettings)
    settings.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    api = ServerApi(settings.server_url, token)
    metrics = AgentMetrics()
    builder = RouterBuilder(settings)
    agent: L3Agent | ComputeAgent
    if settings.mode == "l3":
        agent = L3Agent(settings, api, VrrpdClient(settings.vrrpd_socket), builder, metrics)
    else:
        agent = ComputeAgent(settings, api, builder, metrics)
    runner = await metrics.serve(settings.metrics) if settings.metrics else None
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, main_task.cancel)
    log.info(
        "hanet-agent %s of host %s, server %s", settings.mode, settings.host, settings.server_url
    )
    try:
        await agent.run()
    except asyncio.CancelledError:
        log.info("stopping; the data path keeps running")
    finally:
        await api.close()
        if runner is not None:
            await runner.cleanup()


if __name__ == "__main__":
    main()
