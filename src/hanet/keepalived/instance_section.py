"""vrrp_instance: its keyword table, and the address, route and rule lines of its blocks."""

from __future__ import annotations

from typing import Any

from hanet.keepalived.handlers import Handler, command, const, dispatch, scalar
from hanet.keepalived.model import Address, Instance, Route, Rule, TrackRef
from hanet.keepalived.syntax import Statement
from hanet.keepalived.tokens import Token
from hanet.keepalived.values import (
    Context,
    arity,
    choice,
    convert,
    integer,
    ip_address,
    ip_interface,
    ip_network,
    number,
)

SCOPES = {"global", "site", "link", "host", "nowhere"}
ROUTE_KINDS = {"blackhole", "unreachable", "prohibit", "throw"}


def _lines(ctx: Context, statement: Statement) -> list[Statement]:
    if statement.children is None:
        ctx.error(statement.where, f"'{statement.name}' takes a block {{ ... }}")
        return []
    return statement.children


def _options(
    ctx: Context, tokens: list[Token], takes_value: set[str], flags: set[str], what: str
) -> dict[str, Token | None]:
    """``key value`` pairs and bare flags, in any order; each at most once."""
    found: dict[str, Token | None] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        key = token.text
        if key in found:
            ctx.error(token.where, f"'{key}' given twice in this {what}")
        if key in flags:
            found[key] = None
            index += 1
        elif key in takes_value:
            if index + 1 >= len(tokens):
                ctx.error(token.where, f"'{key}' needs a value")
                return found
            found[key] = tokens[index + 1]
            index += 2
        else:
            known = ", ".join(sorted(takes_value | flags))
            ctx.error(token.where, f"unexpected {key!r} in this {what} (known: {known})")
            index += 1
    return found


def parse_address(ctx: Context, line: Statement) -> Address | None:
    address = convert(ctx, line.keyword, "address", ip_interface)
    opts = _options(
        ctx,
        line.args,
        {"brd", "broadcast", "dev", "scope", "label"},
        {"no_track", "home", "nodad", "noprefixroute"},
        "address",
    )
    scope = opts.get("scope")
    if scope is not None and scope.text not in SCOPES:
        ctx.error(scope.where, f"scope {scope.text!r} is not one of {', '.join(sorted(SCOPES))}")
    if address is None:
        return None
    brd = opts.get("brd") or opts.get("broadcast")
    text = {k: (v.text if v is not None else None) for k, v in opts.items()}
    return Address(
        address,
        text.get("dev"),
        brd.text if brd else None,
        text.get("scope"),
        text.get("label"),
        "no_track" in opts,
    )


def parse_route(ctx: Context, line: Statement) -> Route | None:
    tokens = [line.keyword, *line.args]
    kind = "unicast"
    if tokens[0].text in ROUTE_KINDS:
        kind = tokens.pop(0).text
    prefix: dict[str, Token | None] = {}
    # keepalived allows "src X" before the destination, and an optional "to".
    while tokens and tokens[0].text in ("src", "to") and len(tokens) > 1:
        key = tokens.pop(0).text
        if key == "to":
            break
        prefix["src"] = tokens.pop(0)
    if not tokens:
        ctx.error(line.where, "a route needs a destination")
        return None
    destination = convert(ctx, tokens.pop(0), "route destination", ip_network)
    opts = _options(
        ctx,
        tokens,
        {
            "via",
            "gw",
            "or",
            "dev",
            "src",
            "scope",
            "table",
            "metric",
            "preference",
            "protocol",
            "proto",
            "realm",
            "mtu",
            "advmss",
        },
        {"onlink", "no_track"},
        "route",
    )
    opts.update(prefix)
    parsed: dict[str, Any] = {}
    for key, parse, field_name in (
        ("via", ip_address, "via"),
        ("gw", ip_address, "via"),
        ("src", ip_address, "src"),
        ("table", integer(0, 2**32 - 1), "table"),
        ("metric", integer(0, 2**32 - 1), "metric"),
        ("preference", integer(0, 2**32 - 1), "metric"),
    ):
        token = opts.get(key)
        if token is not None:
            parsed[field_name] = convert(ctx, token, key, parse)
    if destination is None:
        return None
    via = parsed.get("via")
    if via is not None and via.version != destination.version:
        ctx.error(line.where, "the gateway and the destination are of different IP families")
    scope = opts.get("scope")
    protocol = opts.get("protocol") or opts.get("proto")
    dev = opts.get("dev")
    return Route(
        destination,
        kind,
        via,
        dev.text if dev else None,
        parsed.get("src"),
        scope.text if scope else None,
        parsed.get("table"),
        parsed.get("metric"),
        protocol.text if protocol else None,
        "onlink" in opts,
        "no_track" in opts,
    )


def parse_rule(ctx: Context, line: Statement) -> Rule | None:
    tokens = [line.keyword, *line.args]
    opts = _options(
        ctx,
        tokens,
        {"from", "to", "table", "priority", "preference", "pref", "iif", "oif", "fwmark", "lookup"},
        {"no_track"},
        "rule",
    )
    values: dict[str, Any] = {}
    for key, parse in (
        ("from", ip_network),
        ("to", ip_network),
        ("table", integer(0, 2**32 - 1)),
        ("lookup", integer(0, 2**32 - 1)),
        ("priority", integer(0, 2**32 - 1)),
        ("preference", integer(0, 2**32 - 1)),
        ("pref", integer(0, 2**32 - 1)),
        ("fwmark", integer(0, 2**32 - 1)),
    ):
        token = opts.get(key)
        if token is not None:
            values[key] = convert(ctx, token, key, parse)
    table = values.get("table", values.get("lookup"))
    priority = values.get("priority", values.get("preference", values.get("pref")))
    iif, oif = opts.get("iif"), opts.get("oif")
    return Rule(
        values.get("from"),
        values.get("to"),
        table,
        priority,
        iif.text if iif else None,
        oif.text if oif else None,
        values.get("fwmark"),
        "no_track" in opts,
    )


