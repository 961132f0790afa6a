"""What a node that runs only vrrpd loads: not pyroute2, the lab, the API client or Rich
(about 25 MB of its memory before any instance, docs/BENCHMARKS.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit


def test_the_vrrpd_command_imports_no_pyroute2_lab_or_client() -> None:
    code = (
        "import sys, hanet.cli.main, hanet.vrrpd.daemon, hanet.vrrpd.control, "
        "hanet.vrrpd.metrics; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyroute2', 'rich', 'aiohttp'}"
        " | {m for m in sys.modules if m.startswith(('hanet.lab', 'hanet.cli.client'))}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_hanet_command_is_still_listed_and_loads() -> None:
    from click.testing import CliRunner

    from hanet.cli.main import main

    runner = CliRunner()
    listed = runner.invoke(main, ["--help"])
    for name in ("agent", "demo", "l3-agent", "lab", "router", "vrrp", "vrrpd"):
        assert f"  {name} " in listed.output
    agent = runner.invoke(main, ["agent", "--help"])
    assert agent.exit_code == 0 and "cleanup" in agent.output
    assert runner.invoke(main, ["lab", "--help"]).exit_code == 0
