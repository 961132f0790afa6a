"""A real hanet-server on loopback for each test, on a fresh SQLite file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hanet.server.config import ServerConfig, Token
from hanet.server.testing import ApiClient, ServerThread

TOKENS = {"admin-token": Token("admin-project", "admin"),
          "alice-token": Token("alice", "member"), "bob-token": Token("bob", "member")}  # fmt: skip


@pytest.fixture
def server(tmp_path) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    config = ServerConfig(db=f"sqlite:///{tmp_path / 'hanet.db'}", auth="token", tokens=TOKENS)
    with ServerThread(config) as running:
        yield running


@pytest.fixture
def admin(server: ServerThread) -> ApiClient:
    return server.client("admin-token")


@pytest.fixture
def alice(server: ServerThread) -> ApiClient:
    return server.client("alice-token")


@pytest.fixture
def bob(server: ServerThread) -> ApiClient:
    return server.client("bob-token")
