"""``hanet lab up|down FILE``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from hanet.lab.lab import Lab
from hanet.lab.topology import LabFileError, load_topology


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
