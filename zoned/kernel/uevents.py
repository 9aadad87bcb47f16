"""Node and memory hot-plug, as the kernel announces it: uevents → NODE_CHANGE events.

What the kernel sends (drivers/base/core.c, node.c, memory.c; checked on 6.18): one
netlink datagram per event on ``NETLINK_KOBJECT_UEVENT``, multicast group 1 (the kernel's;
group 2 is udev's re-broadcast)::

    change@/devices/system/node/node0\\0ACTION=change\\0DEVPATH=/devices/system/node/node0\\0
    SUBSYSTEM=node\\0SEQNUM=815\\0

- ``SUBSYSTEM=node`` (``/devices/system/node/nodeN``): ``add`` when a node is registered
  (hot-added memory on a new node), ``remove`` when it is unregistered.
- ``SUBSYSTEM=memory`` (``/devices/system/memory/memoryM``): ``online`` / ``offline`` when
  a memory block changes state (``device_online``/``device_offline``), ``add`` / ``remove``
  when blocks are hot-added or removed. The memory bus adds no variables of its own, so
  the block's node is found in sysfs: ``memoryM/nodeN`` is a link to its node.
- ``change`` (and any action) can be synthesised by writing it to a device's ``uevent``
  file; such messages carry ``SYNTH_UUID``. They are reported like real ones: a node
  change of any kind means "re-read the topology".

Every such message becomes one ``Event(NODE_CHANGE, value=<node id or None>, detail=...)``;
``value`` is None when the node cannot be told (a removed block's sysfs directory is
gone). Other subsystems are ignored. When the socket's buffer overflowed (ENOBUFS),
messages were lost: one NODE_CHANGE with ``value=None`` says so, and the reader must
re-read every node.

Wiring into a loop (the daemon): the fd is readable when messages wait::

    src = UeventSource()
    loop.add_fd(src.fileno(), IN, lambda revents: src.drain())   # FdLoop, level-triggered
    ...
    loop.remove_fd(src.fileno()); src.close()

``drain`` reads until the socket is empty and never blocks, so it consumes the condition
as :class:`zoned.backends.fdloop.FdLoop` requires.

Why not pyroute2's ``UeventSocket`` for the I/O: in pyroute2 0.9 its ``get()`` runs an
asyncio loop and blocks until a message arrives (measured: with nothing pending it never
returns), and messages its transport has read wait in its own queue, where epoll on the
fd cannot see them. A plain non-blocking netlink socket keeps "readable ⇔ messages wait".
The message format is the same one pyroute2's ``MarshalUevent`` parses (the tests check
:func:`parse_uevent` against it).
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from zoned.kernel.roots import SYS_ROOT
from zoned.model.host import Event, EventKind

log = logging.getLogger(__name__)

NETLINK_KOBJECT_UEVENT = 15  # include/uapi/linux/netlink.h
KERNEL_GROUP = 1  # the kernel's own multicast group (udev re-broadcasts on 2)
_LIBUDEV = b"libudev\0"
_RECV = 1 << 16  # UEVENT_BUFFER_SIZE is 2048; a datagram never exceeds this
_RCVBUF = 1 << 20  # hot-adding a DIMM announces many blocks at once

_NODE = re.compile(r"^/devices/system/node/node(\d+)$")
_BLOCK = re.compile(r"^/devices/system/memory/(memory\d+)$")


@dataclass(frozen=True)
class Uevent:
    """One kernel uevent: ``action@devpath`` and its ``KEY=value`` variables."""

    action: str
    devpath: str
    env: Mapping[str, str]

    @property
    def subsystem(self) -> str:
        return self.env.get("SUBSYSTEM", "")


def parse_uevent(data: bytes) -> Uevent | None:
    """A kernel uevent datagram, or None for anything else (udev's re-broadcasts, which
    start with ``libudev\\0``, and malformed messages)."""
    if data.startswith(_LIBUDEV):
        return None
    head, _, rest = data.partition(b"\0")
    action, at, devpath = head.decode("utf-8", "replace").partition("@")
    if not at or not action or not devpath.startswith("/"):
        return None
    env: dict[str, str] = {}
    for item in rest.split(b"\0"):
        key, eq, value = item.decode("utf-8", "replace").partition("=")
        if eq and key:
            env[key] = value
    return Uevent(env.get("ACTION", action), env.get("DEVPATH", devpath), env)


def block_node(sys_root: Path, block: str) -> int | None:
    """The node of memory block ``block`` (``memory12``) from its ``nodeN`` link."""
    try:
        for entry in (sys_root / "devices" / "system" / "memory" / block).iterdir():
            m = re.fullmatch(r"node(\d+)", entry.name)
            if m:
                return int(m.group(1))
    except FileNotFoundError:
        return None  # removed already
    return None


def node_change(ev: Uevent, now: float, sys_root: Path = SYS_ROOT) -> Event | None:
    """The NODE_CHANGE event a uevent means, or None when it is not about nodes."""
    if ev.subsystem == "node":
        m = _NODE.match(ev.devpath)
        if m is None:
            return None
        node = int(m.group(1))
        return Event(EventKind.NODE_CHANGE, now, detail=f"node{node} {ev.action}", value=node)
    if ev.subsystem == "memory":
        m = _BLOCK.match(ev.devpath)
        if m is None:
            return None  # /devices/system/memory itself
        block = m.group(1)
        of = block_node(sys_root, block)
        where = f"node{of}" if of is not None else "node unknown"
        return Event(EventKind.NODE_CHANGE, now, detail=f"{block} {ev.action} ({where})", value=of)
    return None


class UeventSource:
    """A non-blocking kernel uevent socket turned into NODE_CHANGE events (see module).

    Needs no privilege to open; the kernel delivers uevents to sockets in the initial
    network namespace. Raises OSError if the socket cannot be made or bound.
    """

    def __init__(
        self,
        *,
        sys_root: Path = SYS_ROOT,
        clock: Callable[[], float] = time.monotonic,
        sock: socket.socket | None = None,
    ) -> None:
        """``sock``: an already bound socket (tests hand in one end of a socketpair)."""
        self._sys_root = sys_root
        self._clock = clock
        if sock is None:
            sock = socket.socket(
                socket.AF_NETLINK,
                socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                NETLINK_KOBJECT_UEVENT,
            )
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
                sock.bind((0, KERNEL_GROUP))
            except OSError:
                sock.close()
                raise
        else:
            sock.setblocking(False)
        self._sock = sock

    def fileno(self) -> int:
        """Readable while uevents wait; watch it with EPOLLIN."""
        return self._sock.fileno()

    def drain(self) -> list[Event]:
        """Every waiting uevent about nodes, as events; never blocks."""
        out: list[Event] = []
        while True:
            try:
                data = self._sock.recv(_RECV)
            except BlockingIOError:
                return out
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # The kernel dropped messages for us: which nodes changed is unknown.
                log.warning("uevents lost (ENOBUFS): every node must be re-read")
                out.append(
                    Event(EventKind.NODE_CHANGE, self._clock(), detail="uevents lost (ENOBUFS)")
                )
                continue
            if not data:
                return out  # a closed peer (tests' socketpairs); netlink never sends this
            ev = parse_uevent(data)
            if ev is None:
                log.debug("not a kernel uevent, ignoring: %r", data[:80])
                continue
            change = node_change(ev, self._clock(), self._sys_root)
            if change is not None:
                out.append(change)

    def close(self) -> None:
        """Close the socket. Safe to call twice."""
        self._sock.close()

    def __enter__(self) -> UeventSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
