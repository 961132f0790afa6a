"""Plain rtnetlink sockets in a namespace: one that hears link events (read by an event
loop), and one that asks and waits for answers (on vrrpd's netlink thread).

Both are bare kernel sockets: the Python side of each is a few hundred bytes, where a
pyroute2 socket costs about 19 KB, and vrrpd keeps one per router namespace. Messages are
made and read by hanet.linux.rtnl_messages and hanet.linux.rtnl_requests.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket

from hanet.linux.netns import check_in, inside
from hanet.linux.rtnl_messages import (
    RTMGRP_LINK,
    AddressSeen,
    DumpDone,
    KernelError,
    LinkSeen,
    MalformedMessage,
    Message,
    address_dump_request,
    link_get_request,
    parse_messages,
)

RECEIVE_SIZE = 65536  # above the kernel's largest datagram for a dump (32 KB)
DUMP_TRIES = 5
ANSWER_TIMEOUT = 30.0  # a change waits for the RTNL lock, held by whoever builds routers


class NetlinkFailure(OSError):
    """The kernel refused a request: ``errno`` says why."""


def _netlink_socket(netns: str | None, groups: int, flags: int) -> socket.socket:
    with inside(netns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | flags,
                             socket.NETLINK_ROUTE)  # fmt: skip
    try:
        check_in(sock, netns)  # acting on the wrong namespace could change the host's own
        sock.bind((0, groups))
    except BaseException:
        sock.close()
        raise
    return sock


def open_link_socket(netns: str | None) -> socket.socket:
    """Non-blocking, bound to the link group of ``netns`` (None: the calling thread's)."""
    return _netlink_socket(netns, RTMGRP_LINK, socket.SOCK_NONBLOCK)


class RtnlSocket:
    """Requests and their answers, one at a time; each call blocks its thread (vrrpd's
    netlink thread) until the kernel has answered, at most ``timeout`` seconds."""

    def __init__(self, netns: str | None, timeout: float = ANSWER_TIMEOUT) -> None:
        self.netns = netns
        self.sock = _netlink_socket(netns, 0, 0)
        self.sock.settimeout(timeout)
        self._seq = itertools.count(1)

    def next_seq(self) -> int:
        return next(self._seq)

    def close(self) -> None:
        self.sock.close()

    def change(self, request: bytes, seq: int) -> None:
        """Send a request that asks for an acknowledgement; NetlinkFailure if refused."""
        self._exchange(request, seq)

    def link(self, name: str) -> LinkSeen | None:
        """The link called ``name``, or None."""
        seq = self.next_seq()
        try:
            answers = self._exchange(link_get_request(seq, name), seq)
        except NetlinkFailure as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return next((a for a in answers if isinstance(a, LinkSeen)), None)

    def addresses(self, index: int) -> list[AddressSeen]:
        """The IPv4 and IPv6 addresses of link ``index``, in the kernel's order."""
        seq = self.next_seq()
        answers = self._exchange(address_dump_request(seq), seq, dump=True)
        return [a for a in answers if isinstance(a, AddressSeen) and a.index == index]

    def _exchange(self, request: bytes, seq: int, dump: bool = False) -> list[Message]:
        """Messages answering ``seq`` until its end: NLMSG_DONE for a dump, the
        acknowledgement otherwise. Answers to earlier requests (one that timed out) are
        dropped. A dump the kernel marks interrupted (links changed under it) is asked
        again, a few times at most."""
        for _ in range(DUMP_TRIES):
            answers = self._exchange_once(request, seq, dump)
            if answers is not None:
                return answers
        raise NetlinkFailure(errno.EAGAIN, f"dump interrupted {DUMP_TRIES} times")

    def _exchange_once(self, request: bytes, seq: int, dump: bool) -> list[Message] | None:
        """None for an interrupted dump."""
        self.sock.send(request)
        answers: list[Message] = []
        while True:
            try:
                data = self.sock.recv(RECEIVE_SIZE)
            except TimeoutError:
                raise NetlinkFailure(errno.ETIMEDOUT, "the kernel did not answer") from None
            try:
                messages = parse_messages(data)
            except MalformedMessage as exc:
                raise NetlinkFailure(errno.EBADMSG, f"unreadable answer: {exc}") from None
            for found in messages:
                if found.seq != seq:
                    continue
                if isinstance(found, KernelError):
                    if found.errno:
                        raise NetlinkFailure(found.errno, os.strerror(found.errno))
                    if not dump:
                        return answers
                elif isinstance(found, DumpDone):
                    return None if found.interrupted else answers
                else:
                    answers.append(found)
