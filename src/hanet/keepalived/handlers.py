"""Keyword handlers shared by every section: each checks a statement's arguments and sets
one attribute of the section's model, or reports a Problem."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hanet.keepalived.syntax import Statement
from hanet.keepalived.values import Context, arity, convert, no_block

Handler = Callable[[Context, Statement, Any], None]


def scalar(attr: str, parse: Callable[[str], Any], what: str | None = None) -> Handler:
    def handle(ctx: Context, statement: Statement, target: Any) -> None:
        if arity(ctx, statement, 1) and no_block(ctx, statement):
            value = convert(ctx, statement.args[0], what or statement.name, parse)
            if value is not None:
                setattr(target, attr, value)

    return handle


def flag(attr: str, value: bool = True) -> Handler:
    """A keyword alone, or followed by true/false (keepalived accepts both)."""

    def handle(ctx: Context, statement: Statement, target: Any) -> None:
        if not (arity(ctx, statement, 0, 1) and no_block(ctx, statement)):
            return
        setting = value
        if statement.args:
            text = statement.args[0].text.lower()
            if text not in ("true", "false", "on", "off", "yes", "no"):
                ctx.error(statement.args[0].where, f"'{statement.name}' takes true or false")
                return
            setting = value if text in ("true", "on", "yes") else not value
        setattr(target, attr, setting)

    return handle


def command(attr: str) -> Handler:
    """A script command line: one quoted string, or the rest of the line.

    Its place is kept in the target's ``places``: a script is checked (enable_script_security)
    after parsing, and what is wrong with it is reported at this line.
    """

    def handle(ctx: Context, statement: Statement, target: Any) -> None:
        if arity(ctx, statement, 1, 64) and no_block(ctx, statement):
            setattr(target, attr, " ".join(t.text for t in statement.args))
            target.places[attr] = statement.args[0].where

    return handle


def user_group(attr: str) -> Handler:
    def handle(ctx: Context, statement: Statement, target: Any) -> None:
        if arity(ctx, statement, 1, 2) and no_block(ctx, statement):
            words = statement.words
            setattr(target, attr, (words[0], words[1] if len(words) > 1 else None))

    return handle


def const(attr: str, value: Any) -> Handler:
    """A keyword alone that sets a fixed value (``nopreempt``, ``no_accept``)."""

    def handle(ctx: Context, statement: Statement, target: Any) -> None:
        if arity(ctx, statement, 0) and no_block(ctx, statement):
            setattr(target, attr, value)

    return handle


def dispatch(
    ctx: Context,
    children: list[Statement] | None,
    target: Any,
    section: str,
    table: dict[str, Handler],
    ignored: set[str] | frozenset[str] = frozenset(),
) -> None:
    for statement in children or []:
        handler = table.get(statement.name)
        if handler is not None:
            handler(ctx, statement, target)
        elif statement.name in ignored:
            ctx.notice(statement.where, f"'{statement.name}' is accepted and ignored by hanet")
        else:
            ctx.unknown(statement, section, [*table, *ignored])