def parse_track_refs(ctx: Context, statement: Statement) -> list[TrackRef]:
    refs = []
    for line in _lines(ctx, statement):
        weight, reverse = None, False
        rest = line.words
        if rest[:1] == ["weight"] and len(rest) >= 2:
            weight = convert(ctx, line.args[1], "weight", integer(-254, 254))
            reverse = rest[2:] == ["reverse"]
            if rest[2:] not in ([], ["reverse"]):
                ctx.error(line.args[2].where, "after the weight only 'reverse' may follow")
        elif rest:
            ctx.error(line.args[0].where, "expected 'weight N [reverse]'")
        refs.append(TrackRef(line.name, line.where, weight, reverse))
    return refs


def _track(attr: str) -> Handler:
    def handle(ctx: Context, statement: Statement, target: Instance) -> None:
        getattr(target, attr).extend(parse_track_refs(ctx, statement))

    return handle


def _addresses(attr: str) -> Handler:
    def handle(ctx: Context, statement: Statement, target: Instance) -> None:
        for line in _lines(ctx, statement):
            address = parse_address(ctx, line)
            if address is not None:
                getattr(target, attr).append(address)

    return handle


def _routes(ctx: Context, statement: Statement, target: Instance) -> None:
    for line in _lines(ctx, statement):
        route = parse_route(ctx, line)
        if route is not None:
            target.routes.append(route)


def _rules(ctx: Context, statement: Statement, target: Instance) -> None:
    for line in _lines(ctx, statement):
        rule = parse_rule(ctx, line)
        if rule is not None:
            target.rules.append(rule)


def _unicast_peers(ctx: Context, statement: Statement, target: Instance) -> None:
    for line in _lines(ctx, statement):
        peer = convert(ctx, line.keyword, "unicast peer", ip_address)
        for key in _options(ctx, line.args, {"min_ttl", "max_ttl"}, set(), "unicast peer"):
            ctx.notice(line.keyword.where, f"'{key}' is accepted and ignored by hanet: every "
                       "advert must arrive with TTL 255 (RFC 5798 section 7.1)")  # fmt: skip
        if peer is not None:
            target.unicast_peers.append(peer)


def _authentication(ctx: Context, statement: Statement, target: Instance) -> None:
    for line in _lines(ctx, statement):
        if line.name == "auth_type" and arity(ctx, line, 1):
            target.auth_type = convert(ctx, line.args[0], "auth_type", choice("PASS", "AH"))
        elif line.name == "auth_pass" and arity(ctx, line, 1):
            target.auth_pass = line.args[0].text
        elif line.name not in ("auth_type", "auth_pass"):
            ctx.unknown(line, "authentication", ["auth_type", "auth_pass"])


INSTANCE_TABLE: dict[str, Handler] = {
    "state": scalar("state", choice("MASTER", "BACKUP")),
    "interface": scalar("interface", str),
    "virtual_router_id": scalar("vrid", integer(1, 255)),
    "priority": scalar("priority", integer(1, 255)),
    "advert_int": scalar("advert_int", number(0.01, 255)),
    "version": scalar("version", integer(2, 3)),
    "nopreempt": const("preempt", False),
    "preempt": const("preempt", True),
    "preempt_delay": scalar("preempt_delay", number(0, 1000)),
    "mcast_src_ip": scalar("mcast_src_ip", ip_address),
    "unicast_src_ip": scalar("unicast_src_ip", ip_address),
    "unicast_peer": _unicast_peers,
    "authentication": _authentication,
    "track_interface": _track("track_interfaces"),
    "track_script": _track("track_scripts"),
    "track_file": _track("track_files"),
    "virtual_ipaddress": _addresses("vips"),
    "virtual_ipaddress_excluded": _addresses("excluded"),
    "virtual_routes": _routes,
    "virtual_rules": _rules,
    "accept": const("accept", True),
    "no_accept": const("accept", False),
    "garp_master_delay": scalar("garp_master_delay", number(0, 1000)),
    "garp_master_repeat": scalar("garp_master_repeat", integer(1, 255)),
    "garp_master_refresh": scalar("garp_master_refresh", number(0, 86400)),
    "garp_master_refresh_repeat": scalar("garp_master_refresh_repeat", integer(1, 255)),
    "notify_master": command("notify_master"),
    "notify_backup": command("notify_backup"),
    "notify_fault": command("notify_fault"),
    "notify_stop": command("notify_stop"),
    "notify": command("notify"),
}
INSTANCE_IGNORED = {
    "smtp_alert",
    "debug",
    "dont_track_primary",
    "skip_check_adv_addr",
    "check_unicast_src",  # hanet always checks a unicast advert's source
}


def parse_instance(ctx: Context, statement: Statement, name: str) -> Instance:
    instance = Instance(name, statement.where)
    dispatch(ctx, statement.children, instance, f"vrrp_instance {name}", INSTANCE_TABLE,
             INSTANCE_IGNORED)  # fmt: skip
    return instance
