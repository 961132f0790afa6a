"""A request body: JSON, nested no deeper than Neutron's bodies ever are, and holding only
strings and numbers a database can store. Checked whole before any handler reads a field, so the
JSON decoder's recursion and the database's text encoding never see what would break them."""

from __future__ import annotations

import json
import math
from typing import Any

from hanet.server.api.errors import BadRequest, InvalidInput

MAX_DEPTH = 32  # a port with fixed_ips is four levels; only free-form dicts go deeper


def decode(raw: bytes) -> Any:
    """The parsed body, or BadRequest / InvalidInput saying what is wrong and where."""
    try:
        body = json.loads(raw)
    except RecursionError:  # the C decoder guards its own recursion: this is too deep
        raise too_deep() from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("Malformed request body: not JSON") from None
    check(body)
    return body


def too_deep() -> BadRequest:
    return BadRequest(f"Malformed request body: nested deeper than {MAX_DEPTH} levels")


def check(body: Any) -> None:
    """Depth and strings, walked with a stack rather than recursion: the body may be as
    deep as the decoder allows."""
    pending: list[tuple[str, Any, int]] = [("", body, 1)]
    while pending:
        path, value, depth = pending.pop()
        if isinstance(value, str):
            check_text(path or "body", value)
            continue
        if isinstance(value, float) and not math.isfinite(value):
            # Python's decoder takes NaN, Infinity and 1e999; JSON has no such numbers, and
            # PostgreSQL's json type refuses them.
            raise InvalidInput(_printable(path or "body"), f"{value} is not a finite number")
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise too_deep()
        if isinstance(value, list):
            pending.extend((f"{path}[{i}]", item, depth + 1) for i, item in enumerate(value))
            continue
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            check_text(child, key, "the key ")
            pending.append((child, item, depth + 1))


def check_text(field: str, value: str, what: str = "") -> None:
    """InvalidInput naming ``field`` unless ``value`` can be stored as text."""
    # NUL: PostgreSQL's text cannot hold it, and Neutron refuses it too. A lone surrogate
    # (JSON lets "\ud800" through) has no UTF-8 form, so no database can store it.
    if "\x00" in value:
        raise InvalidInput(_printable(field), f"{what}contains a NUL character")
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        where = value[error.start]
        raise InvalidInput(
            _printable(field),
            f"{what}holds {ascii(where)[1:-1]}, a lone surrogate, not a character",
        ) from None


def _printable(field: str, limit: int = 80) -> str:
    """A path quoted in a message: a key may itself hold what is refused."""
    text = ascii(field)[1:-1] if not field.isascii() or "\x00" in field else field
    return text if len(text) <= limit else text[:limit] + "..."
