"""Prometheus metrics, served from the daemon's own event loop (no extra thread).

The values are read from the daemon's status at scrape time, so nothing on the packet path
pays for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

STATES = {"INITIALIZE": 0, "BACKUP": 1, "MASTER": 2, "FAULT": 3}


class StatusCollector(Collector):
    def __init__(self, status: Callable[[], dict[str, Any]]) -> None:
        self.status = status

    def collect(self) -> Iterator[Any]:
        status = self.status()
        state = GaugeMetricFamily(
            "hanet_vrrp_state", "0 INITIALIZE, 1 BACKUP, 2 MASTER, 3 FAULT", labels=["instance"]
        )
        priority = GaugeMetricFamily(
            "hanet_vrrp_priority", "Effective priority", labels=["instance"]
        )
        sent = CounterMetricFamily("hanet_vrrp_adverts_sent", "Adverts sent", labels=["instance"])
        received = CounterMetricFamily(
            "hanet_vrrp_adverts_received", "Adverts accepted", labels=["instance"]
        )
        transitions = CounterMetricFamily(
            "hanet_vrrp_transitions", "State changes", labels=["instance"]
        )
        drops = CounterMetricFamily(
            "hanet_vrrp_drops",
            "Received packets dropped, by reason; those the kernel dropped (its receive buffer"
            " full: receive_buffer_overflow) and those of no instance (vrid_not_ours, malformed)"
            " are counted on every instance of the interface",
            labels=["instance", "reason"],
        )
        errors = CounterMetricFamily(
            "hanet_vrrp_errors", "Failed sends and netlink calls", labels=["instance", "kind"]
        )
        for entry in status.get("instances", []):
            name = entry["name"]
            state.add_metric([name], STATES.get(entry["state"], -1))
            priority.add_metric([name], entry["priority"])
            sent.add_metric([name], entry["adverts_sent"])
            received.add_metric([name], entry["adverts_received"])
            transitions.add_metric([name], entry["transitions"])
            for reason, count in entry["drops"].items():
                drops.add_metric([name, reason], count)
            for kind, count in entry["errors"].items():
                errors.add_metric([name, kind], count)
        scripts = GaugeMetricFamily(
            "hanet_vrrp_script_ok", "1 if the vrrp_script passes", labels=["script"]
        )
        for script in status.get("scripts", []):
            scripts.add_metric([script["name"]], 1 if script["state"] == "OK" else 0)
        yield from (state, priority, sent, received, transitions, drops, errors, scripts)


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class MetricsServer:
    def __init__(self, listen: str, status: Callable[[], dict[str, Any]]) -> None:
        self.host, self.port = parse_listen(listen)
        self.registry = CollectorRegistry()
        self.registry.register(StatusCollector(status))
        self.server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 1)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass  # headers: not needed
            parts = request.decode(errors="replace").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1].split("?")[0] == "/metrics":
                body = generate_latest(self.registry)
                head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
            else:
                body, head = (
                    b"not found\n",
                    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n",
                )
            writer.write(
                head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
