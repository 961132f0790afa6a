"""Checking statements' arguments: each helper reports a Problem and returns None when bad."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from hanet.keepalived.model import Problem
from hanet.keepalived.syntax import Statement
from hanet.keepalived.tokens import Location, Token

T = TypeVar("T")


class Context:
    """Collects problems; nothing raises, so one pass reports every error of a file."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, where: Location, message: str) -> None:
        self.problems.append(Problem(where, message))

    def warn(self, where: Location, message: str) -> None:
        self.problems.append(Problem(where, message, "warning"))

    def notice(self, where: Location, message: str) -> None:
        self.problems.append(Problem(where, message, "notice"))

    def unknown(self, statement: Statement, section: str, known: Iterable[str]) -> None:
        message = f"unknown keyword '{statement.name}' in {section}"
        close = difflib.get_close_matches(statement.name, list(known), n=1, cutoff=0.6)
        if close:
            message += f" (did you mean '{close[0]}'?)"
        self.error(statement.where, message)


def arity(ctx: Context, statement: Statement, low: int, high: int | None = None) -> bool:
    high = low if high is None else high
    count = len(statement.args)
    if low <= count <= high:
        return True
    if low == high:
        wanted = f"{low} argument{'s' if low != 1 else ''}"
    else:
        wanted = f"{low} to {high} arguments"
    ctx.error(statement.where, f"'{statement.name}' takes {wanted}, got {count}")
    return False


def no_block(ctx: Context, statement: Statement) -> bool:
    if statement.children is not None:
        ctx.error(statement.where, f"'{statement.name}' does not take a block")
        return False
    return True


def convert(ctx: Context, token: Token, what: str, parse: Callable[[str], T]) -> T | None:
    try:
        return parse(token.text)
    except (ValueError, TypeError) as exc:
        detail = str(exc) if str(exc) else "invalid"
        ctx.error(token.where, f"{what}: {token.text!r} is not valid ({detail})")
        return None


def integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text, 10)
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high}")
        return value

    return parse


def number(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high or value != value:
            raise ValueError(f"must be {low:g}..{high:g}")
        return value

    return parse


def choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.upper() not in options and text not in options:
            raise ValueError(f"one of {', '.join(options)}")
        return text.upper() if text.upper() in options else text

    return parse


def ip_address(text: str) -> Any:
    return ipaddress.ip_address(text)


def ip_interface(text: str) -> Any:
    return ipaddress.ip_interface(text)


def ip_network(text: str) -> Any:
    if text == "default":
        return ipaddress.ip_network("0.0.0.0/0")
    return ipaddress.ip_network(text, strict=False)


def word_list(statement: Statement) -> list[Token]:
    """The words of a list block (one or more per line), or of the statement's own args."""
    tokens = list(statement.args)
    for child in statement.children or []:
        tokens += [child.keyword, *child.args]
    return tokens
