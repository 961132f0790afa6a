"""Linux adapters: namespaces and netlink through pyroute2, raw sockets from the stdlib."""
