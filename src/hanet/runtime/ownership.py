"""What a set of instances may share: no VRRP router twice on a link, no address twice.

Two instances that hold the same address on the same device would take it from each other:
when one of them stops or becomes backup it deletes the address from under the other's
master. So a set of instances in which one (namespace, device, address) has two owners is
refused as a whole, naming both, before anything running changes. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from hanet.runtime.config import ConfigError, InstanceConfig

AddressKey = tuple[str | None, str, str]  # namespace, device, address without its prefix
RouterKey = tuple[str | None, str, int, int]  # namespace, interface, family, VRID


def identity(config: InstanceConfig) -> tuple[object, ...]:
    """What makes an instance the same virtual router on the wire."""
    owner = config.priority == 255  # the address owner starts differently (RFC 5798 §6.4.1)
    return (config.netns, config.interface, config.family, config.vrid, config.version, owner)


def address_keys(config: InstanceConfig) -> list[AddressKey]:
    return [(config.netns, vip.dev or config.interface, str(vip.address.ip)) for vip in config.vips]


def _where(netns: str | None, device: str) -> str:
    return device if netns is None else f"{device} in namespace {netns}"


def check_instance_set(configs: Iterable[InstanceConfig]) -> dict[AddressKey, str]:
    """The owner of every address; ConfigError if an address or a VRID is taken twice.

    Running instances should come first, so that a refused newcomer is the one named as
    the instance in error and the running one as the owner."""
    owners: dict[AddressKey, str] = {}
    routers: dict[RouterKey, str] = {}
    for config in configs:
        holder = routers.setdefault(router_key(config), config.name)
        if holder != config.name:
            raise vrid_in_use(config, holder)
        for key in address_keys(config):
            owner = owners.setdefault(key, config.name)
            if owner != config.name:
                raise address_held(config, key, owner)
    return owners


def router_key(config: InstanceConfig) -> RouterKey:
    return (config.netns, config.interface, config.family, config.vrid)


def vrid_in_use(config: InstanceConfig, holder: str) -> ConfigError:
    where = _where(config.netns, config.interface)
    return ConfigError(
        f"instance {config.name}: vrid {config.vrid} on {where} is in use by instance {holder}"
    )


def address_held(config: InstanceConfig, key: AddressKey, owner: str) -> ConfigError:
    return ConfigError(
        f"instance {config.name}: address {key[2]} on {_where(key[0], key[1])} "
        f"is held by instance {owner}"
    )
