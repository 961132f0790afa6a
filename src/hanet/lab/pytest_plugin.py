"""pytest fixtures for lab tests: ``pytest_plugins = ["hanet.lab.pytest_plugin"]``.

Each test gets a unique namespace prefix; everything made under it (namespaces, links,
processes, work folders) is removed after the test, whether it passed or failed.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator

import pytest

from hanet.lab.daemons import Daemon, HanetVrrp, HanetVrrpd, Keepalived
from hanet.lab.lab import Lab
from hanet.lab.topology import Topology, lan_topology

_counter = itertools.count()


def unique_prefix() -> str:
    """Short (interface names are 15 bytes) and unique across parallel runs."""
    return f"t{os.getpid() % 100000}x{next(_counter)}"


@pytest.fixture
def lab_prefix() -> str:
    return unique_prefix()


@pytest.fixture
def make_lab(lab_prefix: str) -> Iterator[Callable[[Topology], Lab]]:
    """Build labs for this test; all of them are torn down afterwards."""
    labs: list[Lab] = []

    def build(topology: Topology) -> Lab:
        lab = Lab(topology, f"{lab_prefix}{len(labs)}" if labs else lab_prefix)
        labs.append(lab)
        return lab.up()

    yield build
    for lab in labs:
        lab.down()


@pytest.fixture
def lan(make_lab: Callable[[Topology], Lab]) -> Lab:
    """Routers r1, r2, r3 and client c on one segment (see lan_topology)."""
    return make_lab(lan_topology(routers=3))


@pytest.fixture
def daemons(request: pytest.FixtureRequest) -> Iterator[Callable[..., Daemon]]:
    """Start hanet or keepalived in lab hosts; killed and cleaned up after the test.

    On failure, their output is attached to the report.
    """
    started: list[Daemon] = []

    def start(kind: str, lab: Lab, host: str, config: object) -> Daemon:
        daemon: Daemon
        if kind == "hanet":
            daemon = HanetVrrp(lab, host).start(config)  # type: ignore[arg-type]
        elif kind == "vrrpd":
            daemon = HanetVrrpd(lab, host).start(config)  # type: ignore[arg-type]
        elif kind == "keepalived":
            daemon = Keepalived(lab, host).start(config)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown daemon kind {kind!r}")
        started.append(daemon)
        return daemon

    yield start
    report = getattr(request.node, "rep_call", None)
    for daemon in started:
        if report is not None and report.failed:
            request.node.add_report_section("teardown", f"{daemon.host} log", daemon.log())
        daemon.cleanup()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
