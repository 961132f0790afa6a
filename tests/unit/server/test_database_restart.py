"""A PostgreSQL restart while requests run loses no acknowledged write (issue 4, 'Bad
input'): every 201 the clients saw is still there afterwards."""

from __future__ import annotations

import threading

from hanet.lab.daemons import wait_until
from hanet.server.config import ServerConfig
from hanet.server.postgres import TemporaryPostgres
from hanet.server.testing import ServerThread
from tests.unit.server.conftest import TOKENS


def test_no_acknowledged_write_is_lost_across_a_restart() -> None:
    # A cluster of its own: restarting the session's shared one would disturb other tests.
    with TemporaryPostgres() as postgres:
        config = ServerConfig(db=postgres.database(), auth="token", tokens=TOKENS)
        with ServerThread(config) as server:
            acknowledged: list[str] = []
            refused: list[int] = []
            stop = threading.Event()

            def write(worker: int) -> None:
                client = server.client("admin-token")
                count = 0
                while not stop.is_set():
                    count += 1
                    reply = client.post(
                        "/v2.0/networks", {"network": {"name": f"w{worker}-{count}"}}
                    )
                    if reply.status == 201:
                        acknowledged.append(reply.body["network"]["id"])
                    else:
                        assert reply.status == 503, reply.body  # never a 500
                        refused.append(reply.status)

            writers = [threading.Thread(target=write, args=(i,)) for i in range(3)]
            for writer in writers:
                writer.start()
            wait_until(lambda: len(acknowledged) >= 10, 20, "writes before the restart")
            postgres.restart()
            after = len(acknowledged)
            wait_until(lambda: len(acknowledged) >= after + 10, 30, "writes after the restart")
            stop.set()
            for writer in writers:
                writer.join(30)
            stored = {
                n["id"] for n in server.client("admin-token").get("/v2.0/networks").body["networks"]
            }
    assert acknowledged, "no write went through"
    assert set(acknowledged) <= stored
