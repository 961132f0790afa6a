"""Golden adverts captured from keepalived 2.2.7 (tests/golden/capture_keepalived.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hanet.vrrp import decode_ip_packet, encode_ip_packet

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "keepalived.json").read_text())
PACKETS = {p["name"]: p for p in GOLDEN["packets"]}


def test_every_required_case_was_captured() -> None:
    assert "2.2.7" in GOLDEN["captured_from"]
    assert {"v2_auth_pass", "v3_ipv4", "v3_ipv6", "v3_ipv4_priority0"} <= set(PACKETS)


@pytest.mark.parametrize("name", sorted(PACKETS))
def test_decoder_reads_keepalived(name: str) -> None:
    record: dict[str, Any] = PACKETS[name]
    advert = decode_ip_packet(bytes.fromhex(record["hex"]))
    fields = record["fields"]
    assert advert.version == fields["version"]
    assert advert.vrid == fields["vrid"]
    assert advert.priority == fields["priority"]
    assert advert.advert_int_cs == fields["advert_int_cs"]
    assert advert.auth_type == fields["auth_type"]
    assert advert.auth_data == bytes.fromhex(fields["auth_data"])
    assert [str(a) for a in advert.addresses] == fields["addresses"]
    if fields["source"] is None:
        assert advert.source.is_link_local  # RFC 5798 §5.1.2.1: IPv6 adverts from link-local
    else:
        assert str(advert.source) == fields["source"]


@pytest.mark.parametrize("name", sorted(PACKETS))
def test_encoder_writes_what_keepalived_writes(name: str) -> None:
    """Byte for byte, VRRP message and checksum included (v3 IPv4: pseudo-header form)."""
    packet = bytes.fromhex(PACKETS[name]["hex"])
    advert = decode_ip_packet(packet)
    header_len = 20 if packet[0] >> 4 == 4 else 40
    ours = encode_ip_packet(advert)
    assert ours[header_len:] == packet[header_len:]
