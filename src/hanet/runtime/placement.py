"""Putting an instance's addresses, routes and rules in place through netlink, and
announcing its addresses. Up: addresses, routes, rules; down: the reverse order."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from hanet.linux import addresses as netaddr
from hanet.runtime.config import InstanceConfig, VirtualAddress, VirtualRoute, VirtualRule
from hanet.runtime.link import Link

log = logging.getLogger(__name__)


async def apply(
    link: Link,
    interface: str,
    vips: tuple[VirtualAddress, ...],
    routes: tuple[VirtualRoute, ...],
    rules: tuple[VirtualRule, ...],
    adding: bool,
    errors: Counter[str],
) -> None:
    """Every step is tried; a failed one is logged and counted, and the rest still run.
    The steps run on the netlink thread (hanet.runtime.netlink_worker), one after another."""
    if link.rtnl is None:
        return
    address_op: Any = netaddr.add_address if adding else netaddr.remove_address
    route_op: Any = netaddr.add_route if adding else netaddr.remove_route
    rule_op: Any = netaddr.add_rule if adding else netaddr.remove_rule
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    for vip in vips:
        steps.append((str(vip.address), _on_device(link, vip.dev or interface, address_op, vip)))
    for route in routes:
        dev = route.dev or (interface if route.via is None else None)
        steps.append((f"route {route.to}", _route(link, dev, route_op, route)))
    for rule in rules:
        steps.append((f"rule {rule}", _rule(link, rule_op, rule)))
    if not adding:
        steps.reverse()
    failures = await link.netlink.run(lambda: _run_steps(steps))
    for label, exc in failures:
        errors["netlink"] += 1
        log.error("%s %s failed: %s", "adding" if adding else "removing", label, exc)
    if adding:
        for dev in {vip.dev for vip in vips if vip.dev}:
            try:
                await link.announcer_for(dev)
            except Exception as exc:
                log.warning("no announcer for %s: %s", dev, exc)


async def _run_steps(
    steps: list[tuple[str, Callable[[], Awaitable[None]]]],
) -> list[tuple[str, Exception]]:
    failures: list[tuple[str, Exception]] = []
    for label, step in steps:
        try:
            await step()
        except Exception as exc:
            failures.append((label, exc))
    return failures


def _on_device(link: Link, dev: str, operation: Any, vip: Any) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        index = link.devices.index(dev)
        operation(link.rtnl, index, vip)

    return step


def _route(
    link: Link, dev: str | None, operation: Any, route: Any
) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        index = link.devices.index(dev) if dev else None
        operation(link.rtnl, index, route)

    return step


def _rule(link: Link, operation: Any, rule: Any) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        operation(link.rtnl, rule)

    return step


def announce(link: Link, config: InstanceConfig) -> None:
    """One gratuitous ARP / unsolicited NA per address, on the device that holds it."""
    for vip in config.vips:
        announcer = link.announcers.get(vip.dev or config.interface)
        if announcer is None:
            continue
        try:
            announcer.announce(vip.address.ip)
        except OSError as exc:
            log.warning("%s: announce %s failed: %s", config.name, vip.address.ip, exc)
