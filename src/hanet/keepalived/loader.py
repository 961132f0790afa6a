"""Reading keepalived.conf from disk: tokens from every file, ``include`` resolved.

``include PATTERN`` is a glob, relative to the including file's folder; a pattern with no
glob characters must name an existing file. Includes nest up to MAX_DEPTH and never loop.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from hanet.keepalived.model import KeepalivedConfig
from hanet.keepalived.tokens import ConfigSyntaxError, Kind, Location, Token, tokenize

MAX_DEPTH = 8
MAX_BYTES = 16 * 1024 * 1024


def load_tokens(path: str | Path, _depth: int = 0, _stack: tuple[str, ...] = ()) -> list[Token]:
    path = Path(path)
    where = Location(str(path), 0, 0)
    real = os.path.realpath(path)
    if real in _stack:
        raise ConfigSyntaxError(where, "include loop")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigSyntaxError(where, f"larger than {MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigSyntaxError(where, f"cannot read: {exc.strerror}") from None
    tokens = tokenize(text, str(path))
    return _expand_includes(tokens, path.parent, _depth, (*_stack, real))


def _at_statement_start(tokens: list[Token], index: int) -> bool:
    return index == 0 or tokens[index - 1].kind in (Kind.NEWLINE, Kind.OPEN, Kind.CLOSE)


def _expand_includes(
    tokens: list[Token], folder: Path, depth: int, stack: tuple[str, ...]
) -> list[Token]:
    result: list[Token] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if (
            token.kind is Kind.WORD
            and token.text == "include"
            and _at_statement_start(tokens, index)
        ):
            pattern_token = tokens[index + 1] if index + 1 < len(tokens) else None
            if pattern_token is None or pattern_token.kind is not Kind.WORD:
                raise ConfigSyntaxError(token.where, "include needs a file name or pattern")
            if depth + 1 > MAX_DEPTH:
                raise ConfigSyntaxError(token.where, f"includes nest deeper than {MAX_DEPTH}")
            result += _included(pattern_token, folder, depth, stack)
            index += 2
            continue
        result.append(token)
        index += 1
    return result


def _included(
    pattern_token: Token, folder: Path, depth: int, stack: tuple[str, ...]
) -> list[Token]:
    pattern = pattern_token.text
    full = pattern if os.path.isabs(pattern) else str(folder / pattern)
    matches = sorted(glob.glob(full))
    if not matches and not glob.has_magic(full):
        raise ConfigSyntaxError(pattern_token.where, f"included file {pattern!r} does not exist")
    tokens: list[Token] = []
    for match in matches:
        included = load_tokens(match, depth + 1, stack)
        tokens += included
        tokens.append(Token(Kind.NEWLINE, "\n", pattern_token.where))
    return tokens


def load_config(path: str | Path) -> KeepalivedConfig:
    """Parse a keepalived.conf; ``problems`` holds every error, warning and notice found."""
    from hanet.keepalived.model import KeepalivedConfig, Problem
    from hanet.keepalived.sections import build
    from hanet.keepalived.syntax import parse

    try:
        statements = parse(load_tokens(path))
    except ConfigSyntaxError as exc:
        return KeepalivedConfig(problems=[Problem(exc.where, exc.message)])
    return build(statements)
