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
