"""SIGHUP storms: one reload runs, at most one waits, and it reads the file as it is then."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hanet.vrrpd.daemon import Vrrpd


def test_a_storm_of_sighups_queues_one_reload(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    async def storm() -> int:
        daemon = Vrrpd(tmp_path / "k.conf", tmp_path / "pid", tmp_path / "sock")
        runs = 0
        release = asyncio.Event()

        async def slow_reload() -> None:
            nonlocal runs
            runs += 1
            await release.wait()

        daemon._reload = slow_reload  # type: ignore[method-assign]
        for _ in range(50):
            daemon._on_sighup()  # the first starts, the second waits, the rest add nothing
            await asyncio.sleep(0)
        release.set()
        for _ in range(10):
            await asyncio.sleep(0)
        async with daemon.reload_lock:
            return runs

    assert asyncio.run(storm()) == 2


def test_a_sighup_before_start_is_refused_cleanly(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    daemon = Vrrpd(tmp_path / "k.conf", tmp_path / "pid", tmp_path / "sock")
    asyncio.run(daemon.reload())
    assert "reload refused" in caplog.text and "not running yet" in caplog.text
    assert "Traceback" not in caplog.text
