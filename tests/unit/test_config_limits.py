"""What keepalived.conf reading refuses: files that are not regular, too many bytes, blocks
nested too deep. Each is a located error, never a hang, an unbounded read or a traceback."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from hanet.keepalived import loader
from hanet.keepalived.loader import load_config
from hanet.keepalived.model import KeepalivedConfig
from hanet.keepalived.syntax import MAX_NESTING, parse
from hanet.keepalived.tokens import ConfigSyntaxError, tokenize

# Only bounds a broken reader; a working one returns at once, so this never decides a pass.
HANG = 60.0
INSTANCE = (
    "vrrp_instance A {\n interface lo\n virtual_router_id 1\n virtual_ipaddress { 10.0.0.1 }\n}\n"
)


def write(folder: Path, text: str, name: str = "keepalived.conf") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def load_without_hanging(path: Path, fifo: Path | None = None) -> KeepalivedConfig:
    """load_config, failing the test instead of hanging if it blocks on ``fifo``."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(load_config, path)
        try:
            return future.result(timeout=HANG)
        except FutureTimeout:
            if fifo is not None:  # let the blocked reader go, so that the pool can end
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            pytest.fail(f"reading {path} blocked")


def limit_memory() -> None:
    # A reader that never stops (include /dev/zero) must fail here, not take the machine.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def check(path: Path) -> subprocess.CompletedProcess[str]:
    """``hanet vrrpd --check -f path`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "hanet.cli.main", "vrrpd", "--check", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=HANG,
        preexec_fn=limit_memory,
        check=False,
    )


def nested(depth: int) -> str:
    return "".join(f"level{i} {{\n" for i in range(depth)) + "}\n" * depth


def test_an_included_fifo_is_refused_at_once_by_name(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.conf"
    os.mkfifo(fifo)
    main = write(tmp_path, f"{INSTANCE}include pipe.conf\n")
    config = load_without_hanging(main, fifo)
    assert [str(e) for e in config.errors] == [
        f"{main}:6:9: included file '{fifo}': not a regular file (a FIFO)"
    ]


def test_the_main_file_must_be_regular_too(tmp_path: Path) -> None:
    fifo = tmp_path / "keepalived.conf"
    os.mkfifo(fifo)
    config = load_without_hanging(fifo, fifo)
    assert [str(e) for e in config.errors] == [f"{fifo}: not a regular file (a FIFO)"]
    assert [str(e) for e in load_config(tmp_path).errors] == [
        f"{tmp_path}: not a regular file (a directory)"
    ]


def test_check_refuses_an_included_fifo_and_dev_zero(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.conf")
    main = write(tmp_path, f"{INSTANCE}include pipe.conf\n")
    result = check(main)
    assert result.returncode == 1
    assert "6:9: included file" in result.stderr
    assert "pipe.conf': not a regular file (a FIFO)" in result.stderr

    main = write(tmp_path, f"{INSTANCE}include /dev/zero\n", "zero.conf")
    result = check(main)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"{main}:6:9: included file '/dev/zero': not a regular file (a character device)"
    )


def test_what_is_read_is_capped_not_what_the_size_says(monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc files are regular files whose st_size is 0, however much they hold.
    monkeypatch.setattr(loader, "MAX_BYTES", 64)
    proc = Path("/proc/self/mountinfo")
    assert proc.stat().st_size == 0
    assert [str(e) for e in load_config(proc).errors] == [f"{proc}: larger than 64 bytes"]


def test_a_file_over_the_cap_is_refused(tmp_path: Path) -> None:
    big = write(tmp_path, "# " + "x" * loader.MAX_BYTES + "\n")
    assert [str(e) for e in load_config(big).errors] == [
        f"{big}: larger than {loader.MAX_BYTES} bytes"
    ]


def test_the_cap_holds_for_all_includes_together(tmp_path: Path) -> None:
    half = "# " + "x" * (loader.MAX_BYTES // 2) + "\n"
    write(tmp_path, half, "a.part")
    write(tmp_path, half, "b.part")
    main = write(tmp_path, "include *.part\n")
    (error,) = load_config(main).errors
    assert str(error).startswith(f"{main}:1:9: included file '{tmp_path}/b.part': larger than")
    assert f"the {loader.MAX_BYTES} bytes that the configuration and all its includes" in str(error)


def test_deep_nesting_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigSyntaxError) as caught:
        parse(tokenize(nested(2000), "f"))
    assert str(caught.value) == f"f:{MAX_NESTING + 1}:{len(f'level{MAX_NESTING}') + 2}: " \
                                f"blocks nest deeper than {MAX_NESTING}"  # fmt: skip
    parse(tokenize(nested(MAX_NESTING), "f"))  # as deep as allowed: no error

    main = write(tmp_path, nested(2000))
    assert [e.message for e in load_config(main).errors] == [
        f"blocks nest deeper than {MAX_NESTING}"
    ]


def test_check_reports_deep_nesting_without_a_traceback(tmp_path: Path) -> None:
    main = write(tmp_path, f"{INSTANCE}{nested(2000)}")
    result = check(main)
    assert result.returncode == 1
    assert result.stderr.strip() == f"{main}:22:9: blocks nest deeper than {MAX_NESTING}"
