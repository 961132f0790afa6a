"""From keepalived.conf's model to the runtime's instance configurations."""

from __future__ import annotations

from hanet.keepalived.model import Instance, KeepalivedConfig
from hanet.runtime.config import (
    ConfigError,
    InstanceConfig,
    VirtualAddress,
    VirtualRoute,
    VirtualRule,
)


def runtime_instances(config: KeepalivedConfig) -> list[InstanceConfig]:
    """Raises ConfigError listing every error when the file has any."""
    if config.errors:
        raise ConfigError("\n".join(str(p) for p in config.errors))
    result = []
    for instance in config.instances.values():
        try:
            result.append(_instance(config, instance))
        except ConfigError as exc:
            raise ConfigError(f"{instance.where}: {exc}") from None
    return result


def _instance(config: KeepalivedConfig, inst: Instance) -> InstanceConfig:
    g = config.global_defs
    assert inst.interface is not None and inst.vrid is not None  # resolve() checked both
    vips = tuple(
        VirtualAddress(
            a.address,
            a.dev if a.dev != inst.interface else None,
            a.broadcast,
            a.scope,
            a.label,
            advertised,
        )
        for addresses, advertised in ((inst.vips, True), (inst.excluded, False))
        for a in addresses
    )
    routes = tuple(
        VirtualRoute(r.to, r.via, r.metric, r.table, r.dev, r.src, r.scope, r.protocol, r.kind)
        for r in inst.routes
    )
    rules = tuple(
        VirtualRule(r.source, r.destination, r.table, r.priority, r.iif, r.oif, r.fwmark)
        for r in inst.rules
    )
    version = inst.version or g.vrrp_version
    family = vips[0].address.version if vips else 4

    def either(own: float | None, default: float) -> float:
        return default if own is None else own

    return InstanceConfig(
        name=inst.name,
        interface=inst.interface,
        vrid=inst.vrid,
        priority=inst.priority,
        vips=vips,
        version=version,
        advert_int=inst.advert_int,
        preempt=inst.preempt,
        preempt_delay=inst.preempt_delay,
        accept=inst.accept if inst.accept is not None else not g.vrrp_strict,
        auth_pass=inst.auth_pass if inst.auth_type == "PASS" else None,
        garp_repeat=int(either(inst.garp_master_repeat, g.garp_master_repeat)),
        garp_interval=g.garp_interval if family == 4 else g.gna_interval,
        garp_refresh_delay=either(inst.garp_master_delay, g.garp_master_delay),
        garp_refresh_interval=either(inst.garp_master_refresh, g.garp_master_refresh),
        garp_refresh_repeat=int(
            either(inst.garp_master_refresh_repeat, g.garp_master_refresh_repeat)
        ),
        lower_prio_no_advert=g.lower_prio_no_advert,
        higher_prio_send_advert=g.higher_prio_send_advert,
        routes=routes,
        rules=rules,
        source_ip=inst.unicast_src_ip or inst.mcast_src_ip,
        unicast_peers=tuple(inst.unicast_peers),
        group_member=any(inst.name in group.members for group in config.sync_groups.values()),
    )
