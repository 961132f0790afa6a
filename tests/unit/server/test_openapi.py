"""The published OpenAPI description: served, and true to what the server accepts."""

from __future__ import annotations

from hanet.server.client import ApiClient


def test_openapi_describes_every_collection_and_its_rules(admin: ApiClient) -> None:
    spec = admin.get("/openapi.json").body
    assert spec["openapi"].startswith("3.")
    for collection in ("networks", "subnets", "ports", "routers", "agents"):
        assert f"/v2.0/{collection}" in spec["paths"]
        assert f"/v2.0/{collection}/{{id}}" in spec["paths"]
    assert "post" not in spec["paths"]["/v2.0/agents"]  # agents register, not POST
    subnet = spec["paths"]["/v2.0/subnets"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["properties"]["subnet"]
    assert set(subnet["required"]) == {"network_id", "ip_version", "cidr"}
    assert subnet["additionalProperties"] is False
    assert subnet["properties"]["ip_version"] == {"enum": [4, 6]}
    assert subnet["properties"]["name"] == {"type": "string", "maxLength": 255}
    assert "/v2.0/routers/{id}/add_router_interface" in spec["paths"]
