"""Fork, exec and exit events from the kernel's process connector (netlink, root only).

pyroute2's ``ProcEventSocket`` opens the socket, joins the ``CN_IDX_PROC`` group and sends
the LISTEN control message. Reading is done here, on the raw socket with ``MSG_DONTWAIT``:
pyroute2 0.9's ``get()`` runs its own asyncio loop and blocks until a message arrives,
which does not fit a daemon that polls many fds in one loop, and it cannot say "nothing
more right now". Decoding is done with ``struct`` against the kernel's fixed layout
(``include/uapi/linux/cn_proc.h``): a burst of thousands of execs per second must cost
microseconds per event, not pyroute2's ~100 µs per parsed message (measured here).

Bounded: ``drain`` reads at most ``limit`` datagrams per call; the rest waits in the
socket's receive buffer (``rcvbuf`` bytes, forced as root). When that buffer overflows the
kernel drops events and the next read fails with ENOBUFS; ``drain`` then yields an
``OVERRUN`` event in place of what was lost, and the reader is expected to rescan
``/proc``. No queue in userspace grows without bound.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
from dataclasses import dataclass
from enum import Enum
from typing import Any

from zoned.errors import Unsupported

log = logging.getLogger(__name__)

# include/uapi/linux/cn_proc.h
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

SO_RCVBUFFORCE = 33  # asm-generic/socket.h; not exported by Python's socket module

_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_HEAD = struct.Struct("=IIQ")  # proc_event: what, cpu, timestamp_ns (after cn_msg)
_HEAD_AT = _NLMSG.size + 20  # cn_msg: idx, val, seq, ack (u32), len, flags (u16)
_DATA_AT = _HEAD_AT + _HEAD.size
_FORK = struct.Struct("=IIII")  # parent_pid, parent_tgid, child_pid, child_tgid
_EXEC = struct.Struct("=II")  # process_pid, process_tgid
_EXIT = struct.Struct("=IIII")  # process_pid, process_tgid, exit_code, exit_signal

# The control message that stops this socket's subscription: nlmsghdr (NLMSG_DONE) +
# cn_msg (CN_IDX_PROC, CN_VAL_PROC, len 4) + PROC_CN_MCAST_IGNORE.
_IGNORE = _NLMSG.pack(_HEAD_AT + 4, 3, 0, 0, 0) + struct.pack("=IIIIHHI", 1, 1, 0, 0, 4, 0, 2)

# Receive buffer sizing. Measured (kernel 6.18, bench/exec_latency.py and a socket left
# unread): each datagram takes 832 bytes of the buffer (its skb's truesize, not its 76-96
# bytes), and an exec'd process sends at least three (fork, exec, exit). The buffer must
# hold what arrives while the loop is busy elsewhere: an engine step, or the /proc rescan
# after an overrun. The default holds a burst at BURST_RATE for STALL_S with nobody reading
# (10,000 execs: ten times what posix_spawn reaches on the 2-CPU build machine).
EVENT_TRUESIZE = 832  # bytes of receive buffer per datagram
DATAGRAMS_PER_EXEC = 3
BURST_RATE = 10_000  # execs per second
STALL_S = 1.0


def rcvbuf_for(rate: float, stall_s: float) -> int:
    """The size to ask (SO_RCVBUF[FORCE]) so that ``rate`` execs/s for ``stall_s`` unread
    seconds fit; the kernel grants twice what is asked."""
    return int(rate * stall_s * DATAGRAMS_PER_EXEC * EVENT_TRUESIZE) // 2


DEFAULT_RCVBUF = rcvbuf_for(BURST_RATE, STALL_S)  # 12.5 MB asked, 25 MB granted
DEFAULT_LIMIT = 4096  # datagrams per drain() call


class ProcEventKind(Enum):
    FORK = "fork"  # a new process (not a thread): pid is the child, parent its parent
    EXEC = "exec"  # pid ran execve(); its /proc files show the new program
    EXIT = "exit"  # the process (thread group) exited
    OVERRUN = "overrun"  # events were lost here (ENOBUFS): rescan /proc


@dataclass(frozen=True, slots=True)
class ProcEvent:
    """One event. ``timestamp_ns`` is the kernel's ``ktime_get_ns()`` (CLOCK_MONOTONIC)."""

    kind: ProcEventKind
    pid: int = 0
    parent: int = 0  # FORK only
    timestamp_ns: int = 0


OVERRUN = ProcEvent(ProcEventKind.OVERRUN)


