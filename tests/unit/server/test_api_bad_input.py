"""Bad bodies: every one gets a 4xx with Neutron's error body naming the problem, never a
500, and nothing is stored (issue 4, 'Bad input')."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hanet.server.api import attributes, body
from hanet.server.api.errors import NeutronError
from hanet.server.client import ApiClient

# Any code point, lone surrogates included; and, as often as not, text holding one of
# the characters no database stores.
CHARACTERS = st.characters(exclude_categories=())


def texts(max_size: int) -> st.SearchStrategy[str]:
    half = st.text(CHARACTERS, max_size=max_size // 2)
    unstorable = st.tuples(half, st.sampled_from("\x00\ud800\udfff"), half).map("".join)
    return st.text(CHARACTERS, max_size=max_size) | unstorable


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | texts(300),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts(20),
                                                                inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
SPECS = {"network": attributes.NETWORK, "subnet": attributes.SUBNET, "port": attributes.PORT}


def field_values(spec: dict[str, attributes.Attr]) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies with the resource's own keys (and some strangers), values of any type."""
    keys = st.sampled_from([*spec, "bogus", "id", "status"])
    return st.dictionaries(keys, JSON, max_size=6)


@pytest.mark.parametrize("resource", list(SPECS))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_parse_raises_only_neutron_errors(resource: str, data: st.DataObject) -> None:
    spec = SPECS[resource]
    body = data.draw(st.one_of(JSON, field_values(spec).map(lambda f: {resource: f})))
    for creating in (True, False):
        try:
            attributes.parse(resource, spec, body, creating=creating, is_admin=False)
        except NeutronError as error:
            assert 400 <= error.status < 500 and error.message


def storable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return "\x00" not in value
    if isinstance(value, list):
        return all(storable(v) for v in value)
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    return True


@settings(max_examples=300, deadline=None)
@given(raw=JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200))
def test_a_decoded_body_holds_only_storable_strings(raw: bytes) -> None:
    try:
        decoded = body.decode(raw)
    except NeutronError as error:
        assert error.status == 400 and error.message
    else:
        assert storable(decoded)


BAD_BODIES = [
    ("networks", {"network": {"mtu": "big"}}, "mtu"),
    ("networks", {"network": {"name": "x" * 300}}, "name"),
    ("networks", {"network": {"colour": "blue"}}, "colour"),
    ("networks", {"network": {"admin_state_up": "perhaps"}}, "admin_state_up"),
    ("networks", {"net": {}}, "network"),
    ("networks", [], "network"),
    ("subnets", {"subnet": {"ip_version": 4, "cidr": "10.0.0.0/24"}}, "network_id"),
    ("subnets", {"subnet": {"network_id": "NET", "ip_version": 4, "cidr": "10.0.0.0/33"}},
     "cidr"),
    ("subnets", {"subnet": {"network_id": "NET", "ip_version": 4, "cidr": "10.0.0.1/24"}},
     "cidr"),
    ("subnets", {"subnet": {"network_id": "NET", "ip_version": 5, "cidr": "10.0.0.0/24"}},
     "ip_version"),
    ("subnets", {"subnet": {"network_id": "NET", "ip_version": 6, "cidr": "10.0.0.0/24"}},
     "cidr"),
    ("subnets", {"subnet": {"network_id": "NET", "ip_version": 4, "cidr": "10.0.0.0/24",
                            "allocation_pools": [{"start": "10.0.0.9", "end": "10.0.0.2"}]}},
     "allocation_pools"),
    ("subnets", {"subnet": {"network_id": "NET", "ip_version": 4, "cidr": "10.0.0.0/24",
                            "gateway_ip": "10.9.9.9"}}, "gateway_ip"),
    ("ports", {"port": {"network_id": "NET", "fixed_ips": [{"ip_address": "banana"}]}},
     "fixed_ips"),
    ("ports", {"port": {"network_id": "not-a-uuid"}}, "network_id"),
]  # fmt: skip


def counts(client: ApiClient) -> tuple[int, ...]:
    return tuple(len(client.get(f"/v2.0/{c}").body[c]) for c in ("networks", "subnets", "ports"))


@pytest.mark.parametrize(("collection", "body", "named"), BAD_BODIES)
def test_bad_bodies_get_a_4xx_naming_the_field_and_store_nothing(
    admin: ApiClient, collection: str, body: Any, named: str
) -> None:
    net = admin.post("/v2.0/networks", {"network": {"name": "base"}}).body["network"]
    before = counts(admin)
    if isinstance(body, dict):
        for fields in body.values():
            if isinstance(fields, dict) and fields.get("network_id") == "NET":
                fields["network_id"] = net["id"]
    reply = admin.post(f"/v2.0/{collection}", body)
    assert 400 <= reply.status < 500, reply.body
    assert named in reply.body["NeutronError"]["message"]
    assert counts(admin) == before


def test_not_json_and_huge_bodies_are_refused(admin: ApiClient) -> None:
    reply = admin.request("POST", "/v2.0/networks", raw=b"{not json")
    assert reply.status == 400 and "JSON" in reply.body["NeutronError"]["message"]
    reply = admin.request("POST", "/v2.0/networks", raw=b'{"network": {"name": "' +
                          b"x" * (2 << 20) + b'"}}')  # fmt: skip
    assert reply.status == 413
    assert counts(admin) == (0, 0, 0)


def test_unknown_paths_and_methods(admin: ApiClient) -> None:
    assert admin.get("/v2.0/nothing").status == 404
    assert admin.get("/v2.0/networks/not-a-uuid").body["NeutronError"]["type"] == \
        "NetworkNotFound"  # fmt: skip
    assert admin.request("PATCH", "/v2.0/networks").status == 405


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=field_values(attributes.NETWORK))
def test_random_network_bodies_never_break_the_server(admin: ApiClient, fields: dict) -> None:  # type: ignore[type-arg]
    reply = admin.post("/v2.0/networks", {"network": fields})
    assert reply.status != 500 and reply.status < 500, reply.body
    if reply.status == 201:
        assert admin.delete(f"/v2.0/networks/{reply.body['network']['id']}").status == 204
    else:
        assert set(reply.body) == {"NeutronError"}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=st.fixed_dictionaries({}, optional={k: texts(254) for k in ("name", "description")}))
def test_any_text_is_stored_as_sent_or_refused_naming_the_field(
    admin: ApiClient, fields: dict[str, str]
) -> None:
    reply = admin.post("/v2.0/networks", {"network": fields})
    if all(storable(v) for v in fields.values()):
        assert reply.status == 201, reply.body
        shown = admin.get(f"/v2.0/networks/{reply.body['network']['id']}").body["network"]
        assert {k: shown[k] for k in fields} == fields
        assert admin.delete(f"/v2.0/networks/{shown['id']}").status == 204
    else:
        assert reply.status == 400, reply.body
        message = reply.body["NeutronError"]["message"]
        bad = [k for k, v in fields.items() if not storable(v)]
        assert any(message.startswith(f"Invalid input for network.{k}. ") for k in bad), message
