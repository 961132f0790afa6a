"""A real hanet-server on loopback for each test: on a fresh SQLite file, and again on a
fresh database of a real PostgreSQL (Debian's package, started once per session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig, Token
from hanet.server.postgres import TemporaryPostgres, postgres_bin
from hanet.server.testing import ServerThread

TOKENS = {"admin-token": Token("admin-project", "admin"),
          "alice-token": Token("alice", "member"), "bob-token": Token("bob", "member")}  # fmt: skip
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    postgres_bin() is None, reason="PostgreSQL not installed"))]  # fmt: skip


@pytest.fixture(scope="session")
def postgres() -> Iterator[TemporaryPostgres]:
    with TemporaryPostgres() as cluster:
        yield cluster


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hanet.db'}"
    cluster: TemporaryPostgres = request.getfixturevalue("postgres")
    return cluster.database()


@pytest.fixture
def server(db_url: str) -> Iterator[ServerThread]:
    config = ServerConfig(db=db_url, auth="token", tokens=TOKENS)
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


DOWN_TIME = 600.0  # longer than any test: an agent dies when the test says (ServerThread.silence)


@pytest.fixture
def fast_server(tmp_path):  # type: ignore[no-untyped-def]
    """A server that looks for dead agents five times a second. Its agents need no
    heartbeats: registered, they live for DOWN_TIME, so a loaded machine's slow threads
    kill none by accident."""
    config = ServerConfig(
        db=f"sqlite:///{tmp_path / 'hanet.db'}",
        auth="token",
        tokens=TOKENS,
        report_interval=0.2,
        agent_down_time=DOWN_TIME,
    )
    with ServerThread(config) as running:
        yield running
