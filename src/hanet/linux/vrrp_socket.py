"""The raw IP socket (protocol 112) that carries VRRP on one interface.

One socket per (namespace, interface, family). It joins 224.0.0.18 or ff02::12, sends with
TTL / hop limit 255 and TOS 0xc0 (as keepalived does), and hands received packets back as a
whole IP packet so that one decoder (hanet.vrrp.decode_ip_packet) checks everything.

IPv4 adverts to 224.0.0.18 go out as whole Ethernet frames on a packet socket when the
interface's MAC is known: sent through the IP stack, each interface that sends one keeps an
entry for 224.0.0.18 in the kernel's neighbour table, and that table is shared by every
namespace of the machine (1,024 entries by default, gc_thresh3). A network node with a
thousand routers, each in its own namespace, filled it: new entries were refused and
adverts went unsent ("neighbor table overflow"). Frames need no entry. The frame is what
the kernel would send: the multicast MAC of RFC 1112 §6.4, TTL 255, TOS 0xc0.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import socket
import struct
from collections.abc import Iterable
from typing import Any

from hanet.linux.announce_socket import close_off_loop
from hanet.vrrp.codec import GROUP_V4, GROUP_V6, PROTOCOL_VRRP, IPAddress, ipv4_header

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)
TOS_NETWORK_CONTROL = 0xC0
RECV_BUFFER = 65535
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
RECEIVE_SOCKET_BUFFER = 4 << 20  # bytes; about 5,000 adverts of the kernel's truesize
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
OVERFLOW_SPACE = socket.CMSG_SPACE(4)  # SO_RXQ_OVFL's u32
SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
# Classic BPF opcodes (linux/filter.h).
BPF_LD, BPF_LDX, BPF_JMP, BPF_RET = 0x00, 0x01, 0x05, 0x06
BPF_B, BPF_ABS, BPF_IND, BPF_MSH, BPF_JEQ, BPF_K = 0x10, 0x20, 0x40, 0xA0, 0x10, 0x00
MAX_FILTERED_VRIDS = 200  # a jump offset is one byte
ETH_P_IP = 0x0800
GROUP_V4_MAC = b"\x01\x00\x5e\x00\x00\x12"  # 224.0.0.18's (RFC 1112 §6.4)
FRAMED = "frame"  # marks what prepare() returned for a framed send


class VrrpSocket:
    def __init__(self, ifname: str, ifindex: int, family: int, mac: bytes | None = None) -> None:
        """Open it in the interface's namespace. With the interface's ``mac``, IPv4
        multicast adverts are sent as frames (see the module's docstring)."""
        self.ifname, self.ifindex, self.family = ifname, ifindex, family
        self.mac = mac if family == socket.AF_INET else None
        self.frames: socket.socket | None = None
        self._prepared: dict[tuple[IPAddress, IPAddress], tuple[Any, Any, Any]] = {}
        # Packets the kernel dropped because our receive buffer was full: as it last said
        # (a u32 that counts from the socket's opening), and how many nobody took yet.
        self._overflow_mark = 0
        self.overflows = 0
        self.sock = socket.socket(family, socket.SOCK_RAW, PROTOCOL_VRRP)
        try:
            self._configure()
            if self.mac is not None:
                # Protocol 0 and never bound: it receives nothing, and opening it costs no
                # RCU grace period (see hanet.linux.announce_socket).
                self.frames = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                self.frames.setblocking(False)
        except OSError:
            self.sock.close()
            raise

    def _configure(self) -> None:
        s = self.sock
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
        try:
            # Masters send all adverts of one interval together (a grid, see the state
            # machine), so a backup of hundreds must hold a whole burst: past rmem_max.
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_SOCKET_BUFFER)
        except PermissionError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_SOCKET_BUFFER)
        # What overflows the buffer never reaches us: have the kernel say how much it dropped.
        s.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        if self.family == socket.AF_INET:
            mreqn = struct.pack("4s4si", GROUP_V4.packed, bytes(4), self.ifindex)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreqn)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
            s.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, TOS_NETWORK_CONTROL)
        else:
            mreq = GROUP_V6.packed + struct.pack("@I", self.ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self.ifindex)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, TOS_NETWORK_CONTROL)
        s.setblocking(False)

    def filter_vrids(self, vrids: Iterable[int] | None) -> None:
        """Have the kernel pass only adverts of these VRIDs (classic BPF on the socket);
        None: pass everything. An IPv4 raw socket sees the IP header first (its length in
        the low nibble of byte 0), an IPv6 one the VRRP message; the VRID is the message's
        second byte."""
        if vrids is None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            return
        wanted = sorted(set(vrids))[:MAX_FILTERED_VRIDS]
        program = []
        if self.family == socket.AF_INET:
            program.append((BPF_LDX | BPF_B | BPF_MSH, 0, 0, 0))  # x = 4 * (ihl)
            program.append((BPF_LD | BPF_B | BPF_IND, 0, 0, 1))  # a = byte [x + 1]
        else:
            program.append((BPF_LD | BPF_B | BPF_ABS, 0, 0, 1))  # a = byte [1]
        for index, vrid in enumerate(wanted):
            # Equal: jump to "accept" (after the remaining tests and the "drop").
            program.append((BPF_JMP | BPF_JEQ | BPF_K, len(wanted) - index, 0, vrid))
        program.append((BPF_RET | BPF_K, 0, 0, 0))
        program.append((BPF_RET | BPF_K, 0, 0, 0xFFFF))
        code = b"".join(struct.pack("HBBI", *op) for op in program)
        buffer = ctypes.create_string_buffer(code)
        fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()
        if self.frames is not None:
            close_off_loop(self.frames)  # a packet socket's close waits for a grace period
            self.frames = None

    def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        """Send from ``source``: the checksum's pseudo-header must match the real header."""
        self.send_prepared(message, self.prepare(source, destination, message))

    def send_prepared(self, message: bytes, prepared: tuple[Any, Any, Any]) -> None:
        """Send with what prepare() returned: the hot path of a master, no look-ups."""
        if prepared[0] is FRAMED:  # the whole frame, message included
            assert self.frames is not None
            try:
                self.frames.sendto(prepared[1], prepared[2])
            except OSError as exc:
                # A device that is down: the advert could go nowhere, and the raw IP socket
                # drops it without a word too (a master there goes FAULT by its tracking).
                if exc.errno != errno.ENETDOWN:
                    raise
            return
        self.sock.sendmsg([message], *prepared)

    def prepare(
        self, source: IPAddress, destination: IPAddress, message: bytes
    ) -> tuple[Any, Any, Any]:
        """What send_prepared needs to send ``message``; the caller keeps it with the message
        (hanet.runtime.instance's plans), so a master builds nothing per advert."""
        if self.frames is not None and destination == GROUP_V4:
            assert self.mac is not None
            ip = ipv4_header(source.packed, GROUP_V4.packed, len(message))
            frame = GROUP_V4_MAC + self.mac + struct.pack("!H", ETH_P_IP) + ip + message
            return FRAMED, frame, (self.ifname, ETH_P_IP)
        key = (source, destination)
        prepared = self._prepared.get(key)
        if prepared is None:
            prepared = self._prepared[key] = self._prepare(source, destination)
        return prepared

    def _prepare(self, source: IPAddress, destination: IPAddress) -> tuple[Any, Any, Any]:
        """Ancillary data and address, built once per (source, destination)."""
        if self.family == socket.AF_INET:
            info = struct.pack("I4s4s", self.ifindex, source.packed, bytes(4))
            return [(socket.IPPROTO_IP, IP_PKTINFO, info)], 0, (str(destination), 0)
        info = source.packed + struct.pack("@I", self.ifindex)
        return (
            [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info)],
            0,
            (str(destination), 0, 0, self.ifindex),
        )

    def receive_batch(self, limit: int) -> list[bytes]:
        """Up to ``limit`` waiting packets, each a whole IP packet; [] when none wait.

        One call per wake-up rather than per packet: under load the per-call overhead, and
        the exception that ends every drain, are paid once for a whole burst. Drops the
        kernel reported meanwhile are added to ``overflows``."""
        if self.family != socket.AF_INET:
            packets: list[bytes] = []
            while len(packets) < limit and (packet := self.receive()) is not None:
                packets.append(packet)
            return packets
        # The kernel stamps each packet with its drop count when it queues it, so the first
        # packet's count covers every drop before it, and drops among the rest are told by
        # the first packet of a later batch. One recvmsg per wake-up, then: it costs about
        # twice a recv.
        first = self.receive()
        if first is None:
            return []
        recv, packets = self.sock.recv, [first]
        try:
            for _ in range(limit - 1):
                packets.append(recv(RECV_BUFFER))  # raw IPv4 sockets deliver the IP header
        except (BlockingIOError, InterruptedError):
            pass
        return packets

    def receive(self) -> bytes | None:
        """One packet as a whole IP packet, or None when nothing is waiting."""
        try:
            if self.family == socket.AF_INET:
                data, ancillary, _flags, _peer = self.sock.recvmsg(RECV_BUFFER, OVERFLOW_SPACE)
                if ancillary:
                    self._note_overflow(ancillary)
                return data
            data, ancillary, _flags, peer = self.sock.recvmsg(
                RECV_BUFFER, socket.CMSG_SPACE(64) * 2 + OVERFLOW_SPACE
            )
        except (BlockingIOError, InterruptedError):
            return None
        if len(ancillary) > 2:  # more than the hop limit and the packet info
            self._note_overflow(ancillary)
        return _rebuild_ipv6_header(data, ancillary, peer[0])

    def _note_overflow(self, ancillary: list[tuple[int, int, bytes]]) -> None:
        """The kernel attaches its drop count to each packet once it is not zero."""
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(data) >= 4:
                mark = struct.unpack("@I", data[:4])[0]
                self.overflows += (mark - self._overflow_mark) % (1 << 32)
                self._overflow_mark = mark

    def take_overflows(self) -> int:
        """Packets the kernel dropped since the last call, as far as it has told us."""
        count, self.overflows = self.overflows, 0
        return count


def _rebuild_ipv6_header(
    payload: bytes, ancillary: list[tuple[int, int, bytes]], peer: str
) -> bytes:
    """IPv6 raw sockets strip the header; put back the fields a receiver must check."""
    hop_limit = 0
    destination = GROUP_V6
    for level, kind, data in ancillary:
        if level != socket.IPPROTO_IPV6:
            continue
        if kind == socket.IPV6_HOPLIMIT and len(data) >= 4:
            hop_limit = struct.unpack("@i", data[:4])[0]
        elif kind == socket.IPV6_PKTINFO and len(data) >= 16:
            destination = ipaddress.IPv6Address(data[:16])
    source = ipaddress.IPv6Address(peer.split("%", 1)[0])
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(payload), PROTOCOL_VRRP, hop_limit & 0xFF,
        source.packed, destination.packed,
    )  # fmt: skip
    return header + payload
