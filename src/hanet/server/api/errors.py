"""Neutron's error types, status codes and body: {"NeutronError": {type, message, detail}}."""

from __future__ import annotations

from typing import Any


class NeutronError(Exception):
    status = 500
    kind = "NeutronError"

    def __init__(self, message: str, kind: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message, self.detail = message, detail
        if kind is not None:
            self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"NeutronError": {"type": self.kind, "message": self.message, "detail": self.detail}}


class BadRequest(NeutronError):
    status, kind = 400, "HTTPBadRequest"


class InvalidInput(BadRequest):
    """A field that fails validation; the message names it, as Neutron's does."""

    kind = "HTTPBadRequest"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Invalid input for {field}. Reason: {reason}.")
        self.field = field


class NotAuthorized(NeutronError):
    status, kind = 403, "PolicyNotAuthorized"


class NotFound(NeutronError):
    status, kind = 404, "NotFound"


class Conflict(NeutronError):
    status, kind = 409, "Conflict"


class ServiceUnavailable(NeutronError):
    status, kind = 503, "ServiceUnavailable"


def not_found(resource: str, resource_id: str) -> NotFound:
    """NetworkNotFound, SubnetNotFound, ...: Neutron's type and message for a missing id."""
    name = "".join(part.capitalize() for part in resource.split("_"))
    label = resource.replace("_", " ").capitalize()
    return NotFound(f"{label} {resource_id} could not be found.", f"{name}NotFound")
