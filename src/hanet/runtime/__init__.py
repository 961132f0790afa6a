"""The asyncio runtime: sockets, timers and netlink around the pure VRRP core."""
