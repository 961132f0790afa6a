"""``hanet lab up|down FILE``, and the lab cloud: ``hanet lab cloud up|down|status``,
``hanet lab vm create|delete``, ``hanet lab exec``, ``hanet lab crash|recover``
(hanet.lab.cloud; docs/lab.md)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.status import Status
from rich.table import Table

from hanet.lab.lab import Lab
from hanet.lab.topology import LabFileError, load_topology

if TYPE_CHECKING:
    from hanet.lab.cloud import Cloud


def _load(file: Path, prefix: str | None) -> Lab:
    try:
        topology = load_topology(file)
    except LabFileError as exc:
        raise click.ClickException(str(exc)) from None
    return Lab(topology, prefix or topology.prefix or file.stem.replace("-", "")[:12] or "lab")


@click.group()
def lab() -> None:
    """Simulated hosts in network namespaces."""


@lab.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--prefix", help="Namespace prefix (default: the file's 'prefix' or its name).")
def up(file: Path, prefix: str | None) -> None:
    """Build the lab described by FILE (removing a stale one first)."""
    built = _load(file, prefix).up()
    table = Table("host", "namespace", "interface", "segment", "addresses")
    for port in built.ports:
        link = built.topology.hosts[port.host].interfaces[port.ifname]
        table.add_row(port.host, built.ns(port.host), port.ifname, port.segment,
                      " ".join(str(a) for a in link.addresses))  # fmt: skip
    Console().print(table)


@lab.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--prefix")
def down(file: Path, prefix: str | None) -> None:
    """Remove everything the lab of FILE made, and kill its processes."""
    _load(file, prefix).down()


# The lab cloud (hanet.lab.cloud) --------------------------------------------------------------

PREFIX_HELP = "The cloud's name: its namespaces are PREFIX-*."


def _err() -> Console:
    return Console(stderr=True)


@contextlib.contextmanager
def _cloud_errors() -> Iterator[None]:
    from hanet.lab.cloud_state import CloudError

    try:
        yield
    except CloudError as exc:
        raise click.ClickException(str(exc)) from None
    except PermissionError as exc:
        raise click.ClickException(f"{exc} (the lab cloud needs root)") from None


def _load_cloud(prefix: str) -> Cloud:
    from hanet.lab.cloud import Cloud
    from hanet.lab.cloud_state import StateError

    try:
        return Cloud.load(prefix)
    except StateError as exc:
        raise click.ClickException(f"cloud {prefix}: {exc}") from None


class _Steps:
    """Progress of a long task on stderr: a spinner on the step under way, a tick and its
    duration once done."""

    def __init__(self, console: Console, status: Status) -> None:
        self.console, self.status = console, status
        self.step: str | None = None
        self.started = 0.0

    def __call__(self, step: str) -> None:
        self.done()
        self.step, self.started = step, time.monotonic()
        self.status.update(f"{step} ...")

    def done(self) -> None:
        if self.step is not None:
            took = time.monotonic() - self.started
            self.console.print(f"[green]✓[/green] {self.step} [dim]({took:.1f} s)[/dim]")
            self.step = None


@lab.group()
def cloud() -> None:
    """A whole cloud on this machine: hanet-server, network and compute nodes, VMs."""


@cloud.command("up")
@click.option("--prefix", default="cloud", show_default=True, help=PREFIX_HELP)
@click.option("--network-nodes", default=3, show_default=True, help="net1..netN (1-9).")
@click.option("--compute-nodes", default=2, show_default=True, help="cmp1..cmpM (0-99).")
@click.option("--port", default=0, help="The API's port on 127.0.0.1 (default: a free one).")
def cloud_up(prefix: str, network_nodes: int, compute_nodes: int, port: int) -> None:
    """Build the cloud and wait until every agent is alive; prints 'endpoint: URL'.

    It keeps running after this command returns; 'hanet lab cloud down' removes it.
    """
    from hanet.lab.cloud import Cloud
    from hanet.lab.lab import clean_up_on_sigterm

    clean_up_on_sigterm()  # a terminated up removes what it made, as Ctrl-C does
    console = _err()
    with _cloud_errors():
        built = Cloud(prefix, network_nodes, compute_nodes, port=port)
        with console.status(f"cloud {prefix}") as status:
            steps = _Steps(console, status)
            built.up(steps)
            steps.done()
    click.echo(f"endpoint: {built.endpoint}")
    console.print(
        f"[dim]openstack --os-auth-type none --os-endpoint {built.endpoint} network list\n"
        f"hanet lab exec NODE --prefix {prefix} -- CMD   "
        f"(nodes: {', '.join(built.nodes)})[/dim]",
        soft_wrap=True,
    )


@cloud.command("down")
@click.option("--prefix", default="cloud", show_default=True, help=PREFIX_HELP)
def cloud_down(prefix: str) -> None:
    """Remove the cloud: its processes, namespaces and run directory. Also after a crashed
    or half-built 'up'; a second run finds nothing."""
    from hanet.lab.cloud_nodes import destroy

    with _cloud_errors():
        report = destroy(prefix)
    console = _err()
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if not (report.killed or report.namespaces or report.run_dir_removed):
        click.echo(f"nothing left of cloud {prefix}")
        return
    click.echo(
        f"cloud {prefix}: killed {len(report.killed)} processes, removed "
        f"{len(report.namespaces)} namespaces"
        + (", and its run directory" if report.run_dir_removed else "")
    )


@cloud.command("status")
@click.option("--prefix", default="cloud", show_default=True, help=PREFIX_HELP)
def cloud_status(prefix: str) -> None:
    """The cloud's nodes, daemons and VMs."""
    found = _load_cloud(prefix)
    click.echo(f"endpoint: {found.state.endpoint}")
    table = Table("node", "namespace", "addresses", "daemons")
    for name in found.nodes:
        node = found.state.nodes.get(name)
        if node is None:  # an up that did not get this far
            continue
        daemons = [
            f"{p.role} {p.pid}" + ("" if p.alive() else " (gone)")
            for p in found.state.processes_of(name)
        ]
        if name in found.state.crashed:
            daemons.append("CRASHED")
        addresses = " ".join(f"{i}={a}" for i, a in node.addresses.items() if a)
        table.add_row(name, node.namespace, addresses, ", ".join(daemons))
    for vm in found.state.vms.values():
        table.add_row(vm.name, vm.namespace, f"eth0={vm.address}", f"VM on {vm.host}")
    Console().print(table)


