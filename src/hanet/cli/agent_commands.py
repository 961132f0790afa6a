"""``hanet agent cleanup``: what ``hanet-agent cleanup`` will run once the agent exists."""

from __future__ import annotations

import asyncio
import sys

import click


@click.command("cleanup")
@click.option("--host", help="This node's name, for router namespaces qrouter-<id>@<host> "
              "(nodes sharing a machine); without it: qrouter-<id>.")  # fmt: skip
@click.option("--namespace", "node_namespace",
              help="Namespace of the node's own devices (default: this one).")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print what would be removed; change nothing.")
def cleanup_command(host: str | None, node_namespace: str | None, dry_run: bool) -> None:
    """Remove the router namespaces, their processes and NAT tables, and the brq/vxlan/tap
    devices the agent made on this node (as neutron-netns-cleanup)."""
    # Imported here: pyroute2 and nft are for this command only; the rest of hanet stays light.
    from hanet.agent.cleanup import CleanupError, cleanup
    from hanet.linux.l2 import L2Error

    try:
        steps, outcomes = asyncio.run(cleanup(node_namespace, host, dry_run))
    except (CleanupError, L2Error) as exc:
        raise click.ClickException(str(exc)) from None
    if not steps:
        click.echo("nothing to clean up")
        return
    if dry_run:
        for step in steps:
            click.echo(f"would {step.describe()}")
        return
    for outcome in outcomes:
        if outcome.error is None:
            click.echo(f"done: {outcome.step.describe()}")
        else:
            click.echo(f"failed: {outcome.step.describe()}: {outcome.error}", err=True)
    if any(o.error is not None for o in outcomes):
        sys.exit(1)
