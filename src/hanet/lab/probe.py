"""A client's view of an outage: ICMP echo at a fixed rate, every reply time-stamped.

iputils ping slows down while replies are missing, which hides lost probes; this prober keeps
its schedule. It runs as its own process in a lab host (``python -m hanet.lab.probe``), so the
caller needs no thread inside a namespace; on SIGINT it prints one JSON summary.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass

from hanet.lab.lab import Lab
from hanet.vrrp.checksum import internet_checksum

ECHO_REQUEST = {4: 8, 6: 128}
ECHO_REPLY = {4: 0, 6: 129}


@dataclass(frozen=True)
class Outage:
    """The longest silence the client saw: from the last reply before it to the first after."""

    start: float
    end: float
    lost: int

    @property
    def ms(self) -> int:
        return round((self.end - self.start) * 1000)


def echo_request(family: int, ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST[family], 0, 0, ident, seq)
    payload = b"hanet-probe-----"
    if family == 4:  # the kernel fills in the ICMPv6 checksum, not the ICMPv4 one
        checksum = internet_checksum(header + payload)
        header = header[:2] + struct.pack("!H", checksum) + header[4:]
    return header + payload


def probe(target: str, interval: float) -> None:
    address = ipaddress.ip_address(target)
    family = address.version
    if family == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    ident = os.getpid() & 0xFFFF
    sent: list[float] = []
    replies: dict[int, float] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    next_send = time.monotonic()
    while not stopping:
        now = time.monotonic()
        if now >= next_send:
            seq = len(sent) & 0xFFFF
            sent.append(time.time())
            # No route or no neighbour yet: the probe simply counts as lost, as with ping.
            with contextlib.suppress(OSError):
                sock.sendto(echo_request(family, ident, seq), (target, 0))
            next_send += interval
            continue
        try:
            ready, _, _ = select.select([sock], [], [], next_send - now)
        except InterruptedError:
            continue
        if ready:
            data = sock.recv(2048)
            icmp = data[(data[0] & 0x0F) * 4 :] if family == 4 else data
            if len(icmp) >= 8 and icmp[0] == ECHO_REPLY[family]:
                their_ident, seq = struct.unpack("!HH", icmp[4:8])
                if their_ident == ident:
                    if not replies:  # the caller may wait for this before the fault
                        sys.stderr.write("answered\n")
                        sys.stderr.flush()
                    replies.setdefault(seq, time.time())
    json.dump({"sent": sent, "replies": sorted(replies.items())}, sys.stdout)


class Pinger:
    """Drives ``python -m hanet.lab.probe`` in a lab host."""

    def __init__(
        self,
        lab: Lab | None,
        host: str,
        target: str,
        interval: float = 0.01,
        namespace: str | None = None,
    ) -> None:
        """In ``lab``'s host ``host``; or, without a lab, in the network namespace
        ``namespace`` (a lab cloud's VM or node), ``host`` naming it in messages."""
        self.lab, self.host, self.target, self.interval = lab, host, target, interval
        self.namespace = namespace
        self.proc: subprocess.Popen[bytes] | None = None
        self.sent: list[float] = []
        self.replies: list[tuple[int, float]] = []

    def start(self) -> Pinger:
        argv = [sys.executable, "-m", "hanet.lab.probe", self.target, str(self.interval)]
        if self.lab is not None:
            self.proc = self.lab.spawn(self.host, argv, stdout=subprocess.PIPE)
        else:
            assert self.namespace is not None, "a Pinger needs a lab host or a namespace"
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        return self

    def wait_answered(self, timeout: float = 10) -> Pinger:
        """Until the first probe was answered: a fault injected before that would not be
        seen at all (the prober takes a moment to start)."""
        assert self.proc is not None and self.proc.stderr is not None
        ready, _, _ = select.select([self.proc.stderr], [], [], timeout)
        line = self.proc.stderr.readline() if ready else b""
        if line.strip() != b"answered":
            raise TimeoutError(f"{self.host}: no reply from {self.target} within {timeout} s")
        return self

    def kill(self) -> None:
        """Stop without a summary (cleanup after a failure)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        result = json.loads(out)
        self.sent = result["sent"]
        self.replies = [(int(seq), float(t)) for seq, t in result["replies"]]

    def outage(self) -> Outage | None:
        """The longest run of unanswered probes, as the time between the replies around it."""
        worst: Outage | None = None
        for (seq_a, t_a), (seq_b, t_b) in zip(self.replies, self.replies[1:], strict=False):
            if seq_b - seq_a > 1 and (worst is None or t_b - t_a > worst.end - worst.start):
                worst = Outage(t_a, t_b, seq_b - seq_a - 1)
        return worst

    @property
    def lost(self) -> int:
        """Unanswered probes between the first and the last reply."""
        if not self.replies:
            return len(self.sent)
        first, last = self.replies[0][0], self.replies[-1][0]
        return last - first + 1 - len(self.replies)


if __name__ == "__main__":
    probe(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.01)
