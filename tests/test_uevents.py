"""zoned.kernel.uevents: kernel uevent datagrams → NODE_CHANGE events.

The datagrams below were captured on the build machine (6.18) after writing ``change`` to
``/sys/devices/system/node/node0/uevent`` and ``/sys/devices/system/memory/memory0/uevent``;
the online/offline/add/remove ones follow the same format (drivers/base/core.c
kobject_uevent_env: ``action@devpath`` then ``ACTION``, ``DEVPATH``, ``SUBSYSTEM``, the
bus's own variables (none for node and memory), ``SEQNUM``).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2.netlink.uevent import MarshalUevent

from tests.support.realhost import need
from zoned.kernel.uevents import UeventSource, node_change, parse_uevent
from zoned.model.host import EventKind

NODE0_CHANGE = (
    b"change@/devices/system/node/node0\x00ACTION=change\x00DEVPATH=/devices/system/node/node0"
    b"\x00SUBSYSTEM=node\x00SYNTH_UUID=0\x00SEQNUM=815\x00"
)
MEMORY0_CHANGE = (
    b"change@/devices/system/memory/memory0\x00ACTION=change\x00"
    b"DEVPATH=/devices/system/memory/memory0\x00SUBSYSTEM=memory\x00SYNTH_UUID=0\x00SEQNUM=816\x00"
)


def kernel_uevent(action: str, devpath: str, subsystem: str, seqnum: int) -> bytes:
    """A uevent as kobject_uevent_env formats it (no bus variables: node, memory)."""
    items = [f"{action}@{devpath}", f"ACTION={action}", f"DEVPATH={devpath}"]
    items += [f"SUBSYSTEM={subsystem}", f"SEQNUM={seqnum}"]
    return b"".join(i.encode() + b"\x00" for i in items)


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """memory5 and memory6 on node 3, memory7 on node 4, as sysfs links them."""
    system = tmp_path / "devices" / "system"
    for n in (3, 4):
        (system / "node" / f"node{n}").mkdir(parents=True)
    for block, n in (("memory5", 3), ("memory6", 3), ("memory7", 4)):
        (system / "memory" / block).mkdir(parents=True)
        (system / "memory" / block / f"node{n}").symlink_to(f"../../node/node{n}")
        (system / "memory" / block / "state").write_text("online\n")
    return tmp_path


# ------------------------------------------------------------------------------ parsing


def test_parse_captured_datagrams() -> None:
    ev = parse_uevent(NODE0_CHANGE)
    assert ev is not None
    assert (ev.action, ev.devpath, ev.subsystem) == ("change", "/devices/system/node/node0", "node")
    assert ev.env["SEQNUM"] == "815"
    mem = parse_uevent(MEMORY0_CHANGE)
    assert mem is not None
    assert (mem.action, mem.devpath, mem.subsystem) == (
        "change",
        "/devices/system/memory/memory0",
        "memory",
    )


@pytest.mark.parametrize(
    "data",
    [
        NODE0_CHANGE,
        MEMORY0_CHANGE,
        kernel_uevent("offline", "/devices/system/memory/memory7", "memory", 9),
    ],
)
def test_parse_agrees_with_pyroute2(data: bytes) -> None:
    (msg,) = MarshalUevent().parse(data)
    ev = parse_uevent(data)
    assert ev is not None
    assert msg["header"]["message"] == f"{ev.action}@{ev.devpath}"
    for key, value in ev.env.items():
        assert msg.get(key) == value


@pytest.mark.parametrize(
    "data",
    [
        b"libudev\x00\xfe\xed\xca\xfe" + b"\x00" * 32 + b"ACTION=add\x00",  # udev's, group 2
        b"",
        b"no at sign\x00ACTION=add\x00",
        b"add@\x00",
        b"add@relative/path\x00",
    ],
)
def test_parse_ignores_what_is_not_a_kernel_uevent(data: bytes) -> None:
    assert parse_uevent(data) is None


# ------------------------------------------------------------------------------ meaning


def test_node_add_and_remove(sysfs: Path) -> None:
    for action in ("add", "remove", "change"):
        ev = parse_uevent(kernel_uevent(action, "/devices/system/node/node9", "node", 1))
        assert ev is not None
        got = node_change(ev, 5.0, sysfs)
        assert got is not None
        assert (got.kind, got.value, got.at, got.detail) == (
            EventKind.NODE_CHANGE,
            9,
            5.0,
            f"node9 {action}",
        )
        assert got.container is None


def test_memory_block_online_offline_names_its_node(sysfs: Path) -> None:
    for block, node in (("memory5", 3), ("memory7", 4)):
        for action in ("online", "offline"):
            ev = parse_uevent(kernel_uevent(action, f"/devices/system/memory/{block}", "memory", 2))
            assert ev is not None
            got = node_change(ev, 0.0, sysfs)
            assert got is not None
            assert (got.value, got.detail) == (node, f"{block} {action} (node{node})")


def test_removed_block_has_no_node_to_name(sysfs: Path) -> None:
    ev = parse_uevent(kernel_uevent("remove", "/devices/system/memory/memory99", "memory", 3))
    assert ev is not None
    got = node_change(ev, 0.0, sysfs)
    assert got is not None
    assert (got.kind, got.value) == (EventKind.NODE_CHANGE, None)
    assert "node unknown" in got.detail


@pytest.mark.parametrize(
    ("devpath", "subsystem"),
    [
        ("/devices/virtual/net/veth0", "net"),
        ("/devices/system/cpu/cpu1", "cpu"),
        ("/devices/system/memory", "memory"),  # the bus itself, not a block
        ("/devices/system/node", "node"),
    ],
)
def test_other_devices_are_ignored(sysfs: Path, devpath: str, subsystem: str) -> None:
    ev = parse_uevent(kernel_uevent("add", devpath, subsystem, 4))
    assert ev is not None
    assert node_change(ev, 0.0, sysfs) is None


# ------------------------------------------------------------------------------ the source


@pytest.fixture
def pair(sysfs: Path) -> Iterator[tuple[socket.socket, UeventSource]]:
    """A datagram socketpair standing in for the netlink socket."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    src = UeventSource(sys_root=sysfs, clock=lambda: 7.0, sock=theirs)
    with ours, src:
        yield ours, src


