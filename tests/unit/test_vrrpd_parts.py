"""hanet vrrpd's pure parts: tracking arithmetic, check hysteresis, scripts, control parsing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hanet.vrrpd.control import RequestError, _parse
from hanet.vrrpd.scripts import (
    CheckState,
    ScriptRefused,
    ScriptRunner,
    check_script_security,
    split_command,
)
from hanet.vrrpd.tracking import Observations, Tracking, Weighted, evaluate


def test_script_without_weight_failing_is_fault() -> None:
    tracking = Tracking(scripts=(Weighted("chk"),))
    assert evaluate(100, tracking, Observations(scripts_ok={"chk": False})) == (
        100, "vrrp_script chk is down",
    )  # fmt: skip
    assert evaluate(100, tracking, Observations(scripts_ok={"chk": True})) == (100, None)


@pytest.mark.parametrize(
    ("weight", "reverse", "ok", "expected"),
    [(10, False, True, 110), (10, False, False, 100), (-10, False, False, 90),
     (-10, False, True, 100), (10, True, False, 110), (-10, True, True, 90)],
)  # fmt: skip
def test_script_weights(weight: int, reverse: bool, ok: bool, expected: int) -> None:
    tracking = Tracking(scripts=(Weighted("chk", weight, reverse),))
    assert evaluate(100, tracking, Observations(scripts_ok={"chk": ok}))[0] == expected


def test_priority_stays_within_1_and_254_and_owner_never_moves() -> None:
    tracking = Tracking(scripts=(Weighted("a", 200), Weighted("b", -253)))
    assert evaluate(200, tracking, Observations(scripts_ok={"a": True}))[0] == 254
    assert evaluate(50, tracking, Observations(scripts_ok={"a": False, "b": False}))[0] == 1
    assert evaluate(255, tracking, Observations(scripts_ok={"a": True}))[0] == 255


def test_interfaces_and_files() -> None:
    tracking = Tracking(interfaces=(Weighted("eth0"), Weighted("eth1", -20)),
                        files=(Weighted("f", 5),))  # fmt: skip
    seen = Observations(interfaces_up={"eth0": True, "eth1": False}, file_values={"f": 2})
    assert evaluate(100, tracking, seen) == (90, None)
    seen.interfaces_up["eth0"] = False
    assert evaluate(100, tracking, seen)[1] == "interface eth0 is down"
    seen.interfaces_up["eth0"] = True
    seen.file_values["f"] = -60  # -300: fault
    assert evaluate(100, tracking, seen)[1] == "track_file f reads -60"


def test_sync_group_members_ignore_weights() -> None:
    tracking = Tracking(scripts=(Weighted("chk", -50),), in_sync_group=True)
    assert evaluate(100, tracking, Observations(scripts_ok={"chk": False}))[1] is not None


def test_rise_and_fall() -> None:
    state = CheckState(rise=2, fall=3, ok=True)
    assert [state.record(False) for _ in range(3)] == [False, False, True]
    assert not state.ok
    assert [state.record(True), state.record(False), state.record(True)] == [False, False, False]
    assert state.record(True) and state.ok


def test_split_command_like_keepalived() -> None:
    assert split_command("/bin/check 'a b' \"c d\" e") == ["/bin/check", "a b", "c d", "e"]
    with pytest.raises(ScriptRefused):
        split_command("")
    with pytest.raises(ScriptRefused):
        split_command("/bin/x 'unclosed")


def test_script_security_refuses_what_others_can_write(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o777)
    with pytest.raises(ScriptRefused, match="writable by a non-root user"):
        check_script_security([str(script)])
    if os.geteuid() == 0:
        check_script_security(["/bin/true"])  # root-owned all the way up


def test_hanging_script_is_killed_and_counted() -> None:
    runner = ScriptRunner()

    async def go() -> tuple[int | None, int | None]:
        hung = await runner.run(["/bin/sleep", "10"], timeout=0.2)
        ok = await runner.run(["/bin/true"], timeout=5)
        return hung, ok

    assert asyncio.run(go()) == (None, 0)
    assert runner.counters["timed_out"] == 1
    assert asyncio.run(runner.run(["/nonexistent/script"], 1)) is None
    assert runner.counters["start_failed"] == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [(b"not json", "not JSON"), (b"[]", "a request is a JSON object"),
     (b'{"command": "explode"}', "'command' must be one of"),
     (b'{"command": "status", "x": 1}', "unknown key 'x'")],
)  # fmt: skip
def test_control_requests_are_checked(line: bytes, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        _parse(line)


@given(
    st.binary(max_size=300)
    | st.builds(
        lambda v: json.dumps(v).encode(),
        st.dictionaries(st.text(max_size=10), st.none() | st.text(max_size=10), max_size=4),
    )
)
@settings(max_examples=300)
def test_any_control_line_parses_or_is_refused(line: bytes) -> None:
    with contextlib.suppress(RequestError):
        _parse(line)
