"""keepalived.conf's top level, global_defs, vrrp_script, track_file and vrrp_sync_group.

Every section has one keyword table; anything not in it is an error with a suggestion.
vrrp_instance lives in instance_section.py; cross-checks between sections in resolve.py.
"""

from __future__ import annotations

from typing import Any

from hanet.keepalived.handlers import Handler, command, dispatch, flag, scalar, user_group
from hanet.keepalived.instance_section import parse_instance, parse_track_refs
from hanet.keepalived.model import KeepalivedConfig, Script, SyncGroup, TrackFile
from hanet.keepalived.syntax import Statement
from hanet.keepalived.values import (
    Context,
    arity,
    convert,
    integer,
    no_block,
    number,
    word_list,
)

# Sections of keepalived that hanet does not run: read, reported with their place, not lost.
UNSUPPORTED_TOP = {
    "virtual_server": "LVS virtual_server",
    "virtual_server_group": "LVS virtual_server_group",
    "static_ipaddress": "static_ipaddress",
    "static_routes": "static_routes",
    "static_rules": "static_rules",
    "bfd_instance": "BFD",
    "linkbeat_interfaces": "linkbeat_interfaces",
    "garp_group": "garp_group",
    "net_namespace": "net_namespace (run hanet vrrpd in the namespace instead)",
}
NOTIFY_ONLY_GLOBALS = {
    "notification_email",
    "notification_email_from",
    "smtp_server",
    "smtp_connect_timeout",
    "smtp_helo_name",
    "smtp_alert",
    "smtp_alert_vrrp",
    "enable_traps",
    "lvs_id",
    "max_auto_priority",
    "script_security",
    "dynamic_interfaces",
    "lvs_sync_daemon",
    "vrrp_check_unicast_src",  # hanet always checks a unicast advert's source
}


GLOBAL_TABLE: dict[str, Handler] = {
    "router_id": scalar("router_id", str),
    "vrrp_version": scalar("vrrp_version", integer(2, 3)),
    "vrrp_garp_master_delay": scalar("garp_master_delay", number(0, 1000)),
    "vrrp_garp_master_repeat": scalar("garp_master_repeat", integer(1, 255)),
    "vrrp_garp_master_refresh": scalar("garp_master_refresh", number(0, 86400)),
    "vrrp_garp_master_refresh_repeat": scalar("garp_master_refresh_repeat", integer(1, 255)),
    "vrrp_garp_interval": scalar("garp_interval", number(0, 1)),
    "vrrp_gna_interval": scalar("gna_interval", number(0, 1)),
    "vrrp_lower_prio_no_advert": flag("lower_prio_no_advert"),
    "vrrp_higher_prio_send_advert": flag("higher_prio_send_advert"),
    "enable_script_security": flag("enable_script_security"),
    "script_user": user_group("script_user"),
    "vrrp_strict": flag("vrrp_strict"),
    "vrrp_startup_delay": scalar("vrrp_startup_delay", number(0, 3600)),
    "vrrp_priority": scalar("vrrp_priority", integer(-20, 19)),
}


def _weight(ctx: Context, statement: Statement, target: Any) -> None:
    """``weight N [reverse]``, N in -253..253 as keepalived allows."""
    if not (arity(ctx, statement, 1, 2) and no_block(ctx, statement)):
        return
    value = convert(ctx, statement.args[0], "weight", integer(-253, 253))
    if value is not None:
        target.weight = value
    if len(statement.args) == 2:
        if statement.args[1].text != "reverse":
            ctx.error(statement.args[1].where, "after the weight only 'reverse' may follow")
        else:
            target.weight_reverse = True


def _init_file(ctx: Context, statement: Statement, target: TrackFile) -> None:
    if not (arity(ctx, statement, 0, 2) and no_block(ctx, statement)):
        return
    target.init_file = 0
    for token in statement.args:
        if token.text == "overwrite":
            target.init_overwrite = True
        else:
            value = convert(ctx, token, "init_file", integer(-254, 254))
            if value is not None:
                target.init_file = value


