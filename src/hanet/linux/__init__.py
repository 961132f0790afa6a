"""Linux adapters: namespaces, vrrpd's own rtnetlink sockets, pyroute2 for the agent's
builders, raw sockets from the stdlib."""
