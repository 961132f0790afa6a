"""``hanet vrrpd``: a keepalived-compatible VRRP daemon around hanet.runtime."""
