"""``hanet``: the command line (Click)."""

from __future__ import annotations

import importlib
import ipaddress
import logging
import sys
from pathlib import Path

import click

from hanet.cli.vrrpd_commands import status, vrrpd
from hanet.runtime.config import ConfigError, InstanceConfig, VirtualAddress, load_instances


class LazyGroup(click.Group):
    """Subcommands whose modules are imported only when they run (or help lists them):
    ``hanet vrrpd`` then never imports the lab, the API client or pyroute2, which the
    daemon does not use and which cost it about 25 MB of memory."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy  # command name -> "module:attribute"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if cmd_name == "agent":  # the node's clean-up lives beside the API's commands
                from hanet.cli.agent_commands import cleanup_command

                command.add_command(cleanup_command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


LAZY = {
    "lab": "hanet.cli.lab_commands:lab",
    "router": "hanet.cli.client:router",
    "agent": "hanet.cli.client:agent",
    "l3-agent": "hanet.cli.client:l3_agent",
}


@click.group(cls=LazyGroup, lazy=LAZY)
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))  # fmt: skip
def main(log_level: str) -> None:
    """hanet: high-availability networking (VRRP, HA routers, service VIPs)."""
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )  # fmt: skip


main.add_command(vrrpd)


@main.group()
def vrrp() -> None:
    """The VRRP engine."""


vrrp.add_command(status)


@vrrp.command("run")
@click.option("--config", "config_file", type=click.Path(path_type=Path),
              help="YAML file with 'instances: {NAME: {...}}'.")  # fmt: skip
@click.option("--name", default="vr")
@click.option("--interface", "-i")
@click.option("--vrid", type=int)
@click.option("--priority", type=int, default=100, show_default=True)
@click.option("--vip", "vips", multiple=True, help="Virtual address with prefix, repeatable.")
@click.option("--version", "vrrp_version", type=click.Choice(["2", "3"]), default="3")
@click.option("--advert-int", type=float, default=1.0, show_default=True, help="Seconds.")
@click.option("--nopreempt", is_flag=True)
@click.option("--preempt-delay", type=float, default=0.0)
@click.option("--auth-pass", help="VRRPv2 simple password (up to 8 bytes).")
@click.option("--no-accept", is_flag=True, help="Accept_Mode off: drop traffic to the VIPs.")
@click.option("--garp-repeat", type=int, default=5, show_default=True)
@click.option("--garp-refresh-delay", type=float, default=5.0, show_default=True)
@click.option("--status-file", type=click.Path(path_type=Path))
def vrrp_run(config_file: Path | None, name: str, interface: str | None, vrid: int | None,
             priority: int, vips: tuple[str, ...], vrrp_version: str, advert_int: float,
             nopreempt: bool, preempt_delay: float, auth_pass: str | None, no_accept: bool,
             garp_repeat: int, garp_refresh_delay: float,
             status_file: Path | None) -> None:  # fmt: skip
    """Run VRRP instances in the foreground (SIGTERM: priority 0, then exit)."""
    from hanet.runtime.daemon import run

    try:
        if config_file is not None:
            configs = load_instances(config_file)
        else:
            if interface is None or vrid is None or not vips:
                raise click.UsageError("give --config, or --interface, --vrid and --vip")
            try:
                addresses = tuple(VirtualAddress(ipaddress.ip_interface(v)) for v in vips)
            except ValueError as exc:
                raise ConfigError(f"--vip: {exc}") from None
            configs = [
                InstanceConfig(
                    name=name, interface=interface, vrid=vrid, priority=priority,
                    vips=addresses, version=int(vrrp_version), advert_int=advert_int,
                    preempt=not nopreempt, preempt_delay=preempt_delay, auth_pass=auth_pass,
                    accept=not no_accept, garp_repeat=garp_repeat,
                    garp_refresh_delay=garp_refresh_delay,
                )
            ]  # fmt: skip
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(run(configs, status_file))


@main.command()
@click.option("--prefix", default=None, help="Namespace prefix (default: unique per run).")
@click.option(
    "--vrrp-only",
    is_flag=True,
    help="The small demo: two VRRP routers and a client on one LAN, no cloud.",
)
def demo(prefix: str | None, vrrp_only: bool) -> None:
    """A lab cloud with an HA router and two VMs; crash the active network node and show
    the fail-over (timeline, picture, outage). Everything is removed at the end."""
    if vrrp_only:
        from hanet.demo import run_demo

        sys.exit(run_demo(prefix))
    from hanet.lab.cloud_demo import run_cloud_demo

    sys.exit(run_cloud_demo(prefix))


if __name__ == "__main__":
    main()
