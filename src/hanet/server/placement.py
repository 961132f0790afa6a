"""Which agents host a router: least-loaded first, spread over availability zones. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    agent_id: str
    load: int  # routers (or networks) it hosts now
    availability_zone: str | None = None


def choose(
    candidates: Iterable[Candidate],
    count: int,
    *,
    exclude: Iterable[str] = (),
    zones: Iterable[str] = (),
) -> list[str]:
    """Up to ``count`` agent ids, least-loaded first (ties by id, so the choice is stable).

    With availability-zone hints only agents in those zones are used, and the picks go
    round the zones so that one zone's loss leaves a copy elsewhere."""
    skip = set(exclude)
    pool = sorted(
        (c for c in candidates if c.agent_id not in skip), key=lambda c: (c.load, c.agent_id)
    )
    hinted = list(dict.fromkeys(zones))
    if not hinted:
        return [c.agent_id for c in pool[:count]]
    by_zone = {zone: [c for c in pool if c.availability_zone == zone] for zone in hinted}
    chosen: list[str] = []
    while len(chosen) < count and any(by_zone.values()):
        for zone in hinted:
            if by_zone[zone] and len(chosen) < count:
                chosen.append(by_zone[zone].pop(0).agent_id)
    return chosen
