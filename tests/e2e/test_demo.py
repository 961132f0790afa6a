"""`make demo`'s story, as a user reads it: r1 elected, r1 crashes, r2 takes over after the
crash, and the client's outage is about the master-down interval."""

from __future__ import annotations

import re

import pytest

from hanet.demo import run_demo
from hanet.lab.lab import namespaces_with_prefix


def test_the_demo_tells_the_take_over_after_the_crash(
    lab_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_demo(prefix=lab_prefix) == 0
    out = capsys.readouterr().out
    assert "elected: r1 is MASTER, r2 is BACKUP" in out
    timeline = dict(
        (what.strip(), int(ms))
        for ms, what in re.findall(r"^\s+([+-]\d+)\s+(.+)$", out, flags=re.MULTILINE)
    )
    became_master = timeline["r2 became MASTER (master down timer: 3 x 100 ms + skew)"]
    # RFC 5798 §6.4.2: the backup waits Master_Down_Interval (3 x 100 ms + skew, 361 ms at
    # priority 100) less the time since r1's last advert, i.e. 261-361 ms.
    assert 150 <= became_master <= 1000
    outage = int(re.search(r"failover: outage_ms=(\d+)", out).group(1))  # type: ignore[union-attr]
    assert 0 < outage <= 1500
    assert namespaces_with_prefix(lab_prefix) == []  # the demo cleans up after itself


def test_make_demo_shows_the_cloud_fail_over_and_leaves_nothing(
    lab_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    from hanet.lab.cloud_demo import run_cloud_demo
    from hanet.lab.cloud_nodes import cloud_namespaces
    from hanet.lab.cloud_state import RUN_ROOT

    assert run_cloud_demo(prefix=lab_prefix) == 0
    out = capsys.readouterr().out
    assert re.search(r"^endpoint: http://127\.0\.0\.1:\d+$", out, flags=re.MULTILINE)
    for check in (
        "vm1 reaches upstream",
        "vm1 reaches vm2",
        "upstream reaches vm1 at its floating IP",
    ):
        assert re.search(rf"ok {check}", out), check
    timeline = dict(
        (what.strip(), int(ms))
        for ms, what in re.findall(r"^\s+([+-]\d+)\s+(.+)$", out, flags=re.MULTILINE)
    )
    crashed = next(what for what in timeline if what.endswith("crashed (was active)"))
    took_over = next(what for what in timeline if "became master" in what)
    assert timeline[crashed] == 0 < timeline[took_over]
    final = re.search(
        r"^failover: routers=(\d+) outage_ms=(\d+) lost=(\d+)$", out, flags=re.MULTILINE
    )
    assert final is not None and final.group(1) == "1" and int(final.group(2)) > 0
    picture = Path(re.search(r"timeline picture: (\S+)", out).group(1))  # type: ignore[union-attr]
    assert picture.read_text().startswith("<svg") and "crash" in picture.read_text()
    assert cloud_namespaces(lab_prefix) == []
    assert not (RUN_ROOT / lab_prefix).exists()
