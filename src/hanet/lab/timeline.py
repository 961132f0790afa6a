"""A fail-over timeline drawn as SVG: per router, who was active when; the crash; the
client's replies and lost probes. Pure: text in, text out (written by the caller)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

WIDTH, LEFT, RIGHT, ROW, TOP = 960, 170, 30, 34, 56
COLOURS = ("#2b7bb9", "#3a9a4a", "#a05cb3", "#c07a1a", "#4a8f8f")


@dataclass(frozen=True)
class Span:
    """``row`` was in a state from ``start`` to ``end`` (seconds, any common origin)."""

    row: str
    start: float
    end: float
    label: str


@dataclass(frozen=True)
class Mark:
    at: float
    label: str


def svg(
    title: str,
    spans: Sequence[Span],
    marks: Sequence[Mark],
    replies: Sequence[float],
    lost: Sequence[float],
    origin: float,
    start: float,
    end: float,
) -> str:
    """The picture; times are shown in ms after ``origin`` (the crash), from ``start`` to
    ``end``. Rows are the spans' rows in order of appearance, then the client's."""
    rows = [*dict.fromkeys(s.row for s in spans), "client"]
    height = TOP + ROW * len(rows) + 60
    span = max(end - start, 1e-3)

    def x(at: float) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (min(max(at, start), end) - start) / span

    def y(row: str) -> float:
        return TOP + ROW * rows.index(row)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="10" y="24" font-size="15" font-weight="bold">{escape(title)}</text>',
    ]
    for row in rows:
        out.append(f'<text x="10" y="{y(row) + 18}">{escape(row)}</text>')
    labels = list(dict.fromkeys(s.label for s in spans))
    for item in spans:
        colour = COLOURS[labels.index(item.label) % len(COLOURS)]
        left, right = x(item.start), x(item.end)
        out.append(
            f'<rect x="{left:.1f}" y="{y(item.row) + 4}" width="{max(right - left, 1):.1f}" '
            f'height="{ROW - 10}" fill="{colour}" opacity="0.85"/>'
        )
        out.append(
            f'<text x="{left + 4:.1f}" y="{y(item.row) + 20}" fill="white">'
            f"{escape(item.label)}</text>"
        )
    client = y("client")
    for at in replies:
        if start <= at <= end:
            out.append(
                f'<line x1="{x(at):.1f}" y1="{client + 6}" x2="{x(at):.1f}" '
                f'y2="{client + ROW - 6}" stroke="#3a9a4a" stroke-width="1"/>'
            )
    for at in lost:
        if start <= at <= end:
            out.append(
                f'<line x1="{x(at):.1f}" y1="{client + 6}" x2="{x(at):.1f}" '
                f'y2="{client + ROW - 6}" stroke="#d03030" stroke-width="1.5"/>'
            )
    bottom = TOP + ROW * len(rows)
    for index, mark in enumerate(marks):
        at = x(mark.at)
        out.append(
            f'<line x1="{at:.1f}" y1="{TOP - 6}" x2="{at:.1f}" y2="{bottom}" '
            f'stroke="#444" stroke-dasharray="4 3"/>'
        )
        out.append(
            f'<text x="{at + 3:.1f}" y="{TOP - 10 - 12 * (index % 2)}">{escape(mark.label)}</text>'
        )
    ticks = 6
    for tick in range(ticks + 1):
        at = start + span * tick / ticks
        out.append(
            f'<text x="{x(at) - 14:.1f}" y="{bottom + 18}">{(at - origin) * 1000:+.0f} ms</text>'
        )
    out.append(
        f'<text x="{LEFT}" y="{bottom + 40}" fill="#555">green: replies to the '
        "client's probes; red: probes lost</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"
