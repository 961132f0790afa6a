"""From tokens to a tree of statements: ``keyword args... [{ children }]``.

A block may open on the statement's line or on the next one, and a closing brace may end a
line that holds a statement (``auth_pass secret }``), as keepalived allows.

Blocks nest at most MAX_NESTING deep: keepalived's own sections go four deep
(``virtual_server { real_server { HTTP_GET { url {`` ), and a bound keeps the recursive
parser, and everything that walks the tree after it, far from Python's recursion limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hanet.keepalived.tokens import ConfigSyntaxError, Kind, Location, Token

MAX_NESTING = 16


@dataclass
class Statement:
    keyword: Token
    args: list[Token]
    children: list[Statement] | None = None
    closing: Location | None = None

    @property
    def name(self) -> str:
        return self.keyword.text

    @property
    def where(self) -> Location:
        return self.keyword.where

    @property
    def words(self) -> list[str]:
        return [t.text for t in self.args]


@dataclass
class _Cursor:
    tokens: list[Token]
    index: int = 0
    opened: list[Token] = field(default_factory=list)

    def peek(self) -> Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def next_significant(self) -> Token | None:
        probe = self.index
        while probe < len(self.tokens) and self.tokens[probe].kind is Kind.NEWLINE:
            probe += 1
        return self.tokens[probe] if probe < len(self.tokens) else None


def parse(tokens: list[Token]) -> list[Statement]:
    cursor = _Cursor(tokens)
    return _block(cursor, opener=None, depth=0)


def _block(cursor: _Cursor, opener: Token | None, depth: int) -> list[Statement]:
    statements: list[Statement] = []
    while (token := cursor.peek()) is not None:
        if token.kind is Kind.NEWLINE:
            cursor.index += 1
        elif token.kind is Kind.CLOSE:
            if opener is None:
                raise ConfigSyntaxError(token.where, "'}' closes no block")
            cursor.index += 1
            return statements
        elif token.kind is Kind.OPEN:
            raise ConfigSyntaxError(token.where, "'{' must follow a keyword")
        else:
            statements.append(_statement(cursor, depth))
    if opener is not None:
        raise ConfigSyntaxError(opener.where, "'{' is never closed")
    return statements


def _statement(cursor: _Cursor, depth: int) -> Statement:
    keyword = cursor.tokens[cursor.index]
    cursor.index += 1
    args: list[Token] = []
    while (token := cursor.peek()) is not None and token.kind is Kind.WORD:
        args.append(token)
        cursor.index += 1
    statement = Statement(keyword, args)
    following = cursor.next_significant()
    if following is not None and following.kind is Kind.OPEN:
        if depth >= MAX_NESTING:
            raise ConfigSyntaxError(following.where, f"blocks nest deeper than {MAX_NESTING}")
        # The brace may stand on a later line: nothing else can follow a statement there.
        while cursor.peek() is not following:
            cursor.index += 1
        cursor.index += 1
        statement.children = _block(cursor, following, depth + 1)
        statement.closing = cursor.tokens[cursor.index - 1].where
    return statement
