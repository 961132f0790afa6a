"""Reading keepalived.conf: the seeds' configs, every error with file:line:col, fuzzing."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hanet.keepalived.loader import load_config
from hanet.keepalived.sections import build
from hanet.keepalived.syntax import parse
from hanet.keepalived.tokens import ConfigSyntaxError, tokenize

FIXTURES = Path(__file__).parents[1] / "fixtures" / "keepalived"


def write(tmp_path: Path, text: str, name: str = "keepalived.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    return [str(p) for p in load_config(write(tmp_path, text)).errors]


def test_neutron_ha_router_config() -> None:
    config = load_config(FIXTURES / "neutron-ha-router.conf")
    assert config.errors == []
    vr = config.instances["VR_1"]
    assert (vr.state, vr.priority, vr.preempt, vr.advert_int) == ("BACKUP", 50, False, 2.0)
    assert vr.garp_master_delay == 60
    assert [t.name for t in vr.track_interfaces] == ["ha-2e4b7e1a-5c"]
    assert vr.vips[0].address == ipaddress.ip_interface("169.254.0.1/24")
    assert vr.vips[0].dev == "ha-2e4b7e1a-5c"
    assert len(vr.excluded) == 4 and all(a.no_track for a in vr.excluded)
    assert vr.excluded[2].scope == "link"
    default = vr.routes[0]
    assert str(default.to) == "0.0.0.0/0" and str(default.via) == "192.168.100.1"
    assert (default.dev, default.protocol, default.no_track) == ("qg-3c4d5e6f-22", "static", True)
    assert [p.severity for p in config.problems] == ["notice"]  # notification_email_from


def test_kolla_api_vip_config() -> None:
    config = load_config(FIXTURES / "kolla-api-vip.conf")
    assert config.errors == []
    script = config.scripts["check_alive"]
    assert (script.command, script.interval, script.fall, script.rise) == (
        "/checks/check_alive.sh", 2, 2, 10,
    )  # fmt: skip
    vip = config.instances["kolla_internal_vip_51"]
    assert (vip.auth_type, vip.auth_pass) == ("PASS", "kollapas")  # truncated to 8, warned
    assert vip.vips[0].address == ipaddress.ip_interface("10.0.0.250/32")
    assert [t.name for t in vip.track_scripts] == ["check_alive"]
    assert any("truncated" in p.message for p in config.warnings)


def test_unknown_keyword_has_location_and_suggestion(tmp_path: Path) -> None:
    text = (
        "vrrp_instance A {\n  interface eth0\n  virtual_router_id 5\n  priorty 100\n"
        "  virtual_ipaddress { 10.0.0.5 }\n}\n"
    )
    assert errors_of(tmp_path, text) == [
        f"{tmp_path}/keepalived.conf:4:3: unknown keyword 'priorty' in vrrp_instance A "
        "(did you mean 'priority'?)"
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("virtual_router_id 300", "2:21: virtual_router_id: '300' is not valid (must be 1..255)"),
        ("priority high", "2:12: priority: 'high' is not valid"),
        ("state SLAVE", "2:9: state: 'SLAVE' is not valid (one of MASTER, BACKUP)"),
        ("advert_int", "2:3: 'advert_int' takes 1 argument, got 0"),
        ("virtual_ipaddress {\n 10.0.0.300/24\n}", "3:2: address: '10.0.0.300/24' is not valid"),
        ("virtual_ipaddress {\n 10.0.0.3/24 dve eth0\n}", "3:14: unexpected 'dve'"),
        ("virtual_routes {\n 10.1.0.0/16 via fd00::1\n}", "3:2: the gateway and the desti"),
        ("track_script {\n nope\n}", "3:2: vrrp_instance A: track_script: no vrrp_script nope"),
    ],
)
def test_instance_errors(tmp_path: Path, body: str, message: str) -> None:
    text = f"vrrp_instance A {{\n  {body}\n  interface eth0\n  virtual_router_id 9\n" \
           "  virtual_ipaddress { 10.0.0.9/24 }\n}\n"  # fmt: skip
    errors = errors_of(tmp_path, text)
    assert any(e.startswith(f"{tmp_path}/keepalived.conf:{message}") for e in errors), errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vrrp_instance A {\n  interface eth0\n", "1:17: '{' is never closed"),
        ("}\n", "1:1: '}' closes no block"),
        ('vrrp_script s {\n script "/bin/true\n}\n', "2:9: unterminated quoted string"),
        ("vrrp_instance A {\n}\n", "1:1: vrrp_instance A has no 'interface'"),
        ("vrrp_instance {\n}\n", "1:1: 'vrrp_instance' takes 1 argument, got 0"),
        ("global_defs {\n vrrp_version 4\n}\n", "2:15: vrrp_version: '4' is not valid"),
        ("bogus_section {\n}\n", "1:1: unknown keyword 'bogus_section' in the top level"),
        ("global_defs {\n vrrp_priority -21\n}\n", "2:16: vrrp_priority: '-21' is not valid"),
    ],
)
def test_structure_errors(tmp_path: Path, text: str, message: str) -> None:
    errors = errors_of(tmp_path, text)
    assert any(e.startswith(f"{tmp_path}/keepalived.conf:{message}") for e in errors), errors


def test_every_error_is_reported_in_one_pass(tmp_path: Path) -> None:
    text = "vrrp_instance A {\n priorty 1\n virtual_router_id 0\n interface eth0\n" \
           " virtual_ipaddress { 10.0.0.1 }\n}\nvrrp_instance A {\n}\n"  # fmt: skip
    errors = errors_of(tmp_path, text)
    assert len(errors) >= 3
    assert any("already defined" in e for e in errors)


def test_include_with_glob_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    write(tmp_path / "conf.d", "vrrp_instance B {\n interface eth0\n virtual_router_id 2\n"
                               " virtual_ipaddress { 10.0.0.2 }\n}\n", "b.conf")  # fmt: skip
    write(tmp_path / "conf.d", "vrrp_instance C {\n interface eth0\n virtual_router_id 3\n"
                               " virtual_ipaddress { 10.0.0.3 }\n}\n", "c.conf")  # fmt: skip
    main = write(tmp_path, "global_defs { router_id x }\ninclude conf.d/*.conf\n")
    config = load_config(main)
    assert config.errors == []
    assert set(config.instances) == {"B", "C"}


def test_missing_include_and_loops_are_errors(tmp_path: Path) -> None:
    assert "does not exist" in errors_of(tmp_path, "include nothere.conf\n")[0]
    write(tmp_path, "include loop.conf\n", "loop.conf")
    assert "include loop" in errors_of(tmp_path, "include loop.conf\n")[0]


def test_braces_may_sit_anywhere_keepalived_allows() -> None:
    text = 'vrrp_instance A\n{\n authentication { auth_type PASS\n  auth_pass "s e"}\n}\n'
    (statement,) = parse(tokenize(text, "f"))
    assert statement.children is not None
    (auth,) = statement.children
    assert [c.name for c in auth.children or []] == ["auth_type", "auth_pass"]
    assert (auth.children or [])[1].words == ["s e"]


def test_comments_with_hash_and_bang() -> None:
    tokens = tokenize("a b # c\n! d\ne!f\n", "f")
    assert [t.text for t in tokens if t.text != "\n"] == ["a", "b", "e"]


def test_lvs_sections_are_reported_not_dropped(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "virtual_server 10.0.0.1 80 {\n real_server x {\n}\n}\n"))
    assert config.errors == []
    assert [str(w) for w in config.warnings] == [
        f"{tmp_path}/keepalived.conf:1:1: warning: LVS virtual_server is not supported by "
        "hanet and is not run"
    ]


def test_vrrp_strict_restrictions(tmp_path: Path) -> None:
    text = (
        "global_defs {\n vrrp_strict\n}\nvrrp_instance A {\n interface eth0\n"
        " virtual_router_id 1\n authentication {\n auth_type PASS\n auth_pass x\n }\n}\n"
    )
    errors = errors_of(tmp_path, text)
    assert any("vrrp_strict forbids an instance with no virtual_ipaddress" in e for e in errors)
    assert any("vrrp_strict forbids authentication" in e for e in errors)


def test_nopreempt_with_state_master_is_cleared_with_a_warning(tmp_path: Path) -> None:
    text = "vrrp_instance A {\n state MASTER\n nopreempt\n interface eth0\n" \
           " virtual_router_id 1\n virtual_ipaddress { 10.0.0.1 }\n}\n"  # fmt: skip
    config = load_config(write(tmp_path, text))
    assert config.instances["A"].preempt is True
    assert any("nopreempt does not work with state MASTER" in str(w) for w in config.warnings)


config_words = st.sampled_from([
    "vrrp_instance", "A", "{", "}", "\n", "interface", "eth0", "virtual_router_id", "1", "300",
    "priority", "virtual_ipaddress", "10.0.0.1/24", "dev", "include", "x*", '"q', "#", "!",
    "vrrp_script", "track_script", "global_defs", "weight", "-5", "reverse", "state", "MASTER",
    "virtual_routes", "via", "src", "to", "blackhole", "authentication", "auth_type", "PASS",
])  # fmt: skip


@given(st.lists(config_words, max_size=60))
@settings(max_examples=400)
def test_any_text_gives_problems_or_a_config(tmp_path_factory, words: list[str]) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("fuzz") / "k.conf"
    path.write_text(" ".join(words))
    config = load_config(path)  # must never raise
    for problem in config.problems:
        assert str(problem).startswith(str(path))


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_tokenizer_and_parser_raise_only_syntax_errors(text: str) -> None:
    try:
        build(parse(tokenize(text, "f")))
    except ConfigSyntaxError as exc:
        assert str(exc).startswith("f:")


def test_unicast_source_checks_are_accepted_and_ttl_limits_noticed(tmp_path: Path) -> None:
    """keepalived's opt-in source checks are what hanet always does; TTL limits are not."""
    config = load_config(write(tmp_path, (
        "global_defs {\n  vrrp_check_unicast_src\n}\n"
        "vrrp_instance A {\n  interface eth0\n  virtual_router_id 1\n  check_unicast_src\n"
        "  unicast_peer {\n    10.0.0.2 min_ttl 250\n  }\n"
        "  virtual_ipaddress {\n    10.0.0.200/24\n  }\n}\n"
    )))  # fmt: skip
    assert config.errors == []
    notices = [str(p) for p in config.problems]
    assert any(":9:5: notice: 'min_ttl' is accepted and ignored" in n for n in notices), notices