def test_drain_turns_waiting_datagrams_into_events_and_never_blocks(
    pair: tuple[socket.socket, UeventSource],
) -> None:
    peer, src = pair
    assert src.drain() == []  # nothing waiting: returns at once
    for data in (
        kernel_uevent("online", "/devices/system/memory/memory6", "memory", 10),
        kernel_uevent("add", "/devices/virtual/net/veth0", "net", 11),
        b"libudev\x00" + b"\x00" * 32,
        kernel_uevent("add", "/devices/system/node/node4", "node", 12),
    ):
        peer.send(data)
    assert select.select([src], [], [], 0)[0] == [src]  # fileno() is the readable fd
    events = src.drain()
    assert [(e.kind, e.value, e.at) for e in events] == [
        (EventKind.NODE_CHANGE, 3, 7.0),
        (EventKind.NODE_CHANGE, 4, 7.0),
    ]
    assert select.select([src], [], [], 0)[0] == []  # drained: the condition is consumed
    assert src.drain() == []


class _Overflowed(socket.socket):
    """A socket whose first receive reports ENOBUFS, as netlink does after an overflow."""

    overflowed = False

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not self.overflowed:
            self.overflowed = True
            raise OSError(errno.ENOBUFS, os.strerror(errno.ENOBUFS))
        return super().recv(bufsize, flags)


def test_lost_uevents_are_reported_as_an_unknown_node_change(sysfs: Path) -> None:
    sock = _Overflowed(socket.AF_UNIX, socket.SOCK_DGRAM)
    with UeventSource(sys_root=sysfs, clock=lambda: 1.0, sock=sock) as src:
        (ev,) = src.drain()
    assert (ev.kind, ev.value, ev.detail) == (EventKind.NODE_CHANGE, None, "uevents lost (ENOBUFS)")


# ------------------------------------------------------------------------------ real kernel


def test_real_socket_opens_and_drains_without_blocking() -> None:
    with UeventSource() as src:
        t0 = time.monotonic()
        events = src.drain()
        assert time.monotonic() - t0 < 1.0
        # Whatever the host did meanwhile, only node changes come out.
        assert all(e.kind is EventKind.NODE_CHANGE for e in events)


@pytest.mark.root
def test_real_synthetic_node_uevent_arrives_as_node_change() -> None:
    """Writing ``change`` to a node's ``uevent`` file makes the kernel send a synthetic
    uevent (kobject_synth_uevent); nothing about the node changes."""
    need(os.geteuid() == 0, "needs root to write a device's uevent file")
    trigger = Path("/sys/devices/system/node/node0/uevent")
    need(trigger.exists(), f"needs {trigger}")
    with UeventSource() as src:
        trigger.write_text("change")
        end = time.monotonic() + 5.0
        got: list[int | None] = []
        while 0 not in got:
            left = end - time.monotonic()
            assert left > 0, f"no uevent for node0 within 5 s; got {got}"
            select.select([src], [], [], left)
            got += [e.value for e in src.drain()]
