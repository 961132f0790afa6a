"""``hanet vrrpd`` and ``hanet vrrp status``."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import click

from hanet.runtime.config import ConfigError


@click.command("vrrpd")
@click.option(
    "-f",
    "--use-file",
    "config_file",
    required=True,
    type=click.Path(path_type=Path),
    help="keepalived.conf to run.",
)
@click.option("--check", is_flag=True, help="Only check the file, like keepalived -t.")
@click.option(
    "--pid-file",
    type=click.Path(path_type=Path),
    help="Default: /run/hanet/vrrpd-<netns inode>.pid",
)
@click.option(
    "--control-socket",
    type=click.Path(path_type=Path),
    help="Default: /run/hanet/vrrpd-<netns inode>.sock",
)
@click.option("--metrics", metavar="HOST:PORT", help="Serve Prometheus metrics at /metrics.")
def vrrpd(
    config_file: Path,
    check: bool,
    pid_file: Path | None,
    control_socket: Path | None,
    metrics: str | None,
) -> None:
    """Run the VRRP part of a keepalived.conf in the foreground.

    SIGHUP reloads (unchanged instances keep their state), SIGTERM stops with priority 0.
    """
    from hanet.vrrpd.daemon import Vrrpd
    from hanet.vrrpd.paths import default_control_socket, default_pid_file
    from hanet.vrrpd.reader import load

    try:
        model, configs = load(config_file, report=not check)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if check:
        from hanet.vrrpd.scripts import refused_scripts
        from hanet.vrrpd.trackers import default_script_user

        for problem in [*model.problems, *refused_scripts(model, default_script_user())]:
            click.echo(str(problem), err=True)
        sys.exit(0)
    _raise_file_limit()
    if model.global_defs.vrrp_priority is not None:
        _set_nice(model.global_defs.vrrp_priority)
    try:
        daemon = Vrrpd(
            config_file,
            pid_file or default_pid_file(),
            control_socket or default_control_socket(),
            metrics,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        asyncio.run(daemon.run(model, configs))
    except (RuntimeError, LookupError, OSError, ConfigError) as exc:
        click.echo(f"hanet vrrpd: {exc}", err=True)
        sys.exit(1)


def _raise_file_limit() -> None:
    """Soft limit of open files up to the hard one: a router costs about 4 files (VRRP and
    netlink sockets, a packet socket on a master), and under systemd's soft limit of 1,024
    the 253rd router failed with EMFILE. The hard limit is what the administrator allows."""
    import logging
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard
    if hard == resource.RLIM_INFINITY:  # the kernel refuses an infinite soft limit here
        wanted = int(Path("/proc/sys/fs/nr_open").read_text())
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            logging.getLogger(__name__).warning("open files stay limited to %d: %s", soft, exc)


def _set_nice(nice: int) -> None:
    """global_defs' vrrp_priority, as keepalived applies it: the daemon's nice value. On a
    node where building routers keeps the cores busy (an agent, the lab cloud's nodes on one
    machine), adverts sent or read late make backups take over; a better nice value keeps
    the daemon's few milliseconds per interval on time. Only at start, as keepalived.

    With the kernel's autogroups (sched(7)), a nice value weighs only against the processes
    of the same session, and every service that leads its session (systemd's, the lab's)
    has an autogroup of its own, which shares the cores equally with the others whatever
    its nice value: measured in the lab cloud, vrrpd at -10 waited 3.6 s on the run queue
    for each second it ran. A daemon that leads its own session therefore gives its
    autogroup the same nice value (keepalived does not)."""
    import logging
    import os

    log = logging.getLogger(__name__)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:  # a negative value needs CAP_SYS_NICE
        log.warning("vrrp_priority %d not applied: %s", nice, exc)
        return
    if os.getsid(0) != os.getpid():
        return  # the autogroup is the session's: not ours to change
    try:
        with open("/proc/self/autogroup") as autogroup:
            if not autogroup.read().strip():
                return  # the kernel's default group (PID 1 of a container): no share to set
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except FileNotFoundError:
        pass  # a kernel without autogroups: the nice value alone counts
    except OSError as exc:
        log.warning("vrrp_priority %d not applied to the autogroup: %s", nice, exc)


@click.command("status")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--control-socket",
    type=click.Path(path_type=Path),
    help="Default: the daemon of this network namespace.",
)
def status(as_json: bool, control_socket: Path | None) -> None:
    """Show a running hanet vrrpd's instances and scripts."""
    from hanet.vrrpd.control import request
    from hanet.vrrpd.paths import default_control_socket

    path = control_socket or default_control_socket()
    try:
        answer = asyncio.run(request(path, {"command": "status"}))
    except (OSError, TimeoutError, ValueError) as exc:
        raise click.ClickException(f"no answer from {path}: {exc}") from None
    if as_json:
        click.echo(json.dumps(answer, indent=1))
        return
    from rich.console import Console  # here: the daemon itself never draws a table
    from rich.table import Table

    table = Table(
        "instance",
        "state",
        "priority",
        "master",
        "since",
        "trans.",
        "sent",
        "recv",
        "drops",
        "fault",
    )
    for entry in answer.get("instances", []):
        drops = ", ".join(f"{k}={v}" for k, v in sorted(entry["drops"].items())) or "-"
        since = entry["master_since"]
        table.add_row(
            entry["name"],
            entry["state"],
            f"{entry['priority']} (base {entry['base_priority']})",
            entry["master"] or "-",
            time.strftime("%H:%M:%S", time.localtime(since)) if since else "-",
            str(entry["transitions"]),
            str(entry["adverts_sent"]),
            str(entry["adverts_received"]),
            drops,
            entry.get("fault") or "-",
        )
    # Piped output is read by scripts and tests: never squeeze the table into 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    scripts = answer.get("scripts", [])
    if scripts:
        script_table = Table("vrrp_script", "state", "runs", "failures")
        for script in scripts:
            script_table.add_row(
                script["name"], script["state"], str(script["runs"]), str(script["failures"])
            )
        console.print(script_table)
