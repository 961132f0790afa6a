"""Field converters: raw JSON in, a clean value out, or InvalidInput naming the field.

Pure functions, so the API's bad-input behaviour is fuzzed without a server."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable
from typing import Any

from hanet.server.api.errors import InvalidInput

Converter = Callable[[str, Any], Any]

MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


def described(schema: dict[str, Any]) -> Callable[[Converter], Converter]:
    """Attach the JSON schema of what a converter accepts (for the OpenAPI description)."""

    def attach(convert: Converter) -> Converter:
        convert.schema = schema  # type: ignore[attr-defined]
        return convert

    return attach


def schema_of(convert: Converter) -> dict[str, Any]:
    return getattr(convert, "schema", {})


def string(max_length: int) -> Converter:
    @described({"type": "string", "maxLength": max_length})
    def convert(field: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidInput(field, f"'{short(value)}' is not a valid string")
        if len(value) > max_length:
            raise InvalidInput(field, f"'{short(value)}' exceeds maximum length of {max_length}")
        return value

    return convert


def optional(inner: Converter) -> Converter:
    schema = {**schema_of(inner), "nullable": True}
    if "enum" in schema:  # OpenAPI 3.0.3: nullable does not add null to an enum
        schema["enum"] = [*schema["enum"], None]

    @described(schema)
    def convert(field: str, value: Any) -> Any:
        return None if value is None else inner(field, value)

    return convert


def or_empty(inner: Converter) -> Converter:
    """``inner``, or an empty object, which means None (Neutron's dict_or_nodata)."""

    @described({"anyOf": [schema_of(inner), {"type": "object", "maxProperties": 0}]})
    def convert(field: str, value: Any) -> Any:
        return None if value == {} else inner(field, value)

    return convert


# What convert_to_boolean takes, described exactly, so that a client (or a fuzzer) reading
# /openapi.json knows that 0, 1 and "True" are booleans here too.
BOOLEAN_SCHEMA = {
    "anyOf": [
        {"type": "boolean"},
        {"type": "integer", "enum": [0, 1]},
        {"type": "string", "pattern": "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0)$"},
    ]
}


@described(BOOLEAN_SCHEMA)
def boolean(field: str, value: Any) -> bool:
    # Neutron's convert_to_boolean also takes the strings the CLI sends.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidInput(field, f"'{short(value)}' cannot be converted to boolean")


DECIMAL = re.compile(r"[+-]?[0-9]+")


def integer(low: int, high: int) -> Converter:
    # Neutron's convert_to_int takes the strings the CLI sends too: plain decimals only
    # here (Python's int() would also take "1_0" and other digits), described as such.
    string = {"type": "string", "pattern": f"^{DECIMAL.pattern}$"}

    @described({"anyOf": [{"type": "integer", "minimum": low, "maximum": high}, string]})
    def convert(field: str, value: Any) -> int:
        if isinstance(value, str) and not DECIMAL.fullmatch(value):
            raise InvalidInput(field, f"'{short(value)}' is not an integer")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise InvalidInput(field, f"'{short(value)}' is not an integer")
        try:
            number = int(value)
        except ValueError:
            raise InvalidInput(field, f"'{short(value)}' is not an integer") from None
        if not low <= number <= high:
            raise InvalidInput(field, f"'{number}' is not in range {low} through {high}")
        return number

    return convert


@described({"type": "string", "format": "uuid"})
def uuid_string(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"'{short(value)}' is not a valid UUID")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidInput(field, f"'{short(value)}' is not a valid UUID") from None


def one_of(*choices: Any) -> Converter:
    @described({"enum": list(choices)})
    def convert(field: str, value: Any) -> Any:
        if value not in choices:
            raise InvalidInput(field, f"'{short(value)}' is not in {list(choices)}")
        return value

    return convert


@described({"type": "string", "format": "ip-address"})
def ip_address(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, f"'{short(value)}' is not a valid IP address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidInput(field, f"'{short(value)}' is not a valid IP address") from None


@described({"type": "string", "format": "cidr"})
def cidr(field: str, value: Any) -> str:
    if not isinstance(value, str) or "/" not in value:
        raise InvalidInput(field, f"'{short(value)}' is not a valid IP subnet")
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise InvalidInput(field, f"'{short(value)}' is not a valid IP subnet") from None
    return str(network)


@described({"type": "string", "format": "mac-address"})
def mac_address(field: str, value: Any) -> str:
    if not isinstance(value, str) or not MAC.match(value.lower()):
        raise InvalidInput(field, f"'{short(value)}' is not a valid MAC address")
    if int(value[:2], 16) & 1:
        raise InvalidInput(field, f"'{value}' is a multicast MAC address")
    return value.lower()


def list_of(inner: Converter, max_items: int = 1000) -> Converter:
    @described({"type": "array", "items": schema_of(inner), "maxItems": max_items})
    def convert(field: str, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise InvalidInput(field, f"'{short(value)}' is not a list")
        if len(value) > max_items:
            raise InvalidInput(field, f"more than {max_items} items")
        return [inner(field, item) for item in value]

    return convert


def mapping(keys: dict[str, Converter], required: tuple[str, ...] = ()) -> Converter:
    """A JSON object with known keys only, each converted."""

    @described(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: schema_of(c) for k, c in keys.items()},
            "required": list(required),
        }
    )
    def convert(field: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidInput(field, f"'{short(value)}' is not a dictionary")
        unknown = sorted(set(value) - set(keys))
        if unknown:
            raise InvalidInput(field, f"unexpected keys supplied: {', '.join(unknown)}")
        missing = [k for k in required if k not in value]
        if missing:
            raise InvalidInput(field, f"'{missing[0]}' is required")
        return {k: keys[k](f"{field}.{k}", v) for k, v in value.items()}

    return convert


@described({"type": "object"})
def free_dict(field: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(field, f"'{short(value)}' is not a dictionary")
    return value


def short(value: Any, limit: int = 60) -> str:
    """A value quoted in a message: long input is cut, so an error body stays small."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."