def decode(data: bytes | bytearray | memoryview) -> list[ProcEvent]:
    """The process events in one datagram; thread forks/exits and other kinds are dropped."""
    out: list[ProcEvent] = []
    offset = 0
    end = len(data)
    while offset + _DATA_AT <= end:
        length = _NLMSG.unpack_from(data, offset)[0]
        if length < _DATA_AT or offset + length > end:
            break
        what, _cpu, ts = _HEAD.unpack_from(data, offset + _HEAD_AT)
        at = offset + _DATA_AT
        if what == PROC_EVENT_EXEC and length >= _DATA_AT + _EXEC.size:
            _pid, tgid = _EXEC.unpack_from(data, at)
            out.append(ProcEvent(ProcEventKind.EXEC, tgid, 0, ts))
        elif what == PROC_EVENT_FORK and length >= _DATA_AT + _FORK.size:
            _ppid, ptgid, pid, tgid = _FORK.unpack_from(data, at)
            if pid == tgid:  # a new thread group, not a thread
                out.append(ProcEvent(ProcEventKind.FORK, tgid, ptgid, ts))
        elif what == PROC_EVENT_EXIT and length >= _DATA_AT + _EXIT.size:
            pid, tgid, _code, _sig = _EXIT.unpack_from(data, at)
            if pid == tgid:
                out.append(ProcEvent(ProcEventKind.EXIT, tgid, 0, ts))
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return out


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Ask for a ``size``-byte receive buffer; the bytes granted. SO_RCVBUFFORCE (root) goes
    past ``net.core.rmem_max``; without the capability, SO_RCVBUF, which is capped."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


class ProcWatch:
    """A subscription to the process connector. Needs CAP_NET_ADMIN (root).

    ``fileno()`` is for the caller's poll/epoll (readable: events wait); ``drain()`` never
    blocks. Raises Unsupported when the connector is not available.
    """

    def __init__(self, *, rcvbuf: int = DEFAULT_RCVBUF, limit: int = DEFAULT_LIMIT) -> None:
        try:
            from pyroute2.netlink.connector.cn_proc import ProcEventSocket
        except ImportError as exc:
            raise Unsupported(f"pyroute2 with the process connector is needed: {exc}") from exc
        self.limit = limit
        self._nl: Any = None
        try:
            self._nl = ProcEventSocket()
            self._nl.bind()
            self._sock: socket.socket = self._nl.asyncore.socket
            self._set_rcvbuf(rcvbuf)
            self._nl.control(listen=True)
        except OSError as exc:
            self.close()
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            raise Unsupported(
                f"cannot listen to the process connector ({name}): needs root and a kernel"
                " with CONFIG_PROC_EVENTS"
            ) from exc
        self._buf = bytearray(8192)
        self.overruns = 0

    def _set_rcvbuf(self, size: int) -> None:
        granted = set_rcvbuf(self._sock, size)
        if granted < 2 * size:
            log.warning(
                "process events: receive buffer %d bytes, not the %d asked (no"
                " CAP_NET_ADMIN for SO_RCVBUFFORCE, capped by net.core.rmem_max): a burst"
                " of more than %d execs can overrun it (then /proc is rescanned)",
                granted,
                2 * size,
                granted // (DATAGRAMS_PER_EXEC * EVENT_TRUESIZE),
            )

    @property
    def rcvbuf(self) -> int:
        """The receive buffer the kernel granted (bytes; it doubles the asked size)."""
        return int(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self, limit: int | None = None) -> list[ProcEvent]:
        """Events waiting now, oldest first, at most ``limit`` datagrams' worth (default
        ``self.limit``). Lost events show as one ``OVERRUN`` where they were lost."""
        out: list[ProcEvent] = []
        recv_into = self._sock.recv_into
        buf = self._buf
        for _ in range(limit if limit is not None else self.limit):
            try:
                n = recv_into(buf, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1
                if not out or out[-1] is not OVERRUN:
                    out.append(OVERRUN)
                continue
            out.extend(decode(memoryview(buf)[:n]))
        return out

    def close(self) -> None:
        """Stop listening and close the socket. Safe to call twice."""
        nl, self._nl = self._nl, None
        if nl is None:
            return
        # pyroute2's control(listen=False) waits for the ack through its own loop, which
        # hangs once this class has been reading the socket itself: send it raw, unwaited.
        try:
            self._sock.send(_IGNORE)
        except OSError as exc:
            log.debug("process connector IGNORE failed (%s), closing anyway", exc)
        nl.close()

    def __enter__(self) -> ProcWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
