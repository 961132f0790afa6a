"""``hanet-server``: the control plane's process."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from aiohttp import web

from hanet.server.api.app import make_app, server_options
from hanet.server.config import ServerConfigError, load_config
from hanet.server.database import make_engine, upgrade
from hanet.server.testing import store_for


@click.command()
@click.option("--bind", help="HOST:PORT to serve on (default 127.0.0.1:9696)")
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
    bind: str | None, db: str | None, config_path: Path | None, auth: str | None, log_level: str
) -> None:
    """Serve the Neutron v2.0 API subset of hanet (networks, subnets, ports)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = load_config(config_path, bind=bind, db=db, auth=auth)
    except ServerConfigError as exc:
        sys.exit(f"hanet-server: {exc}")
    if config.auth == "noauth" and (config.tokens or config.agent_tokens):
        # Not refused: a lab or a debugging session may run an existing file with noauth.
        logging.getLogger(__name__).warning(
            "auth is noauth: every request is admin; tokens and agent_tokens are ignored"
        )
    engine = make_engine(config.db)
    upgrade(engine)
    host, port = config.host_port
    app = make_app(store_for(engine, config), config)
    logging.getLogger(__name__).info(
        "hanet-server on %s, database %s",
        config.bind,
        engine.url.render_as_string(hide_password=True),
    )
    web.run_app(app, host=host, port=port, print=None, **server_options(config))


if __name__ == "__main__":
    main()
