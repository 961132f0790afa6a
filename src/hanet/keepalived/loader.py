"""Reading keepalived.conf from disk: tokens from every file, ``include`` resolved.

``include PATTERN`` is a glob, relative to the including file's folder; a pattern with no
glob characters must name an existing file. Includes nest up to MAX_DEPTH and never loop.

Only regular files are read, and at most MAX_BYTES in all: a FIFO with no writer would block
the reader forever, and a device such as /dev/zero never ends (its st_size is 0, so the size
has to be counted while reading, not asked for beforehand).
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from hanet.keepalived.model import KeepalivedConfig
from hanet.keepalived.tokens import ConfigSyntaxError, Kind, Location, Token, tokenize

MAX_DEPTH = 8
# For a file with all its includes together. Ten thousand instances take about 1.5 MiB; in
# Python every word of a file costs some 200 bytes once read, so the cap bounds memory too.
MAX_BYTES = 4 * 1024 * 1024

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


@dataclass
class _Budget:
    """What is left of MAX_BYTES for the files still to read."""

    left: int


def _not_regular(mode: int) -> str:
    return f"not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'of an unknown type')})"


def read_config_file(path: Path, budget: _Budget | None = None) -> str:
    """The text of a regular file of at most the budget's bytes, else ConfigSyntaxError."""
    budget = budget if budget is not None else _Budget(MAX_BYTES)
    where = Location(str(path), 0, 0)
    try:
        # Refuse by the name first so that a device is never even opened (opening some has
        # effects), then again on the descriptor, which is what is read: the name may have
        # been replaced in between. O_NONBLOCK: opening a FIFO must not wait for a writer.
        if not stat.S_ISREG(mode := os.stat(path).st_mode):
            raise ConfigSyntaxError(where, _not_regular(mode))
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigSyntaxError(where, f"cannot read: {exc.strerror}") from None
    with open(fd, "rb", closefd=True) as file:
        if not stat.S_ISREG(mode := os.fstat(fd).st_mode):
            raise ConfigSyntaxError(where, _not_regular(mode))
        limit = budget.left
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise ConfigSyntaxError(where, f"cannot read: {exc.strerror}") from None
    if len(data) > limit:
        if limit == MAX_BYTES:
            raise ConfigSyntaxError(where, f"larger than {MAX_BYTES} bytes")
        raise ConfigSyntaxError(
            where,
            f"larger than what is left of the {MAX_BYTES} bytes that the configuration"
            " and all its includes may hold together",
        )
    budget.left -= len(data)
    return data.decode("utf-8", errors="replace")


def load_tokens(
    path: str | Path,
    _depth: int = 0,
    _stack: tuple[str, ...] = (),
    _budget: _Budget | None = None,
) -> list[Token]:
    path = Path(path)
    budget = _budget if _budget is not None else _Budget(MAX_BYTES)
    real = os.path.realpath(path)
    if real in _stack:
        raise ConfigSyntaxError(Location(str(path), 0, 0), "include loop")
    tokens = tokenize(read_config_file(path, budget), str(path))
    return _expand_includes(tokens, path.parent, _depth, (*_stack, real), budget)


def _at_statement_start(tokens: list[Token], index: int) -> bool:
    return index == 0 or tokens[index - 1].kind in (Kind.NEWLINE, Kind.OPEN, Kind.CLOSE)


def _expand_includes(
    tokens: list[Token], folder: Path, depth: int, stack: tuple[str, ...], budget: _Budget
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
            result += _included(pattern_token, folder, depth, stack, budget)
            index += 2
            continue
        result.append(token)
        index += 1
    return result


def _included(
    pattern_token: Token, folder: Path, depth: int, stack: tuple[str, ...], budget: _Budget
) -> list[Token]:
    pattern = pattern_token.text
    full = pattern if os.path.isabs(pattern) else str(folder / pattern)
    matches = sorted(glob.glob(full))
    if not matches and not glob.has_magic(full):
        raise ConfigSyntaxError(pattern_token.where, f"included file {pattern!r} does not exist")
    tokens: list[Token] = []
    for match in matches:
        try:
            included = load_tokens(match, depth + 1, stack, budget)
        except ConfigSyntaxError as exc:
            if exc.where.file != str(Path(match)) or exc.where.line:
                raise
            # What is wrong with the included file itself is shown where it is included.
            raise ConfigSyntaxError(
                pattern_token.where, f"included file {match!r}: {exc.message}"
            ) from None
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
