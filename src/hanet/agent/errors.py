"""What the agent's pure pieces raise for input they cannot realise."""

from __future__ import annotations


class RouterError(ValueError):
    """One router's settings cannot be realised: says which router, which field and why, so
    the agent can put that router in ERROR and carry on with the others."""

    def __init__(self, router: str, where: str, reason: str) -> None:
        super().__init__(f"router {router}: {where}: {reason}")
        self.router = router
        self.where = where
        self.reason = reason
