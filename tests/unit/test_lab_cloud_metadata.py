"""The lab metadata service asking hanet-server who the instance is (``--server``), as
Neutron's metadata agent asks Neutron: router -> its networks -> the port with the address."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hanet.lab.metadata_service import ServerFinder, main, make_app
from hanet.server.config import ServerConfig
from hanet.server.testing import ServerThread


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two routers, each on its own network; a VM on each with the same address."""
    db = tmp_path_factory.mktemp("metadata") / "hanet.db"
    with ServerThread(ServerConfig(db=f"sqlite:///{db}")) as server:
        api = server.client()
        made: dict[str, Any] = {"url": server.url}
        for side in ("a", "b"):
            network = api.post("/v2.0/networks", {"network": {"name": f"net-{side}"}})
            network_id = network.body["network"]["id"]
            subnet = api.post("/v2.0/subnets", {"subnet": {
                "network_id": network_id, "ip_version": 4, "cidr": "10.9.0.0/24"}})  # fmt: skip
            router = api.post("/v2.0/routers", {"router": {"name": f"r-{side}"}})
            router_id = router.body["router"]["id"]
            added = api.put(f"/v2.0/routers/{router_id}/add_router_interface",
                            {"subnet_id": subnet.body["subnet"]["id"]})  # fmt: skip
            assert added.status == 200, added.body
            device = str(uuid.uuid4())
            port = api.post("/v2.0/ports", {"port": {
                "network_id": network_id, "name": f"vm-{side}", "device_id": device,
                "device_owner": "compute:nova", "binding:host_id": "cmp1",
                "fixed_ips": [{"ip_address": "10.9.0.5"}]}})  # fmt: skip
            assert port.status == 201, port.body
            made[side] = {"router": router_id, "device": device}
        yield made


def ask(url: str, headers: dict[str, str], path: str = "/openstack/latest/meta_data.json"):  # type: ignore[no-untyped-def]
    async def go() -> tuple[int, Any]:
        finder = ServerFinder(url)
        try:
            async with TestClient(TestServer(make_app(finder))) as client:
                answer = await client.get(path, headers=headers)
                body = await (answer.json() if answer.status == 200 and path.endswith(".json")
                              else answer.text())  # fmt: skip
                return answer.status, body
        finally:
            await finder.close()

    return asyncio.run(go())


def headers(router: str, address: str) -> dict[str, str]:
    return {"X-Neutron-Router-ID": router, "X-Forwarded-For": address}


@pytest.mark.parametrize("side", ["a", "b"])
def test_the_instance_is_found_through_the_routers_networks(
    cloud: dict[str, Any], side: str
) -> None:
    status, body = ask(cloud["url"], headers(cloud[side]["router"], "10.9.0.5"))
    assert status == 200, body
    assert body["uuid"] == cloud[side]["device"]
    assert (body["name"], body["hostname"]) == (f"vm-{side}", f"vm-{side}")
    status, text = ask(cloud["url"], headers(cloud[side]["router"], "10.9.0.5"),
                       "/latest/meta-data/instance-id")  # fmt: skip
    assert (status, text) == (200, cloud[side]["device"])


@pytest.mark.parametrize(
    "address",
    [
        "10.9.0.77",  # nobody's
        "10.9.0.1",  # the router's own interface
    ],
)
def test_an_address_without_an_instance_is_404(cloud: dict[str, Any], address: str) -> None:
    status, text = ask(cloud["url"], headers(cloud["a"]["router"], address))
    assert status == 404
    assert f"no instance at {address}" in text


def test_a_router_that_does_not_exist_finds_nothing(cloud: dict[str, Any]) -> None:
    status, _ = ask(cloud["url"], headers(str(uuid.uuid4()), "10.9.0.5"))
    assert status == 404


def test_an_unreachable_server_is_503_not_404() -> None:
    status, text = ask("http://127.0.0.1:9", headers(str(uuid.uuid4()), "10.9.0.5"))
    assert status == 503
    assert "cannot ask the server" in text


def test_requests_not_from_a_proxy_are_still_refused(cloud: dict[str, Any]) -> None:
    status, _ = ask(cloud["url"], {"X-Forwarded-For": "10.9.0.5"})
    assert status == 400


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--server", "10.0.0.10:9696"], "--server '10.0.0.10:9696': expected http://HOST:PORT"),
        (["--instances", "x.json", "--token-file", "t"], "--token-file goes with --server"),
    ],
)
def test_bad_arguments_say_why(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--socket", str(tmp_path / "s"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_instances_or_server_not_both(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--socket", str(tmp_path / "s"), "--instances", "x", "--server", "http://h:1"])
