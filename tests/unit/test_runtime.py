"""The runtime's dispatch and address reconciliation, with fake sockets and netlink."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import threading
from types import SimpleNamespace
from typing import Any

from hanet.linux.addresses import DeviceIndex, InterfaceFacts
from hanet.runtime.config import InstanceConfig, VirtualAddress, VirtualRoute
from hanet.runtime.instance import Instance
from hanet.runtime.link import Link
from hanet.runtime.service import VrrpService
from hanet.vrrp import Advertisement, encode_ip_packet

PRIMARY = ipaddress.IPv4Address("10.0.0.1")


class FakeNetlink:
    """Stands for hanet.linux.rtnl_socket.RtnlSocket: records each change it is sent, read
    back from its bytes as (what, address or destination)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.seq = 0

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def change(self, request: bytes, seq: int) -> None:
        kind = struct.unpack_from("=H", request, 4)[0]
        body = request[16:]
        if kind in (20, 21):  # RTM_NEWADDR, RTM_DELADDR: IFA_LOCAL is the first attribute
            address = ipaddress.ip_address(body[8 + 4 : 8 + 4 + (4 if body[0] == 2 else 16)])
            self.calls.append(("addr add" if kind == 20 else "addr del", str(address)))
        else:  # RTM_NEWROUTE (a replace), RTM_DELROUTE: RTA_DST first
            size = 4 if body[0] == 2 else 16
            destination = ipaddress.ip_address(body[12 + 4 : 12 + 4 + size])
            self.calls.append((f"route {'replace' if kind == 24 else 'del'}",
                               f"{destination}/{body[1]}"))  # fmt: skip

    def close(self) -> None:
        pass


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.waiting: list[bytes] = []  # received, not read yet
        self.overflows = 0

    def receive_batch(self, limit: int) -> list[bytes]:
        batch, self.waiting = self.waiting[:limit], self.waiting[limit:]
        return batch

    def prepare(self, source: Any, destination: Any, message: bytes) -> Any:
        return (source, destination)

    def send_prepared(self, message: bytes, prepared: Any) -> None:
        self.sent.append(message)

    def close(self) -> None:
        pass


def make_service(*configs: InstanceConfig) -> tuple[VrrpService, Link]:
    service = VrrpService(list(configs))
    link = Link(None, "eth0", 4, service.netlink)
    link.rtnl = FakeNetlink()  # type: ignore[assignment]
    link.socket = FakeSocket()  # type: ignore[assignment]
    link.announcer = SimpleNamespace(announce=lambda ip: None, close=lambda: None)  # type: ignore[assignment]
    link.announcers = {"eth0": link.announcer}  # type: ignore[dict-item]
    link.devices = DeviceIndex(link.rtnl, {"eth0": 2})
    link.facts = InterfaceFacts("eth0", 2, "02:00:00:00:00:01", PRIMARY, None)
    link.primary = PRIMARY
    for config in configs:
        instance = Instance(config, link)
        link.instances[config.vrid] = instance
        service.instances[config.name] = instance
    return service, link


def config(vrid: int = 1, **kw: Any) -> InstanceConfig:
    base: dict[str, Any] = dict(
        name=f"vr{vrid}", interface="eth0", vrid=vrid, priority=100,
        vips=(VirtualAddress(ipaddress.ip_interface(f"10.0.0.{100 + vrid}/24")),), advert_int=0.1,
        garp_refresh_delay=0,
    )  # fmt: skip
    base.update(kw)
    return InstanceConfig(**base)


def advert(vrid: int, **kw: Any) -> bytes:
    base: dict[str, Any] = dict(
        version=3, vrid=vrid, priority=200, addresses=(ipaddress.IPv4Address("10.0.0.200"),),
        advert_int_cs=10, source=ipaddress.IPv4Address("10.0.0.9"),
        destination=ipaddress.IPv4Address("224.0.0.18"),
    )  # fmt: skip
    base.update(kw)
    return encode_ip_packet(Advertisement(**base))


def test_flapping_never_interleaves_netlink_and_ends_in_the_last_wanted_state() -> None:
    route = VirtualRoute(ipaddress.ip_network("10.9.0.0/16"))
    service, link = make_service(config(routes=(route,)))
    (instance,) = service.instances.values()

    async def flap() -> None:
        service.loop = asyncio.get_running_loop()
        from hanet.vrrp import ReleaseAddresses, TakeAddresses

        for _ in range(3):
            service._apply(instance, [TakeAddresses(True)])
            service._apply(instance, [ReleaseAddresses()])
        service._apply(instance, [TakeAddresses(True)])
        while instance.address_task is not None:
            await asyncio.sleep(0)

    asyncio.run(flap())
    calls = link.rtnl.calls  # type: ignore[union-attr]
    # Whole add/remove rounds only, addresses before routes going up, routes first going down.
    rounds = [calls[i : i + 2] for i in range(0, len(calls), 2)]
    for chunk in rounds:
        assert chunk in (
            [("addr add", "10.0.0.101"), ("route replace", "10.9.0.0/16")],
            [("route del", "10.9.0.0/16"), ("addr del", "10.0.0.101")],
        )
    assert rounds[-1][0] == ("addr add", "10.0.0.101")
    assert instance.has_addresses is True


