"""The metadata proxy's haproxy.cfg (hanet.agent.metadata) and the lab metadata service's
answers (hanet.lab.metadata_service), without a network."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hanet.agent.metadata import MetadataProxy, MetadataProxyError, Timeouts, config
from hanet.lab.metadata_service import InstancesError, make_app, parse_instances

ROUTER = "0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011"
GOLDEN = f"""\
# metadata proxy of router {ROUTER}, written by hanet-agent
global
    pidfile /run/lab/n1/metadata/{ROUTER}.pid
    maxconn 1024

defaults
    mode http
    option http-server-close
    option forwardfor
    retries 3
    timeout http-request 30s
    timeout connect 30s
    timeout client 32s
    timeout server 32s
    timeout http-keep-alive 30s

listen metadata
    bind 169.254.169.254:80
    http-request del-header X-Forwarded-For
    http-request del-header X-Neutron-Network-ID
    http-request del-header X-Neutron-Router-ID
    http-request set-header X-Neutron-Router-ID {ROUTER}
    server metadata /run/lab/n1/metadata.sock
"""


def proxy(**changes: object) -> MetadataProxy:
    base = MetadataProxy(ROUTER, "/run/lab/n1/metadata.sock", f"/run/lab/n1/metadata/{ROUTER}.pid")
    return replace(base, **changes)  # type: ignore[arg-type]


def test_golden_config() -> None:
    assert config(proxy()) == GOLDEN


def test_bind_and_timeouts_are_settable() -> None:
    text = config(proxy(bind_address="fd00::1", bind_port=9697, timeouts=Timeouts(client=5)))
    assert "    bind [fd00::1]:9697\n" in text
    assert "    timeout client 5s\n" in text
    assert "    timeout server 32s\n" in text


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy (make apt)")
@pytest.mark.parametrize("changes", [{}, {"bind_address": "127.0.0.1", "bind_port": 8080}])
def test_haproxy_accepts_it(tmp_path: Path, changes: dict[str, object]) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(config(proxy(**changes)))
    result = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"router_id": ""}, "router '': router_id: must be 1-64 letters"),
        ({"router_id": "r1\n    server evil 1.2.3.4:80"}, "router_id: must be 1-64"),
        ({"router_id": "a b"}, "router a b: router_id"),
        ({"service_socket": "metadata.sock"}, f"router {ROUTER}: service_socket: "),
        ({"service_socket": "/run/x y.sock"}, "service_socket: '/run/x y.sock' holds a blank"),
        ({"service_socket": "/" + "s" * 107}, "service_socket: .* longer than a unix socket"),
        ({"pid_file": ""}, "pid_file: must be a path"),
        ({"pid_file": "/run/a#b"}, "pid_file: '/run/a#b' holds"),
        ({"bind_address": "169.254.169.254:80"}, "bind_address: '169.254.169.254:80' is not"),
        ({"bind_port": 0}, "bind_port: must be a whole number 1..65535, not 0"),
        ({"bind_port": True}, "bind_port: must be a whole number"),
        ({"max_connections": -1}, "max_connections: must be"),
        ({"timeouts": Timeouts(connect=0)}, "timeouts.connect: must be a whole number"),
    ],
)
def test_bad_settings_name_the_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(MetadataProxyError, match=message):
        config(proxy(**changes))


INSTANCES = [
    {"router_id": "r1", "address": "10.0.0.5", "uuid": "u-5", "name": "vm5"},
    {"router_id": "r2", "address": "10.0.0.5", "uuid": "u-other", "name": "other"},
]


def ask(path: str, headers: dict[str, str]) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        app = make_app(parse_instances(INSTANCES))
        async with TestClient(TestServer(app)) as client:
            response = await client.get(path, headers=headers)
            return response.status, await response.text()

    return asyncio.run(go())


def test_service_finds_the_instance_by_router_and_address() -> None:
    status, body = ask(
        "/openstack/latest/meta_data.json",
        {"X-Neutron-Router-ID": "r1", "X-Forwarded-For": "10.0.0.5"},
    )
    assert status == 200 and '"uuid": "u-5"' in body
    status, body = ask(
        "/latest/meta-data/instance-id",
        {"X-Neutron-Router-ID": "r2", "X-Forwarded-For": "10.0.0.5"},
    )
    assert (status, body) == (200, "u-other")
    status, body = ask(
        "/latest/meta-data/", {"X-Neutron-Router-ID": "r1", "X-Forwarded-For": "10.0.0.5"}
    )
    assert status == 200 and "instance-id\n" in body and "placement/" in body
    status, body = ask(
        "/latest/meta-data/placement", {"X-Neutron-Router-ID": "r1", "X-Forwarded-For": "10.0.0.5"}
    )
    assert (status, body) == (200, "availability-zone")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        ({"X-Forwarded-For": "10.0.0.5"}, 400),
        ({"X-Neutron-Router-ID": "r1"}, 400),
        ({"X-Neutron-Router-ID": "r1", "X-Forwarded-For": "vm5"}, 400),
        ({"X-Neutron-Router-ID": "r1", "X-Forwarded-For": "10.0.0.6"}, 404),
        ({"X-Neutron-Router-ID": "r3", "X-Forwarded-For": "10.0.0.5"}, 404),
    ],
)
def test_service_refuses_requests_not_from_a_proxy(headers: dict[str, str], status: int) -> None:
    assert ask("/openstack/latest/meta_data.json", headers)[0] == status


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({}, "instances: must be a list"),
        ([{"router_id": "r1", "address": "10.0.0.5", "uuid": "u"}], r"instances\[0\].name"),
        ([{"router_id": "r1", "address": "ten", "uuid": "u", "name": "n"}], "not an IP"),
        (INSTANCES + INSTANCES[:1], r"instances\[2\]: router r1 address 10.0.0.5 is given twice"),
    ],
)
def test_bad_instances_name_the_entry(entries: object, message: str) -> None:
    with pytest.raises(InstancesError, match=message):
        parse_instances(entries)