SCRIPT_TABLE: dict[str, Handler] = {
    "script": command("command"),
    "interval": scalar("interval", number(0.01, 86400)),
    "timeout": scalar("timeout", number(0.01, 86400)),
    "weight": _weight,
    "rise": scalar("rise", integer(1, 1000)),
    "fall": scalar("fall", integer(1, 1000)),
    "user": user_group("user"),
    "init_fail": flag("init_fail"),
}

TRACK_FILE_TABLE: dict[str, Handler] = {
    "file": scalar("file", str),
    "weight": _weight,
    "init_file": _init_file,
}


def _members(ctx: Context, statement: Statement, group: SyncGroup) -> None:
    if statement.children is None:
        ctx.error(statement.where, "'group' takes a block of instance names")
        return
    group.members += [token.text for token in word_list(statement)]


SYNC_GROUP_TABLE: dict[str, Handler] = {
    "group": _members,
    "track_script": lambda ctx, s, g: g.track_scripts.extend(parse_track_refs(ctx, s)),
    "notify_master": command("notify_master"),
    "notify_backup": command("notify_backup"),
    "notify_fault": command("notify_fault"),
    "notify_stop": command("notify_stop"),
    "notify": command("notify"),
}
SYNC_GROUP_IGNORED = {"smtp_alert", "global_tracking", "sync_group_tracking_weight"}


def _named(ctx: Context, statement: Statement) -> str | None:
    if statement.children is None:
        ctx.error(statement.where, f"'{statement.name}' needs a block {{ ... }}")
        return None
    if not arity(ctx, statement, 1):
        return None
    return statement.args[0].text


def build(statements: list[Statement]) -> KeepalivedConfig:
    """The model of a parsed file; config.problems lists everything wrong or ignored."""
    ctx = Context()
    config = KeepalivedConfig()
    for statement in statements:
        name = statement.name
        if name == "global_defs":
            if statement.children is None:
                ctx.error(statement.where, "'global_defs' needs a block { ... }")
                continue
            dispatch(
                ctx,
                statement.children,
                config.global_defs,
                "global_defs",
                GLOBAL_TABLE,
                NOTIFY_ONLY_GLOBALS,
            )
        elif name in (
            "vrrp_script",
            "track_file",
            "vrrp_track_file",
            "vrrp_instance",
            "vrrp_sync_group",
        ):
            _build_named(ctx, config, statement)
        elif name in UNSUPPORTED_TOP:
            ctx.warn(
                statement.where, f"{UNSUPPORTED_TOP[name]} is not supported by hanet and is not run"
            )
        else:
            ctx.unknown(
                statement,
                "the top level",
                [
                    "global_defs",
                    "vrrp_script",
                    "track_file",
                    "vrrp_instance",
                    "vrrp_sync_group",
                    *UNSUPPORTED_TOP,
                ],
            )
    from hanet.keepalived.resolve import resolve

    resolve(ctx, config)
    config.problems = sorted(
        ctx.problems, key=lambda p: (p.where.file, p.where.line, p.where.column)
    )
    return config


def _build_named(ctx: Context, config: KeepalivedConfig, statement: Statement) -> None:
    name = _named(ctx, statement)
    if name is None:
        return
    kind = statement.name
    registry: dict[str, Any]
    item: Any
    if kind == "vrrp_script":
        registry, item = config.scripts, Script(name, statement.where)
        dispatch(ctx, statement.children, item, f"vrrp_script {name}", SCRIPT_TABLE)
    elif kind in ("track_file", "vrrp_track_file"):
        registry, item = config.track_files, TrackFile(name, statement.where)
        dispatch(ctx, statement.children, item, f"track_file {name}", TRACK_FILE_TABLE)
    elif kind == "vrrp_sync_group":
        registry, item = config.sync_groups, SyncGroup(name, statement.where)
        dispatch(
            ctx,
            statement.children,
            item,
            f"vrrp_sync_group {name}",
            SYNC_GROUP_TABLE,
            SYNC_GROUP_IGNORED,
        )
    else:
        registry, item = config.instances, parse_instance(ctx, statement, name)
    if name in registry:
        ctx.error(statement.where, f"{kind} {name} is already defined at {registry[name].where}")
        return
    registry[name] = item
