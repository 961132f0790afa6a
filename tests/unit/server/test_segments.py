"""Segments (issue 9 §1): tenant and HA networks get a VXLAN VNI from vni_ranges, flat and
VLAN networks keep what the admin gave, only admins see the provider attributes, and the
router document carries what an agent needs to wire each port."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig, ServerConfigError, check
from hanet.server.database import alembic_config, make_engine
from hanet.server.testing import ServerThread
from tests.unit.server.conftest import TOKENS
from tests.unit.server.test_api_core import error_type, make_net
from tests.unit.server.test_api_routers import register

PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")


def small(db_url: str, ranges: str = "100:102") -> ServerThread:
    config = ServerConfig(
        db=db_url, auth="token", tokens=TOKENS, agent_down_time=600.0, vni_ranges=[ranges]
    )
    return ServerThread(config)


@pytest.fixture
def three_vnis(db_url: str) -> Iterator[ServerThread]:
    with small(db_url) as server:
        yield server


def network(client: ApiClient, **fields: Any) -> dict[str, Any]:
    reply = client.post("/v2.0/networks", {"network": {"name": "n", **fields}})
    assert reply.status == 201, reply.body
    return dict(reply.body["network"])


def vni(admin: ApiClient, network_id: str) -> int:
    shown = admin.get(f"/v2.0/networks/{network_id}").body["network"]
    assert shown["provider:network_type"] == "vxlan"
    assert shown["provider:physical_network"] is None
    return int(shown["provider:segmentation_id"])


def test_tenant_networks_get_unique_vnis_from_the_range_until_it_is_exhausted(
    three_vnis: ServerThread,
) -> None:
    admin, alice = three_vnis.client("admin-token"), three_vnis.client("alice-token")
    made = [network(alice)["id"] for _ in range(3)]
    assert sorted(vni(admin, n) for n in made) == [100, 101, 102]
    refused = alice.post("/v2.0/networks", {"network": {"name": "fourth"}})
    assert refused.status == 503 and error_type(refused) == "NoNetworkAvailable"
    assert "No tenant network is available" in refused.body["NeutronError"]["message"]
    assert len(alice.get("/v2.0/networks").body["networks"]) == 3  # nothing half-made
    freed = vni(admin, made[1])
    assert alice.delete(f"/v2.0/networks/{made[1]}").status == 204
    again = network(alice)["id"]
    assert vni(admin, again) == freed


def test_only_admins_see_the_provider_attributes(three_vnis: ServerThread) -> None:
    admin, alice = three_vnis.client("admin-token"), three_vnis.client("alice-token")
    created = network(alice)
    assert not set(PROVIDER) & set(created)
    assert created["mtu"] == 1450  # VXLAN: 1500 less 50 bytes of encapsulation, as Neutron
    shown = alice.get(f"/v2.0/networks/{created['id']}").body["network"]
    assert not set(PROVIDER) & set(shown)
    listed = alice.get("/v2.0/networks").body["networks"]
    assert listed and not any(set(PROVIDER) & set(n) for n in listed)
    assert alice.get("/v2.0/networks?provider:segmentation_id=100").status == 400
    renamed = alice.put(f"/v2.0/networks/{created['id']}", {"network": {"name": "m"}})
    assert not set(PROVIDER) & set(renamed.body["network"])
    as_admin = admin.get(f"/v2.0/networks/{created['id']}").body["network"]
    assert as_admin["provider:network_type"] == "vxlan"
    assert 100 <= as_admin["provider:segmentation_id"] <= 102
    asked = alice.post("/v2.0/networks", {"network": {"provider:network_type": "vxlan"}})
    assert asked.status == 403


def test_ha_networks_get_a_vni_too(three_vnis: ServerThread) -> None:
    admin = three_vnis.client("admin-token")
    register(admin, "net0")
    router = admin.post("/v2.0/routers", {"router": {"ha": True, "project_id": "alice"}})
    assert router.status == 201, router.body
    (ha_net,) = [
        n for n in admin.get("/v2.0/networks").body["networks"] if n["name"].startswith("HA")
    ]
    assert ha_net["provider:network_type"] == "vxlan" and ha_net["mtu"] == 1450
    assert 100 <= ha_net["provider:segmentation_id"] <= 102


def test_flat_and_vlan_networks_keep_what_the_admin_gave(server: ServerThread) -> None:
    admin = server.client("admin-token")
    flat = network(
        admin, **{"provider:network_type": "flat", "provider:physical_network": "public"}
    )
    assert flat["provider:segmentation_id"] is None and flat["mtu"] == 1500
    assert flat["provider:physical_network"] == "public"
    again = admin.post("/v2.0/networks", {"network": {
        "provider:network_type": "flat", "provider:physical_network": "public"}})  # fmt: skip
    assert again.status == 409 and error_type(again) == "FlatNetworkInUse"
    vlan = {"provider:network_type": "vlan", "provider:physical_network": "physnet1",
            "provider:segmentation_id": 42}  # fmt: skip
    made = network(admin, **vlan)
    assert (made["provider:physical_network"], made["provider:segmentation_id"]) == (
        "physnet1",
        42,
    )
    taken = admin.post("/v2.0/networks", {"network": vlan})
    assert taken.status == 409 and error_type(taken) == "VlanIdInUse"
    elsewhere = network(admin, **(vlan | {"provider:physical_network": "physnet2"}))
    assert elsewhere["provider:segmentation_id"] == 42
    assert admin.delete(f"/v2.0/networks/{made['id']}").status == 204
    assert network(admin, **vlan)["provider:segmentation_id"] == 42  # released with it


def test_an_admins_vni_must_be_free(server: ServerThread) -> None:
    admin = server.client("admin-token")
    given = {"provider:network_type": "vxlan", "provider:segmentation_id": 5000}
    assert network(admin, **given)["provider:segmentation_id"] == 5000
    taken = admin.post("/v2.0/networks", {"network": given})
    assert taken.status == 409 and error_type(taken) == "TunnelIdInUse"
    assert "tunnel ID 5000 is in use" in taken.body["NeutronError"]["message"]
    drawn = network(admin, **{"provider:network_type": "vxlan"})
    assert drawn["provider:segmentation_id"] not in (None, 5000)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"provider:network_type": "flat"}, "provider:physical_network",
         "physical_network required for flat network"),
        ({"provider:network_type": "flat", "provider:physical_network": "p",
          "provider:segmentation_id": 3}, "provider:segmentation_id",
         "segmentation_id prohibited for flat provider network"),
        ({"provider:network_type": "vlan", "provider:physical_network": "p"},
         "provider:segmentation_id",
         "segmentation_id required for VLAN network (1 through 4094)"),
        ({"provider:network_type": "vlan", "provider:physical_network": "p",
          "provider:segmentation_id": 4095}, "provider:segmentation_id",
         "segmentation_id out of range for VLAN network (1 through 4094)"),
        ({"provider:network_type": "vlan", "provider:segmentation_id": 5},
         "provider:physical_network", "physical_network required for vlan network"),
        ({"provider:network_type": "vxlan", "provider:physical_network": "p"},
         "provider:physical_network", "provider:physical_network specified for vxlan network"),
        ({"provider:network_type": "vxlan", "provider:segmentation_id": 16777216},
         "provider:segmentation_id", "'16777216' is not in range 1 through 16777215"),
        ({"provider:segmentation_id": 7}, "provider:network_type", "network_type required"),
        ({"provider:network_type": "geneve"}, "provider:network_type",
         "'geneve' is not in ['flat', 'vlan', 'vxlan']"),
        ({"mtu": 1500}, "mtu", "Requested MTU is too big, maximum is 1450"),
        ({"provider:network_type": "flat", "provider:physical_network": "p", "mtu": 1501},
         "mtu", "Requested MTU is too big, maximum is 1500"),
    ],
)  # fmt: skip
def test_bad_segments_are_refused_naming_the_field(
    admin: ApiClient, fields: dict[str, Any], field: str, reason: str
) -> None:
    before = len(admin.get("/v2.0/networks").body["networks"])
    reply = admin.post("/v2.0/networks", {"network": fields})
    assert reply.status == 400, reply.body
    assert reply.body["NeutronError"]["message"] == f"Invalid input for {field}. Reason: {reason}."
    assert len(admin.get("/v2.0/networks").body["networks"]) == before


def test_a_network_mtu_cannot_grow_past_its_segment(admin: ApiClient) -> None:
    made = network(admin)
    too_big = admin.put(f"/v2.0/networks/{made['id']}", {"network": {"mtu": 1451}})
    assert too_big.status == 400 and "maximum is 1450" in too_big.body["NeutronError"]["message"]
    assert admin.put(f"/v2.0/networks/{made['id']}", {"network": {"mtu": 1400}}).status == 200


def test_vni_ranges_setting_is_checked() -> None:
    assert check({"vni_ranges": "1:10, 20:30"}, "f").vni_ranges == ["1:10", "20:30"]
    assert ServerConfig().vni_ranges == ["1:16777215"]
    for bad, says in [
        (["10:1"], "'10:1' is not MIN:MAX"),
        (["0:5"], "'0:5' is not MIN:MAX"),
        (["1:16777216"], "<= 16777215"),
        ("1:10,5:20", "ranges overlap at 5"),
        ([], "expected MIN:MAX ranges"),
        (["x"], "'x' is not MIN:MAX"),
    ]:
        with pytest.raises(ServerConfigError, match="vni_ranges") as refused:
            check({"vni_ranges": bad}, "server.yaml")
        assert says in str(refused.value)


def test_the_router_document_carries_segments_mtu_and_ha_peers(admin: ApiClient) -> None:
    agents = [register(admin, f"net{i}") for i in range(3)]
    public = network(
        admin,
        **{"router:external": True, "provider:network_type": "flat",
           "provider:physical_network": "public"},
    )["id"]  # fmt: skip
    admin.post("/v2.0/subnets", {"subnet": {"network_id": public, "ip_version": 4,
                                            "cidr": "203.0.113.0/24"}})  # fmt: skip
    body = {"router": {"ha": True, "external_gateway_info": {"network_id": public}}}
    router = admin.post("/v2.0/routers", body).body["router"]["id"]
    tenant, subnet = make_net(admin)
    admin.put(f"/v2.0/routers/{router}/add_router_interface", {"subnet_id": subnet})
    ha_ports = admin.get(
        f"/v2.0/ports?device_id={router}&device_owner=network:router_ha_interface"
    ).body["ports"]
    ha_address = {p["binding:host_id"]: p["fixed_ips"][0]["ip_address"] for p in ha_ports}
    ha_vni = vni(admin, ha_ports[0]["network_id"])
    for agent in agents:
        state = admin.get(f"/hanet/v1/agents/{agent}/state").body
        assert state["schema_version"] == 1
        (doc,) = state["routers"]
        (interface,) = doc["interfaces"]
        assert interface["network_type"] == "vxlan" and interface["mtu"] == 1450
        assert interface["segmentation_id"] == vni(admin, tenant)
        assert interface["physical_network"] is None
        gateway = doc["gateway"]
        assert (gateway["network_type"], gateway["physical_network"]) == ("flat", "public")
        assert gateway["segmentation_id"] is None and gateway["mtu"] == 1500
        ha_port = doc["ha_port"]
        assert (ha_port["network_type"], ha_port["segmentation_id"]) == ("vxlan", ha_vni)
        mine = ha_port["fixed_ips"][0]["ip_address"]
        host = next(h for h, address in ha_address.items() if address == mine)
        assert doc["ha_peers"] == [
            {"host": h, "ip_address": a} for h, a in sorted(ha_address.items()) if h != host
        ]
        assert len(doc["ha_peers"]) == 2


def test_a_legacy_router_has_no_ha_peers(admin: ApiClient) -> None:
    agent = register(admin, "net0")
    admin.post("/v2.0/routers", {"router": {"ha": False}})
    (doc,) = admin.get(f"/hanet/v1/agents/{agent}/state").body["routers"]
    assert doc["ha_peers"] == [] and doc["ha_port"] is None and doc["gateway"] is None


def test_networks_made_before_segments_get_a_vni_when_the_server_starts(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        command.upgrade(alembic_config(engine), "0006")
        with engine.begin() as connection:
            for n, kind, physnet in [(1, None, None), (2, "flat", "public")]:
                connection.execute(
                    text(
                        "INSERT INTO networks (id, project_id, name, description, created_at,"
                        " updated_at, revision_number, admin_state_up, shared, external, mtu,"
                        " network_type, physical_network) VALUES (:id, 'alice', :name, '',"
                        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, TRUE, FALSE, FALSE, 1450,"
                        " :kind, :physnet)"
                    ),
                    {"id": f"00000000-0000-0000-0000-00000000000{n}", "name": f"old{n}",
                     "kind": kind, "physnet": physnet},
                )  # fmt: skip
    finally:
        engine.dispose()
    with small(db_url) as server:
        admin = server.client("admin-token")
        old = admin.get("/v2.0/networks/00000000-0000-0000-0000-000000000001").body["network"]
        assert old["provider:network_type"] == "vxlan"
        assert 100 <= old["provider:segmentation_id"] <= 102
        made = [network(admin)["id"] for _ in range(2)]
        assert sorted([old["provider:segmentation_id"], *(vni(admin, n) for n in made)]) == [
            100,
            101,
            102,
        ]
        flat = {"provider:network_type": "flat", "provider:physical_network": "public"}
        taken = admin.post("/v2.0/networks", {"network": flat})
        assert taken.status == 409 and error_type(taken) == "FlatNetworkInUse"


def test_two_servers_never_hand_out_one_vni_twice(db_url: str) -> None:
    with ExitStack() as stack:
        clients = [
            stack.enter_context(small(db_url, "1:30")).client("admin-token") for _ in range(2)
        ]

        def create(i: int) -> tuple[int, Any]:
            reply = clients[i % 2].post("/v2.0/networks", {"network": {"name": f"n{i}"}})
            if reply.status == 201:
                return 201, reply.body["network"]["provider:segmentation_id"]
            return reply.status, error_type(reply)

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(create, range(40)))
    vnis = [value for status, value in results if status == 201]
    assert sorted(vnis) == list(range(1, 31))
    assert Counter(value for status, value in results if status != 201) == {
        "NoNetworkAvailable": 10
    }
