"""Bodies the JSON decoder or the database cannot take, oversized bodies, clients that hang
up or stall: each answered with Neutron's error body (or the connection closed), never a
500 or a traceback, and nothing stored (issue 8, item 9)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hanet.lab.daemons import wait_until
from hanet.server.api.body import MAX_DEPTH
from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig
from hanet.server.testing import ServerProcess, ServerThread
from tests.unit.server.test_api_core import error_type

CLOSE_BOUND = 30.0  # seconds: only "closed at all" is tested, this bound never decides


def counts(client: ApiClient) -> tuple[int, ...]:
    return tuple(len(client.get(f"/v2.0/{c}").body[c]) for c in ("networks", "subnets", "ports"))


def nested(depth: int) -> bytes:
    """A network body whose name is ``depth`` levels of lists deep (the body's own two
    levels included)."""
    inner = depth - 2
    return b'{"network": {"name": ' + b"[" * inner + b"]" * inner + b"}}"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_deep_nesting_is_refused_naming_the_limit(admin: ApiClient, depth: int) -> None:
    reply = admin.request("POST", "/v2.0/networks", raw=nested(depth))
    assert reply.status == 400, reply.body
    assert error_type(reply) == "HTTPBadRequest"
    assert reply.body["NeutronError"]["message"] == (
        f"Malformed request body: nested deeper than {MAX_DEPTH} levels"
    )
    assert counts(admin) == (0, 0, 0)


def test_nesting_up_to_the_limit_is_accepted(admin: ApiClient) -> None:
    net = admin.post("/v2.0/networks", {"network": {}}).body["network"]["id"]
    profile: dict[str, Any] = {}
    for _ in range(MAX_DEPTH - 3):  # the body, the port and binding:profile are three
        profile = {"x": profile}
    reply = admin.post("/v2.0/ports", {"port": {"network_id": net, "binding:profile": profile}})
    assert reply.status == 201, reply.body
    assert reply.body["port"]["binding:profile"] == profile


# (collection, fields of the body, the field the message must name, the reason)
UNSTORABLE = [
    ("networks", {"name": "a\ud800b"}, "network.name", "\\ud800, a lone surrogate"),
    ("networks", {"name": "a\x00b"}, "network.name", "contains a NUL character"),
    ("networks", {"description": "\udfff"}, "network.description", "a lone surrogate"),
    ("networks", {"description": "nul\x00"}, "network.description", "NUL"),
    ("networks", {"availability_zone_hints": ["az\x00"]},
     "network.availability_zone_hints[0]", "NUL"),
    ("ports", {"network_id": "NET", "binding:profile": {"k": ["ok", "\ud83d"]}},
     "port.binding:profile.k[1]", "a lone surrogate"),
    ("ports", {"network_id": "NET", "binding:profile": {"k\x00": 1}},
     "port.binding:profile.k\\x00", "the key contains a NUL character"),
    ("ports", {"network_id": "NET", "device_owner": "comp\x00ute"}, "port.device_owner", "NUL"),
]  # fmt: skip


@pytest.mark.parametrize(("collection", "fields", "named", "reason"), UNSTORABLE)
def test_strings_a_database_cannot_store_are_refused_naming_the_field(
    admin: ApiClient, collection: str, fields: dict[str, Any], named: str, reason: str
) -> None:
    net = admin.post("/v2.0/networks", {"network": {"name": "base"}}).body["network"]["id"]
    before = counts(admin)
    if fields.get("network_id") == "NET":
        fields = {**fields, "network_id": net}
    reply = admin.post(f"/v2.0/{collection}", {collection[:-1]: fields})
    assert reply.status == 400, reply.body
    message = reply.body["NeutronError"]["message"]
    assert message.startswith(f"Invalid input for {named}. Reason: "), message
    assert reason in message
    assert counts(admin) == before
    # An update is checked the same way.
    changed = admin.put(f"/v2.0/networks/{net}", {"network": {"name": "x\x00"}})
    assert changed.status == 400 and "network.name" in changed.body["NeutronError"]["message"]
    assert admin.get(f"/v2.0/networks/{net}").body["network"]["name"] == "base"


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_numbers_json_does_not_have_are_refused(admin: ApiClient, number: bytes) -> None:
    net = admin.post("/v2.0/networks", {"network": {}}).body["network"]["id"]
    raw = b'{"port": {"network_id": "%s", "binding:profile": {"x": %s}}}' % (net.encode(), number)
    reply = admin.request("POST", "/v2.0/ports", raw=raw)
    assert reply.status == 400, reply.body
    message = reply.body["NeutronError"]["message"]
    assert message.startswith("Invalid input for port.binding:profile.x. Reason: "), message
    assert "is not a finite number" in message
    assert counts(admin) == (1, 0, 0)


@pytest.fixture
def noauth(db_url: str) -> Iterator[ServerThread]:
    with ServerThread(ServerConfig(db=db_url)) as running:
        yield running


def test_a_project_header_that_is_not_utf8_is_refused(noauth: ServerThread) -> None:
    # urllib sends the header as Latin-1: the byte 0xff, which is not UTF-8.
    reply = noauth.client(project="a\xffb").post("/v2.0/networks", {"network": {}})
    assert reply.status == 400, reply.body
    assert reply.body["NeutronError"]["message"].startswith("Invalid input for X-Project-Id.")
    assert noauth.client().get("/v2.0/networks").body["networks"] == []


def test_an_oversized_body_gets_413(admin: ApiClient) -> None:
    reply = admin.request(
        "POST", "/v2.0/networks", raw=b'{"network": {"name": "' + b"x" * (2 << 20) + b'"}}'
    )
    assert reply.status == 413, reply.body
    assert error_type(reply) == "HTTPRequestEntityTooLarge"
    assert "1048576 bytes" in reply.body["NeutronError"]["message"]
    assert counts(admin) == (0, 0, 0)


def address(server: ServerThread | ServerProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def partial_post(length: int = 100) -> bytes:
    """Headers announcing a body of ``length`` bytes, and the first few of them."""
    return (
        b"POST /v2.0/networks HTTP/1.1\r\nHost: hanet\r\nContent-Type: application/json\r\n"
        b'X-Auth-Token: admin-token\r\nContent-Length: %d\r\n\r\n{"network"' % length
    )


def test_a_client_that_hangs_up_mid_request_is_logged_as_that(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with socket.create_connection(address(server)) as sock:
        sock.sendall(partial_post())  # and hangs up, 90 bytes short
    line = "POST /v2.0/networks: the client disconnected mid-request"
    wait_until(
        lambda: any(r.getMessage() == line for r in caplog.records), 10, "the hang-up logged"
    )
    (record,) = [r for r in caplog.records if r.getMessage() == line]
    assert record.levelno == logging.INFO
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert counts(server.client("admin-token")) == (0, 0, 0)


@pytest.fixture
def impatient(tmp_path: Path) -> Iterator[ServerThread]:
    config = ServerConfig(db=f"sqlite:///{tmp_path / 'hanet.db'}", client_timeout=0.5)
    with ServerThread(config) as running:
        yield running


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails if it has not closed within
    CLOSE_BOUND."""
    sock.settimeout(CLOSE_BOUND)
    received = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            pytest.fail(f"the server kept the connection open for {CLOSE_BOUND} s")
        if not chunk:
            return received
        received += chunk


