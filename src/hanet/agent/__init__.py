"""hanet-agent: builds a node's routers from the server's documents (docs/agent.md).

What exists so far is pure: ``render`` (a router document to its vrrpd instance) and
``reporting`` (which HA states to tell the server, and when)."""
