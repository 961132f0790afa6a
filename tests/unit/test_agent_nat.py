"""A router's NAT rendered as one nftables table: golden rulesets, nft's own check, bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from hanet.agent.nat import FloatingIp, NatError, RouterNat, removal, ruleset

QG = "qg-5b2f4d1e-8a"

GOLDEN_FULL = f"""\
table ip hanet-router {{}}
delete table ip hanet-router
table ip hanet-router {{
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 203.0.113.50 dnat to 10.0.0.5
\t\tip daddr 203.0.113.51 dnat to 10.1.0.7
\t}}
\tchain output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr 203.0.113.50 dnat to 10.0.0.5
\t\tip daddr 203.0.113.51 dnat to 10.1.0.7
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tiifname "{QG}" accept
\t\toifname != "{QG}" ct status & dnat == 0 accept
\t\tip saddr 10.0.0.5 snat to 203.0.113.50
\t\tip saddr 10.1.0.7 snat to 203.0.113.51
\t\toifname != "{QG}" snat to 203.0.113.10
\t\tip saddr 10.0.0.0/24 snat to 203.0.113.10
\t\tip saddr 10.1.0.0/24 snat to 203.0.113.10
\t}}
}}
"""

GOLDEN_EMPTY = """\
table ip hanet-router {}
delete table ip hanet-router
table ip hanet-router {
}
"""


def nat(**changes: Any) -> RouterNat:
    base: dict[str, Any] = {
        "router": "r1",
        "gateway_device": QG,
        "gateway_address": "203.0.113.10",
        "enable_snat": True,
        # Unsorted, with an IPv6 subnet: the text is sorted and IPv6 is not translated.
        "internal_subnets": ["10.1.0.0/24", "fd00:1::/64", "10.0.0.0/24"],
        "floating_ips": [FloatingIp("203.0.113.51", "10.1.0.7"),
                         FloatingIp("203.0.113.50", "10.0.0.5")],
    }  # fmt: skip
    base.update(changes)
    return RouterNat(**base)


def test_full_router_golden() -> None:
    assert ruleset(nat()) == GOLDEN_FULL


def test_snat_disabled_keeps_floating_ips_and_hairpin() -> None:
    # Only the subnets' SNAT goes: the hairpin belongs to the floating IPs, as in Neutron.
    subnets = "".join(
        f"\t\tip saddr {s} snat to 203.0.113.10\n" for s in ("10.0.0.0/24", "10.1.0.0/24")
    )
    assert subnets in GOLDEN_FULL
    assert ruleset(nat(enable_snat=False)) == GOLDEN_FULL.replace(subnets, "")


def test_no_floating_ips_only_gateway_snat() -> None:
    text = ruleset(nat(floating_ips=[]))
    assert "dnat to" not in text
    assert text.count("snat to 203.0.113.10") == 3  # the hairpin and the two subnets


def test_router_without_gateway_has_an_empty_table() -> None:
    # No gateway, no floating IP: nothing to SNAT to, so no hairpin either.
    assert ruleset(nat(gateway_device=None, gateway_address=None, floating_ips=[])) == GOLDEN_EMPTY


def test_same_settings_same_text_whatever_the_order() -> None:
    shuffled = nat(internal_subnets=["10.0.0.0/24", "10.1.0.0/24"],
                   floating_ips=[FloatingIp("203.0.113.50", "10.0.0.5"),
                                 FloatingIp("203.0.113.51", "10.1.0.7")])  # fmt: skip
    assert ruleset(shuffled) == ruleset(nat())


def test_other_table_and_removal() -> None:
    assert ruleset(nat(), table="nat_r1").startswith("table ip nat_r1 {}\ndelete table ip nat_r1\n")
    assert removal() == "table ip hanet-router {}\ndelete table ip hanet-router\n"
    with pytest.raises(ValueError, match="table name"):
        ruleset(nat(), table="x; flush ruleset")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gateway_address": "203.0.113.300"},
         "router r1: gateway_address: '203.0.113.300' is not an IP address"),
        ({"gateway_address": "2001:db8::1"},
         "router r1: gateway_address: 2001:db8::1 is IPv6; only IPv4 is translated"),
        ({"gateway_address": None},
         "router r1: gateway_address: a gateway needs both its device and its address"),
        ({"gateway_device": 'qg-x" accept'},
         "router r1: gateway_device: 'qg-x\" accept' is not an interface name"),
        ({"enable_snat": "yes"}, "router r1: enable_snat: 'yes' is not true or false"),
        ({"internal_subnets": ["10.0.0.1/24"]},
         "router r1: internal_subnets[0]: '10.0.0.1/24' is not a subnet"),
        ({"internal_subnets": ["10.0.0.0/24", "10.0.0.0/24"]},
         "router r1: internal_subnets[1]: 10.0.0.0/24 is given twice (also internal_subnets[0])"),
        ({"internal_subnets": "10.0.0.0/24"},
         "router r1: internal_subnets: must be a list of subnets"),
        ({"floating_ips": [FloatingIp("203.0.113.50", "10.0.0.5"),
                           FloatingIp("203.0.113.50", "10.0.0.6")]},
         "router r1: floating_ips[1].floating_ip_address: 203.0.113.50 is given twice "
         "(also floating_ips[0])"),
        ({"floating_ips": [FloatingIp("203.0.113.50", "10.0.0.5"),
                           FloatingIp("203.0.113.51", "10.0.0.5")]},
         "router r1: floating_ips[1].fixed_ip_address: 10.0.0.5 already has floating IP"),
        ({"floating_ips": [FloatingIp("203.0.113.10", "10.0.0.5")]},
         "floating_ips[0].floating_ip_address: 203.0.113.10 is the gateway address"),
        ({"floating_ips": [FloatingIp("2001:db8::5", "10.0.0.5")]},
         "floating_ips[0].floating_ip_address: 2001:db8::5 is IPv6"),
        ({"floating_ips": [FloatingIp("203.0.113.50", "fd00::5")]},
         "floating_ips[0].fixed_ip_address: fd00::5 is IPv6"),
        ({"floating_ips": [FloatingIp("203.0.113.50", 5)]},  # type: ignore[arg-type]
         "floating_ips[0].fixed_ip_address: 5 is not an address string"),
        ({"floating_ips": [("203.0.113.50", "10.0.0.5")]},
         "floating_ips[0]: ('203.0.113.50', '10.0.0.5') is not a floating IP"),
        ({"gateway_device": None, "gateway_address": None},
         "router r1: floating_ips[0]: a floating IP needs the router's gateway"),
    ],
)  # fmt: skip
def test_bad_input_names_router_and_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(NatError) as info:
        ruleset(nat(**changes))
    assert message in str(info.value)
    assert info.value.router == "r1"


def _nft_check(text: str) -> subprocess.CompletedProcess[str]:
    """nft's check mode (-c: parse and validate in the kernel, commit nothing), in a
    throw-away network namespace so the host's ruleset is never involved."""
    return subprocess.run(["unshare", "--net", "nft", "-c", "-f", "-"], input=text,
                          capture_output=True, text=True, timeout=30)  # fmt: skip


needs_nft = pytest.mark.skipif(
    shutil.which("nft") is None or shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs nft, unshare and root",
)


@needs_nft
@pytest.mark.parametrize(
    "text",
    [
        ruleset(nat()),
        ruleset(nat(enable_snat=False)),
        ruleset(nat(floating_ips=[])),
        ruleset(nat(gateway_device=None, gateway_address=None, floating_ips=[])),
        removal(),
    ],
    ids=["full", "no-snat", "no-fip", "no-gateway", "removal"],
)
def test_nft_accepts_the_text(text: str) -> None:
    result = _nft_check(text)
    assert result.returncode == 0, result.stderr


@needs_nft
def test_nft_check_is_a_real_check() -> None:
    # Without this, a check that accepts anything would make the test above meaningless.
    result = _nft_check(ruleset(nat()).replace("dnat to", "dnat too"))
    assert result.returncode != 0
