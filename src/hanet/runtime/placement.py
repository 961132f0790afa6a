"""Putting an instance's addresses, routes and rules in place through netlink, and
announcing its addresses. Up: addresses, routes, rules; down: the reverse order."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from hanet.linux import addresses as netaddr
from hanet.runtime.config import InstanceConfig
from hanet.runtime.link import Link

log = logging.getLogger(__name__)


async def apply(link: Link, config: InstanceConfig, adding: bool, errors: Counter[str]) -> None:
    """Every step is tried; a failed one is logged and counted, and the rest still run."""
    ipr = link.ipr
    if ipr is None:
        return
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = []
    for vip in config.vips:
        operation: Any = netaddr.add_address if adding else netaddr.remove_address
        steps.append((str(vip.address), _on_device(link, vip.dev or config.interface,
                                                    operation, vip)))  # fmt: skip
    route_steps = []
    for route in config.routes:
        operation_r: Any = netaddr.add_route if adding else netaddr.remove_route
        dev = route.dev or (config.interface if route.via is None else None)
        route_steps.append((f"route {route.to}", _route(link, dev, operation_r, route)))
    rule_steps = []
    for rule in config.rules:
        operation_u: Any = netaddr.add_rule if adding else netaddr.remove_rule
        rule_steps.append((f"rule {rule}", _rule(link, operation_u, rule)))
    ordered = steps + route_steps + rule_steps
    if not adding:
        ordered.reverse()
    for label, step in ordered:
        try:
            await step()
        except Exception as exc:
            errors["netlink"] += 1
            log.error("%s %s on %s failed: %s", "adding" if adding else "removing", label,
                      config.name, exc)  # fmt: skip
    if adding:
        for dev in {vip.dev for vip in config.vips if vip.dev}:
            try:
                await link.announcer_for(dev)
            except Exception as exc:
                log.warning("%s: no announcer for %s: %s", config.name, dev, exc)


def _on_device(link: Link, dev: str, operation: Any, vip: Any) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        index = await link.devices.index(dev)
        await operation(link.ipr, index, vip)

    return step


def _route(
    link: Link, dev: str | None, operation: Any, route: Any
) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        index = await link.devices.index(dev) if dev else None
        await operation(link.ipr, index, route)

    return step


def _rule(link: Link, operation: Any, rule: Any) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        await operation(link.ipr, rule)

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
