"""Who a token is: a user of the API (``tokens``) or one node's agents (``agent_tokens``).

The server keeps only SHA-256 digests of tokens. A presented token is hashed and its digest
looked up, so it is never compared with a stored one character by character: how long a
check takes depends on the digest, which a caller cannot steer towards a stored one, and
not on how much of a token was right. Tokens appear in no message and no log line."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from aiohttp import web

from hanet.server.config import ServerConfig, Token, digest_of


@dataclass(frozen=True)
class AgentCaller:
    """A request made with the credential of the agents of ``host``."""

    host: str


@dataclass
class Credentials:
    by_digest: dict[str, Token | AgentCaller]
    # Each agent id's host, as the store said when first asked: an agent keeps its host for
    # good (one agent per type and host), so a heartbeat costs no query to check.
    agent_hosts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, config: ServerConfig) -> Credentials:
        by_digest: dict[str, Token | AgentCaller] = {
            digest_of(token): entry for token, entry in config.tokens.items()
        }
        for host, token in config.agent_tokens.items():
            by_digest[digest_of(token)] = AgentCaller(host)
        return cls(by_digest)

    def who(self, token: str | None) -> Token | AgentCaller | None:
        if not token:
            return None
        # Hashed even when it looks like a digest: a caller who read one from a config file
        # does not get in by sending it.
        digest = "sha256:" + hashlib.sha256(token.encode(errors="surrogateescape")).hexdigest()
        return self.by_digest.get(digest)


CREDENTIALS: web.AppKey[Credentials] = web.AppKey("credentials", Credentials)
