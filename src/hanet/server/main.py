"""``hanet-server``: the control plane's process."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from pathlib import Path

import click
from aiohttp import web

from hanet.server.api.app import make_app, server_options
from hanet.server.config import ServerConfig, ServerConfigError, load_config
from hanet.server.database import make_engine, upgrade
from hanet.server.listeners import ListenerError, describe, inherited_sockets, systemd_fds
from hanet.server.testing import store_for


@click.command()
@click.option(
    "--bind",
    "binds",
    multiple=True,
    help="HOST:PORT to serve on (default 127.0.0.1:9696); may be given again",
)
@click.option(
    "--listen-fd",
    "listen_fds",
    multiple=True,
    type=int,
    help="Serve an inherited listening socket (as systemd's LISTEN_FDS); again",
)
@click.option("--db", help="database URL (default: sqlite:///hanet.db in this directory)")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML settings file",
)
@click.option("--auth", type=click.Choice(["noauth", "token"]), help="default noauth")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning"]))
def main(
    binds: tuple[str, ...],
    listen_fds: tuple[int, ...],
    db: str | None,
    config_path: Path | None,
    auth: str | None,
    log_level: str,
) -> None:
    """Serve the Neutron v2.0 API subset of hanet (networks, subnets, ports)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load_config(config_path, bind=list(binds) or None, db=db, auth=auth)
        fds = [(fd, f"--listen-fd {fd}") for fd in listen_fds]
        fds += [(fd, f"LISTEN_FDS (fd {fd})") for fd in systemd_fds()]
        sockets = inherited_sockets(fds)
    except (ServerConfigError, ListenerError) as exc:
        sys.exit(f"hanet-server: {exc}")
    if config.auth == "noauth" and (config.tokens or config.agent_tokens):
        # Not refused: a lab or a debugging session may run an existing file with noauth.
        logging.getLogger(__name__).warning(
            "auth is noauth: every request is admin; tokens and agent_tokens are ignored"
        )
    engine = make_engine(config.db)
    upgrade(engine)
    app = make_app(store_for(engine, config), config)
    # Inherited sockets replace the default address, not addresses asked for (options or
    # the file's bind).
    addresses = config.addresses or ([] if sockets else [config.host_port])
    log = logging.getLogger(__name__)
    log.info("hanet-server, database %s", engine.url.render_as_string(hide_password=True))
    asyncio.run(_serve(app, config, addresses, sockets))


async def _serve(
    app: web.Application,
    config: ServerConfig,
    addresses: list[tuple[str, int]],
    sockets: list[socket.socket],
) -> None:
    """Serve every address and inherited socket until SIGTERM or SIGINT."""
    import signal

    runner = web.AppRunner(app, handle_signals=False, **server_options(config))
    await runner.setup()
    log = logging.getLogger(__name__)
    for host, port in addresses:
        await web.TCPSite(runner, host, port).start()
        log.info("listening on %s:%s", host, port)
    for sock in sockets:
        await web.SockSite(runner, sock).start()
        log.info("listening on %s (inherited)", describe(sock))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
