"""An OpenAPI 3 description of what hanet-server serves, built from the same attribute
tables that validate requests, so that the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from hanet.server.api import attributes
from hanet.server.api.validate import schema_of

ERROR = {"$ref": "#/components/schemas/NeutronError"}


def _body(spec: dict[str, attributes.Attr], creating: bool) -> dict[str, Any]:
    properties = {
        name: schema_of(attr.convert)
        for name, attr in spec.items()
        if (attr.post if creating else attr.put)
    }
    required = [
        name for name, attr in spec.items() if creating and attr.default is attributes.REQUIRED
    ]
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
    if required:
        schema["required"] = required
    return schema


def _responses(ok: str, body: dict[str, Any] | None) -> dict[str, Any]:
    responses: dict[str, Any] = {ok: {"description": "done"}}
    if body is not None:
        responses[ok]["content"] = {"application/json": {"schema": body}}
    for status in ("400", "401", "403", "404", "408", "409", "413", "503"):
        responses[status] = {
            "description": "NeutronError",
            "content": {"application/json": {"schema": ERROR}},
        }
    return responses


def _wrapped_body(name: str, spec: dict[str, attributes.Attr], creating: bool) -> dict[str, Any]:
    """Neutron's request body: the resource's fields under its singular name."""
    return {
        "type": "object",
        "required": [name],
        "additionalProperties": False,
        "properties": {name: _body(spec, creating)},
    }


def _write(summary: str, body: dict[str, Any], ok: str, answer: dict[str, Any]) -> dict[str, Any]:
    """An operation that takes a JSON body (required: an empty request is refused)."""
    return {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": _responses(ok, answer),
    }


def describe(resources: dict[str, Any]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for collection, resource in resources.items():
        name, spec = resource.singular, resource.spec
        wrapped = {"type": "object", "properties": {name: {"type": "object"}}}
        listed = {"type": "object", "properties": {collection: {"type": "array"}}}
        item_path = {
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "get": {"summary": f"Show a {name}", "responses": _responses("200", wrapped)},
            "delete": {"summary": f"Delete a {name}", "responses": _responses("204", None)},
        }
        item_path["put"] = _write(
            f"Update a {name}", _wrapped_body(name, spec, creating=False), "200", wrapped
        )
        collection_path: dict[str, Any] = {
            "get": {"summary": f"List {collection}", "responses": _responses("200", listed)}
        }
        if resource.creatable:
            collection_path["post"] = _write(
                f"Create a {name}", _wrapped_body(name, spec, creating=True), "201", wrapped
            )
        paths[f"/v2.0/{collection}"] = collection_path
        paths[f"/v2.0/{collection}/{{id}}"] = item_path
    interface = {
        "type": "object",
        "additionalProperties": False,
        "maxProperties": 1,
        "minProperties": 1,
        "properties": {"subnet_id": {"type": "string"}, "port_id": {"type": "string"}},
    }
    for action in ("add_router_interface", "remove_router_interface"):
        paths[f"/v2.0/routers/{{id}}/{action}"] = {
            "parameters": [
                {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "put": _write(action.replace("_", " "), interface, "200", {"type": "object"}),
        }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "hanet-server",
            "version": "2.0",
            "description": "The Neutron v2.0 API subset hanet serves, and the agents' "
            "protocol under /hanet/v1 (docs/server.md).",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "NeutronError": {
                    "type": "object",
                    "required": ["NeutronError"],
                    "properties": {
                        "NeutronError": {
                            "type": "object",
                            "required": ["type", "message", "detail"],
                            "properties": {
                                "type": {"type": "string"},
                                "message": {"type": "string"},
                                "detail": {"type": "string"},
                            },
                        }
                    },
                }
            }
        },
    }
