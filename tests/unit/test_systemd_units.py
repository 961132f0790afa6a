"""The systemd units in packaging/systemd: systemd accepts them, every command they run is
one of ours with options it knows, and the agent is ordered after vrrpd without being able
to stop it (an agent restart must not touch the data path)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "packaging" / "systemd"
BIN = Path(sys.executable).parent
INSTALLED = "/usr/local/bin/"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text().replace("\\\n", " "))
    return parser


def commands(name: str) -> list[list[str]]:
    service = unit(name)["Service"]
    return [shlex.split(service[key]) for key in ("ExecStartPre", "ExecStart") if key in service]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    for path in UNITS.iterdir():
        # Installed commands live in /usr/local/bin; here, in this virtualenv.
        (tmp_path / path.name).write_text(path.read_text().replace(INSTALLED, f"{BIN}/"))
    names = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *names],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("name", ["hanet-vrrpd.service", "hanet-agent.service",
                                  "hanet-server.service"])  # fmt: skip
def test_every_command_is_ours_and_its_options_are_known(name: str, tmp_path: Path) -> None:
    for argv in commands(name):
        assert argv[0].startswith(INSTALLED), argv
        program = BIN / argv[0].removeprefix(INSTALLED)
        assert program.exists(), f"{program} is not a console script of this project"
        # The files the unit names do not exist here: each command must get as far as
        # reading them, past its option parsing.
        args = [a.replace("/etc/hanet/", f"{tmp_path}/") for a in argv[1:]]
        if "--pid-file" in args:  # vrrpd --check only reads the file
            args = [a.replace("/run/hanet/", f"{tmp_path}/") for a in args]
        result = subprocess.run([str(program), *args], capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
        output = result.stdout + result.stderr
        assert "No such option" not in output and "Usage:" not in output, output
        assert str(tmp_path) in output, output  # it names the file it could not read


def test_the_agent_follows_vrrpd_and_leaves_its_proxies_running() -> None:
    agent = unit("hanet-agent.service")
    assert "hanet-vrrpd.service" in agent["Unit"]["After"].split()
    assert "hanet-vrrpd.service" in agent["Unit"]["Wants"].split()
    for key in ("BindsTo", "PartOf", "Requires"):
        assert "hanet-vrrpd.service" not in agent["Unit"].get(key, "")
    assert agent["Service"]["KillMode"] == "process"
    vrrpd = unit("hanet-vrrpd.service")
    assert vrrpd["Service"]["KillSignal"] == "SIGTERM"  # masters hand over at stop
    assert "ExecReload" in vrrpd["Service"]