def test_packets_for_no_instance_are_counted_on_every_instance_of_the_link() -> None:
    service, link = make_service(config(1), config(2))
    service._on_packet(link, advert(9), 0.0)
    service._on_packet(link, advert(1)[:-1], 0.0)
    for instance in service.instances.values():
        assert instance.counters.drops == {"vrid_not_ours": 1, "truncated": 1}


def test_policy_drops_are_counted_on_the_instance_only() -> None:
    service, link = make_service(
        config(1, version=2, advert_int=1.0, auth_pass="secret"), config(2)
    )
    service._on_packet(link, advert(1, version=2, advert_int_cs=100, auth_type=1,
                                    auth_data=b"wrong"), 0.0)  # fmt: skip
    service._on_packet(link, advert(1, version=2, advert_int_cs=200, auth_type=1,
                                    auth_data=b"secret"), 0.0)  # fmt: skip
    first, second = service.instances.values()
    assert first.counters.drops == {"auth_mismatch": 1, "interval_mismatch": 1}
    assert second.counters.drops == {}
    assert first.counters.adverts_received == 0


def test_adverts_are_encoded_once_per_priority() -> None:
    service, _ = make_service(config(1))
    (instance,) = service.instances.values()
    (group,) = instance.destinations
    assert instance.message(100, group) is instance.message(100, group)
    assert instance.message(0, group) != instance.message(100, group)


def test_a_master_sends_its_cached_advert_and_a_new_config_rebuilds_it() -> None:
    async def scenario() -> tuple[list[bytes], bytes, bytes]:
        service, link = make_service(config(1))
        service.loop = asyncio.get_running_loop()
        (instance,) = service.instances.values()
        (group,) = instance.destinations
        service._send(instance, 100)
        service._send(instance, 100)
        before = instance.message(100, group)
        instance.reconfigure(
            config(1, vips=(VirtualAddress(ipaddress.ip_interface("10.0.0.77/24")),))
        )
        service._send(instance, 100)
        return link.socket.sent, before, instance.message(100, group)  # type: ignore[union-attr]

    sent, before, after = asyncio.run(scenario())
    assert sent == [before, before, after] and before != after


def test_a_backup_reads_its_link_before_declaring_its_master_down() -> None:
    """On a busy node the master's adverts can wait unread when the backup's timer fires:
    it reads them first, and takes over only if none came."""
    from hanet.vrrp import Startup, State

    service, link = make_service(config(1))
    instance = link.instances[1]
    sock: FakeSocket = link.socket  # type: ignore[assignment]

    async def scenario() -> None:
        loop = service.loop = asyncio.get_running_loop()
        now = loop.time()
        service._apply(instance, instance.machine.handle(Startup(), now))
        service._on_packet(link, advert(1), now)  # a master of priority 200
        deadline = instance.machine.next_deadline()
        assert deadline is not None and instance.machine.state is State.BACKUP
        sock.waiting = [advert(1)]  # its next advert came, but the loop was busy
        service._on_due(instance, deadline + 0.05)
        assert instance.machine.state is State.BACKUP and sock.waiting == []
        later = instance.machine.next_deadline()
        assert later is not None and later > deadline
        service._on_due(instance, later + 0.01)  # nothing waiting: the master is down
        assert instance.machine.state is State.MASTER
        while instance.address_task is not None:
            await asyncio.sleep(0)

    asyncio.run(scenario())


class WaitingNetlink(FakeNetlink):
    """Each request blocks its thread until ``gate`` opens, as a netlink send waits for
    the kernel's RTNL lock while other processes hold it."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def change(self, request: bytes, seq: int) -> None:
        self.gate.wait(3)
        super().change(request, seq)


def test_a_take_over_waiting_for_netlink_never_holds_up_the_adverts() -> None:
    gate = threading.Event()
    service, link = make_service(config(1, priority=255))  # the owner: master at once
    link.rtnl = WaitingNetlink(gate)  # type: ignore[assignment]
    link.devices = DeviceIndex(link.rtnl, {"eth0": 2})
    instance = link.instances[1]
    sock: FakeSocket = link.socket  # type: ignore[assignment]

    async def scenario() -> None:
        service.loop = asyncio.get_running_loop()
        service._begin(instance)

        async def adverts(count: int) -> None:
            while len(sock.sent) < count:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(adverts(3), 2)  # 0.2 s and more of adverts at 0.1 s
        assert instance.has_addresses is not True  # its address is still waiting
        gate.set()
        await asyncio.wait_for(service._settle(instance), 2)

    try:
        asyncio.run(scenario())
    finally:
        gate.set()
        service.netlink.stop()
    assert instance.has_addresses is True
    assert link.rtnl.calls[-1] == ("addr add", "10.0.0.101")  # type: ignore[union-attr]
