"""enable_script_security as keepalived 2.2.7 applies it: which scripts run, which are refused
and why, and ``hanet vrrpd --check`` saying so at the script's line."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from hanet.cli.main import main
from hanet.vrrpd.scripts import ScriptRefused, ScriptRunner, check_script_security

# What is checked is who owns the files: only root can make root-owned ones.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own test files")

NOBODY = 65534


def script_in(folder: Path, mode: int, owner: int = 0, group: int = 0) -> Path:
    folder.mkdir()
    os.chown(folder, owner, group)
    folder.chmod(mode)
    script = folder / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    return script


def refusal(argv: list[str], uid: int = 0, gid: int = 0) -> str:
    with pytest.raises(ScriptRefused) as caught:
        check_script_security(argv, uid, gid)
    return str(caught.value)


def test_a_root_owned_script_in_a_sticky_root_owned_folder_runs(tmp_path: Path) -> None:
    # /tmp itself: root's, mode 1777. keepalived runs such a script, and so must hanet.
    script = script_in(tmp_path / "tmp", 0o1777)
    assert ScriptRunner(security=True).prepare(f"{script} arg") == [str(script), "arg"]


def test_a_script_in_a_folder_anyone_may_write_is_refused(tmp_path: Path) -> None:
    script = script_in(tmp_path / "open", 0o777)
    with pytest.raises(ScriptRefused) as caught:
        ScriptRunner(security=True).prepare(str(script))
    assert str(caught.value) == (
        f"{script}: {tmp_path}/open is writable by a non-root user "
        "(everyone may write to it, and it has no sticky bit)"
    )


@pytest.mark.parametrize(
    ("owner", "group", "mode", "why"),
    [
        (NOBODY, 0, 0o755, f"is owned by uid {NOBODY}, not root"),
        # The sticky bit protects root's files only in a folder that root owns.
        (NOBODY, 0, 0o1777, f"is owned by uid {NOBODY}, not root"),
        (0, NOBODY, 0o775, f"is writable by a non-root user (group {NOBODY} may write to it, "
                           "and it has no sticky bit)"),
    ],
)  # fmt: skip
def test_a_folder_a_non_root_user_can_change_is_refused(
    tmp_path: Path, owner: int, group: int, mode: int, why: str
) -> None:
    script = script_in(tmp_path / "d", mode, owner, group)
    assert refusal([str(script)]) == f"{script}: {tmp_path}/d {why}"


def test_the_script_itself_and_root_s_group(tmp_path: Path) -> None:
    script = script_in(tmp_path / "d", 0o775)  # writable by root's group only: fine
    script.chmod(0o775)
    assert check_script_security([str(script)]) == [str(script)]
    os.chown(script, 0, NOBODY)
    assert refusal([str(script)]) == (
        f"{script}: {script} is writable by a non-root user (group {NOBODY} may write to it)"
    )
    os.chown(script, NOBODY, 0)
    script.chmod(0o755)
    assert refusal([str(script)]) == f"{script}: {script} is owned by uid {NOBODY}, not root"


def test_only_scripts_that_run_with_root_s_rights_are_checked(tmp_path: Path) -> None:
    script = script_in(tmp_path / "open", 0o777)
    # Run as nobody, it can do no more than nobody could anyway (keepalived does not check).
    assert check_script_security([str(script)], NOBODY, NOBODY) == [str(script)]
    assert "no sticky bit" in refusal([str(script)], NOBODY, 0)  # root's group
    script.chmod(0o4755)  # set-uid root: runs as root whoever starts it
    assert "no sticky bit" in refusal([str(script)], NOBODY, NOBODY)


def test_what_runs_is_the_file_that_was_checked(tmp_path: Path) -> None:
    safe = script_in(tmp_path / "safe", 0o755)
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)
    link = tmp_path / "open" / "check"
    link.symlink_to(safe)
    # The link could be repointed after the check: the resolved file runs, as in keepalived.
    assert ScriptRunner(security=True).prepare(f"{link} x") == [str(safe), "x"]


def test_a_script_run_as_a_user_gets_that_user_s_group_only() -> None:
    runner = ScriptRunner(user="nobody")
    # Never the daemon's root group, which would let it change what root's group may.
    ids = f'[ "$(id -u) $(id -G)" = "{NOBODY} {NOBODY}" ]'
    assert asyncio.run(runner.run(["/bin/sh", "-c", ids], 10)) == 0


CONFIG = """global_defs {{
  enable_script_security
}}
vrrp_script chk {{
  script "{script} --quick"
}}
vrrp_instance VI_1 {{
  interface lo
  virtual_router_id 1
  virtual_ipaddress {{
    10.0.0.1
  }}
  track_script {{
    chk
  }}
  notify_master {script}
}}
"""


def test_check_warns_at_each_script_that_would_be_refused(tmp_path: Path) -> None:
    script = script_in(tmp_path / "open", 0o777)
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONFIG.format(script=script))
    result = CliRunner().invoke(main, ["vrrpd", "--check", "-f", str(conf)])
    why = (
        f"enable_script_security refuses {script}: {tmp_path}/open is writable by a non-root "
        "user (everyone may write to it, and it has no sticky bit)"
    )
    assert result.stderr.splitlines() == [
        f"{conf}:5:10: warning: vrrp_script chk: {why}; it counts as failed",
        f"{conf}:16:17: warning: vrrp_instance VI_1 notify_master: {why}; it will not run",
    ]
    assert result.exit_code == 0  # a warning, as keepalived only disables such a script

    script = script_in(tmp_path / "tmp", 0o1777)
    conf.write_text(CONFIG.format(script=script))
    result = CliRunner().invoke(main, ["vrrpd", "--check", "-f", str(conf)])
    assert (result.exit_code, result.stderr) == (0, "")