@lab.group()
def vm() -> None:
    """VMs of the lab cloud."""


@vm.command("create")
@click.argument("name")
@click.option("--network", required=True, help="Network name or id.")
@click.option("--host", required=True, help="Compute node: cmp1, cmp2, ...")
@click.option("--prefix", default="cloud", show_default=True, help=PREFIX_HELP)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds for the agent.")
def vm_create(name: str, network: str, host: str, prefix: str, timeout: float) -> None:
    """Make a port and a VM on it, as Nova would; prints the VM's address."""
    with _cloud_errors():
        made = _load_cloud(prefix).vm_create(name, network, host, timeout)
    click.echo(made.address.split("/")[0])


@vm.command("delete")
@click.argument("name")
@click.option("--prefix", default="cloud", show_default=True, help=PREFIX_HELP)
def vm_delete(name: str, prefix: str) -> None:
    """Remove a VM: its namespace, tap and port."""
    with _cloud_errors():
        _load_cloud(prefix).vm_delete(name)


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("--prefix", default="cloud", show_default=True, help=PREFIX_HELP)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_command(name: str, prefix: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a VM, a node (ctl, netK, cmpK) or upstream: NAME -- COMMAND...

    Its output and exit status are passed through.
    """
    with _cloud_errors():
        result = _load_cloud(prefix).exec(name, command, capture=False)
    sys.exit(result.returncode)


@lab.command()
@click.argument("name")
@click.option("--prefix", default="cloud", show_default=True, help=PREFIX_HELP)
def crash(name: str, prefix: str) -> None:
    """Power loss of node NAME: links cut, every process of it (router namespaces too)
    killed -9. 'hanet lab recover NAME' powers it on again."""
    with _cloud_errors():
        report = _load_cloud(prefix).crash(name)
    for line in report.lines():
        click.echo(line)


@lab.command()
@click.argument("name")
@click.option("--prefix", default="cloud", show_default=True, help=PREFIX_HELP)
def recover(name: str, prefix: str) -> None:
    """Power node NAME on again after a crash: links up, its daemons started."""
    with _cloud_errors():
        _load_cloud(prefix).recover(name)
    click.echo(f"{name} is back")