@pytest.mark.parametrize(
    "sent", [b"", b"GET /v2.0/networks HTTP/1.1\r\nHost: han"], ids=["idle", "stalled-header"]
)
def test_a_connection_without_a_whole_header_is_closed(
    impatient: ServerThread, sent: bytes
) -> None:
    with socket.create_connection(address(impatient)) as sock:
        sock.sendall(sent)
        assert read_until_closed(sock) == b""


def test_a_stalled_body_is_answered_408_and_closed(
    impatient: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with socket.create_connection(address(impatient)) as sock:
        sock.sendall(partial_post())
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"type": "HTTPRequestTimeout"' in answer
    assert any(
        r.getMessage() == "POST /v2.0/networks: the client stalled sending its body"
        for r in caplog.records
    )
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert impatient.client().get("/v2.0/networks").body["networks"] == []


def test_the_hanet_server_command_closes_stalled_headers(tmp_path: Path) -> None:
    """The same limit reaches the real command (web.run_app), set from the YAML file."""
    config = ServerConfig(db=f"sqlite:///{tmp_path / 'hanet.db'}", client_timeout=0.5)
    with ServerProcess(config, tmp_path) as server:
        with socket.create_connection(address(server)) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHo")
            assert read_until_closed(sock) == b""
        assert server.client().get("/v2.0/networks").status == 200
