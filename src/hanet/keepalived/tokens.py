"""Tokenizer for keepalived.conf: words, quoted strings, braces and line ends, with positions.

Comments run from ``#`` or ``!`` (outside quotes) to the end of the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    WORD = "word"
    OPEN = "{"
    CLOSE = "}"
    NEWLINE = "newline"


@dataclass(frozen=True, slots=True)
class Location:
    file: str
    line: int
    column: int

    def __str__(self) -> str:
        # Line 0 is the file as a whole (it cannot be read, it is too large...).
        return f"{self.file}:{self.line}:{self.column}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str
    where: Location
    quoted: bool = False


class ConfigSyntaxError(ValueError):
    def __init__(self, where: Location, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


SPECIAL = {"{": Kind.OPEN, "}": Kind.CLOSE}
COMMENT = "#!"


def tokenize(text: str, file: str) -> list[Token]:
    tokens: list[Token] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        col = 0
        while col < len(line):
            char = line[col]
            where = Location(file, line_no, col + 1)
            if char in " \t\r\f\v":
                col += 1
            elif char in COMMENT:
                break
            elif char in SPECIAL:
                tokens.append(Token(SPECIAL[char], char, where))
                col += 1
            elif char == '"':
                end = line.find('"', col + 1)
                if end < 0:
                    raise ConfigSyntaxError(where, "unterminated quoted string")
                tokens.append(Token(Kind.WORD, line[col + 1 : end], where, quoted=True))
                col = end + 1
            else:
                start = col
                while col < len(line) and line[col] not in ' \t\r\f\v"{}' + COMMENT:
                    col += 1
                tokens.append(Token(Kind.WORD, line[start:col], where))
        tokens.append(Token(Kind.NEWLINE, "\n", Location(file, line_no, len(line) + 1)))
    return tokens
