"""Checks across sections, done once the whole file is read (keepalived's own rules)."""

from __future__ import annotations

from hanet.keepalived.model import Instance, KeepalivedConfig
from hanet.keepalived.values import Context

AUTH_PASS_MAX = 8


def resolve(ctx: Context, config: KeepalivedConfig) -> None:
    seen: dict[tuple[str, int, int], str] = {}
    for instance in config.instances.values():
        _check_instance(ctx, config, instance)
        if instance.interface is None or instance.vrid is None or not instance.vips:
            continue
        key = (instance.interface, instance.vips[0].address.version, instance.vrid)
        if key in seen:
            ctx.error(
                instance.where,
                f"virtual_router_id {instance.vrid} on "
                f"{instance.interface} is already used by vrrp_instance {seen[key]}",
            )
        seen[key] = instance.name
    grouped: dict[str, str] = {}
    for group in config.sync_groups.values():
        if not group.members:
            ctx.error(group.where, f"vrrp_sync_group {group.name} has no 'group' members")
        for member in group.members:
            if member not in config.instances:
                ctx.error(group.where, f"vrrp_sync_group {group.name}: no vrrp_instance {member}")
            elif member in grouped:
                ctx.error(
                    group.where,
                    f"vrrp_instance {member} is already in vrrp_sync_group {grouped[member]}",
                )
            grouped[member] = group.name
        for ref in group.track_scripts:
            if ref.name not in config.scripts:
                ctx.error(ref.where, f"track_script: no vrrp_script {ref.name}")
    for script in config.scripts.values():
        if script.command is None:
            ctx.error(script.where, f"vrrp_script {script.name} has no 'script'")
    for track in config.track_files.values():
        if track.file is None:
            ctx.error(track.where, f"track_file {track.name} has no 'file'")


def _check_instance(ctx: Context, config: KeepalivedConfig, instance: Instance) -> None:
    where, name = instance.where, f"vrrp_instance {instance.name}"
    strict = config.global_defs.vrrp_strict
    version = instance.version or config.global_defs.vrrp_version
    if instance.interface is None:
        ctx.error(where, f"{name} has no 'interface'")
    if instance.vrid is None:
        ctx.error(where, f"{name} has no 'virtual_router_id'")
    if not instance.vips and strict:
        ctx.error(where, f"{name}: vrrp_strict forbids an instance with no virtual_ipaddress")
    elif not instance.vips:
        ctx.error(where, f"{name} has no virtual_ipaddress (hanet needs at least one)")
    families = {a.address.version for a in instance.vips}
    if len(families) > 1:
        ctx.error(where, f"{name}: virtual_ipaddress mixes IPv4 and IPv6; use two instances")
    if 6 in families and version == 2:
        ctx.error(where, f"{name}: IPv6 needs VRRP version 3")
    if version == 2 and instance.advert_int != int(instance.advert_int):
        ctx.error(
            where,
            f"{name}: VRRPv2 advert_int is whole seconds; use version 3 for "
            f"{instance.advert_int:g}",
        )
    if version == 3 and round(instance.advert_int * 100) > 4095:
        ctx.error(where, f"{name}: VRRPv3 advert_int is at most 40.95 s")
    if not instance.preempt and instance.state == "MASTER":
        ctx.warn(
            where,
            f"{name}: nopreempt does not work with state MASTER; it is ignored, as keepalived does",
        )
        instance.preempt = True
    if instance.auth_type is not None:
        if version == 3:
            ctx.warn(where, f"{name}: VRRPv3 has no authentication; it is ignored")
            instance.auth_type = instance.auth_pass = None
        elif instance.auth_type == "AH":
            ctx.error(where, f"{name}: auth_type AH is not supported; use PASS")
        elif not instance.auth_pass:
            ctx.error(where, f"{name}: auth_type PASS needs an auth_pass")
        elif len(instance.auth_pass.encode()) > AUTH_PASS_MAX:
            ctx.warn(where, f"{name}: auth_pass is truncated to 8 characters, as keepalived does")
            instance.auth_pass = instance.auth_pass.encode()[:AUTH_PASS_MAX].decode(errors="ignore")
    if strict and instance.unicast_peers:
        ctx.error(where, f"{name}: vrrp_strict forbids unicast_peer")
    if strict and instance.auth_type is not None:
        ctx.error(where, f"{name}: vrrp_strict forbids authentication")
    for ref in instance.track_scripts:
        if ref.name not in config.scripts:
            ctx.error(ref.where, f"{name}: track_script: no vrrp_script {ref.name}")
    for ref in instance.track_files:
        if ref.name not in config.track_files:
            ctx.error(ref.where, f"{name}: track_file: no track_file {ref.name}")
