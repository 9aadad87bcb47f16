"""The migrate_pages/move_pages wrappers against this machine's kernel (one node is enough:
a query, a move to the node the pages are on, and the errnos)."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

import pytest

from zoned.kernel import mmcalls


def test_move_pages_query_and_move_to_the_same_node() -> None:
    n = 4
    m = mmap.mmap(-1, n * mmcalls.PAGE, flags=mmap.MAP_PRIVATE)
    buf = (ctypes.c_char * len(m)).from_buffer(m)
    try:
        addr = ctypes.addressof(buf)
        buf[0] = b"x"  # page 0 present, pages 1-3 never touched
        buf[2 * mmcalls.PAGE] = b"x"
        addrs = [addr + i * mmcalls.PAGE for i in range(n)]
        where = mmcalls.move_pages(os.getpid(), addrs, None)
        node = where[0]
        assert node >= 0 and where[2] == node
        assert where[1] == where[3] == -errno.ENOENT
        moved = mmcalls.move_pages(os.getpid(), addrs, node)
        assert list(moved)[::2] == [node, node]
        assert mmcalls.move_pages(os.getpid(), [], node).tolist() == []
    finally:
        del buf
        m.close()


def test_move_pages_to_a_missing_node_raises_oserror() -> None:
    m = mmap.mmap(-1, mmcalls.PAGE, flags=mmap.MAP_PRIVATE)
    buf = (ctypes.c_char * len(m)).from_buffer(m)
    try:
        buf[0] = b"x"
        with pytest.raises(OSError) as info:
            mmcalls.move_pages(os.getpid(), [ctypes.addressof(buf)], mmcalls.MASK_BITS - 1)
        assert info.value.errno == errno.ENODEV
        assert "move_pages" in str(info.value)
    finally:
        del buf
        m.close()


def test_migrate_pages_within_one_node_moves_nothing() -> None:
    node = mmcalls.move_pages(os.getpid(), [id(object()) & ~(mmcalls.PAGE - 1)], None)[0]
    assert mmcalls.migrate_pages(os.getpid(), [node], [node]) == 0


def test_migrate_pages_of_a_missing_process_raises_esrch() -> None:
    with pytest.raises(OSError) as info:
        mmcalls.migrate_pages(2**22 + 1, [0], [0])
    assert info.value.errno == errno.ESRCH
