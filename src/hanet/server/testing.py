"""hanet-server in a background thread on a free loopback port, and a small JSON client:
for tests and benchmarks that talk HTTP to a real server."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from sqlalchemy import update

from hanet.server.agent_sync import Store
from hanet.server.api.app import make_app, server_options
from hanet.server.api.l3_routes import LONG_POLLS
from hanet.server.client import ApiClient
from hanet.server.config import ServerConfig
from hanet.server.database import make_engine, upgrade
from hanet.server.models import Agent, utcnow
from hanet.server.segments import Segments


def store_for(engine: Any, config: ServerConfig) -> Store:
    store = Store(
        engine,
        l3_ha=config.l3_ha,
        max_l3_agents=config.max_l3_agents_per_router,
        agent_down_time=config.agent_down_time,
    )
    store.dhcp_agents_per_network = config.dhcp_agents_per_network
    store.agent_gone_time = config.agent_gone_time
    store.report_interval = config.report_interval
    store.segments = Segments(config.vni_ranges, config.global_physnet_mtu)
    store.segments.adopt(store.writes)
    return store


class ServerThread:
    """``with ServerThread(config) as server: server.url``; stopped on exit."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None
        self._failure: BaseException | None = None

    def __enter__(self) -> ServerThread:
        engine = make_engine(self.config.db)
        upgrade(engine)
        self.store = store_for(engine, self.config)
        self._thread.start()
        if not self._ready.wait(30) or self._failure is not None:
            raise RuntimeError(f"hanet-server did not start: {self._failure}")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # reported to __enter__
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = make_app(self.store, self.config)
        self._runner = web.AppRunner(app, **server_options(self.config))
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(120)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()
        self.store.dispose()

    def client(self, token: str | None = None, project: str | None = None) -> ApiClient:
        return ApiClient(self.url, token, project)

    def silence(self, agent_id: str, seconds: float) -> None:
        """Make the agent's last heartbeat ``seconds`` old, as if it had been silent that
        long: a test decides when an agent dies, whatever a loaded machine's threads do."""
        with self.store.writes.begin() as session:
            session.execute(
                update(Agent)
                .where(Agent.id == agent_id)
                .values(heartbeat_at=utcnow() - timedelta(seconds=seconds))
            )

    def waiting_polls(self) -> int:
        """How many agents' long-polls are holding, waiting for a change."""
        assert self._runner is not None
        return self._runner.app[LONG_POLLS].waiting


class ServerProcess:
    """The real ``hanet-server`` command in a child process on a free loopback port, as a
    user runs it (``with ServerProcess(config, workdir) as server: server.url``): clients
    in the caller's process then do not share the server's interpreter."""

    def __init__(self, config: ServerConfig, workdir: Path) -> None:
        self.workdir = workdir
        with socket.socket() as probe:  # a free port; the server binds it a moment later
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.config = replace(config, bind=[f"127.0.0.1:{port}"])
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        settings = asdict(self.config)
        settings["tokens"] = {k: asdict(v) for k, v in self.config.tokens.items()}
        path = self.workdir / "hanet-server.yaml"
        path.write_text(yaml.safe_dump(settings))
        log = (self.workdir / "hanet-server.log").open("wb")
        argv = [sys.executable, "-m", "hanet.server.main", "--config", str(path)]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hanet-server exited: {self.log()}")
            try:
                socket.create_connection(self.config.host_port, timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"hanet-server did not listen within 60 s: {self.log()}")

    def log(self) -> str:
        return (self.workdir / "hanet-server.log").read_text(errors="replace")[-2000:]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self, token: str | None = None, project: str | None = None) -> ApiClient:
        return ApiClient(self.url, token, project)