def test_vrrp_priority_is_the_daemons_nice_value(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    config = load_config(write(tmp_path, "global_defs {\n vrrp_priority 7\n}\n"))
    assert config.errors == []
    assert config.global_defs.vrrp_priority == 7
    # Applied by the command, in a child so that the test run keeps its own.
    code = (
        "import os; from hanet.cli.vrrpd_commands import _set_nice; _set_nice(7); "
        "print(os.getpriority(os.PRIO_PROCESS, 0))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == max(7, os.getpriority(os.PRIO_PROCESS, 0))


def test_vrrp_priority_reaches_the_autogroup_of_a_daemon_leading_its_session() -> None:
    """Autogroups share the cores between sessions whatever the nice values inside them:
    a daemon that leads its session gives its own autogroup the value; one that does not
    leaves its session's alone."""
    import subprocess
    import sys
    from pathlib import Path

    if not Path("/proc/self/autogroup").exists():
        pytest.skip("this kernel has no autogroups")
    code = (
        "from hanet.cli.vrrpd_commands import _set_nice; _set_nice(7); "
        "print(open('/proc/self/autogroup').read())"
    )
    # A process in the kernel's default autogroup (one whose session never left init's,
    # as some CI runners' are) reads an empty file: there is no autogroup of its own.
    ours = Path("/proc/self/autogroup").read_text().split()[-1:]
    for new_session, expected in ((True, ["7"]), (False, ours)):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, start_new_session=new_session)  # fmt: skip
        assert out.stdout.split()[-1:] == expected, (new_session, out.stdout)
