"""Per-namespace sysctls under /proc/sys, written only when they differ."""

from __future__ import annotations

from pathlib import Path

from hanet.linux.netns import inside


def set_sysctls(namespace: str | None, values: dict[str, str]) -> None:
    """``values`` (keys relative to /proc/sys) in ``namespace`` (None: this one)."""
    with inside(namespace):
        for key, value in values.items():
            path = Path("/proc/sys", key)
            if path.read_text().strip() != value:
                path.write_text(value)


def disable_ipv6(namespace: str | None, device: str) -> None:
    """No IPv6 on an L2-only device (a bridge, a VXLAN device, a bridge's tap), as Neutron's
    linuxbridge agent does for its bridges: without it each such device sends router
    solicitations, MLD reports and DAD probes, each leaving an entry in the kernel's
    neighbour table, which every namespace shares. A kernel without IPv6 has nothing to do."""
    if Path("/proc/sys/net/ipv6").exists():
        set_sysctls(namespace, {f"net/ipv6/conf/{device}/disable_ipv6": "1"})
