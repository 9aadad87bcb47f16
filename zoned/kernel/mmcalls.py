"""The few memory syscalls zoned calls through ctypes: mmap, mincore, munmap, mbind,
migrate_pages, move_pages.

glibc exports ``mmap``, ``munmap`` and ``mincore``; ``mbind``, ``migrate_pages`` and
``move_pages`` live in libnuma, so they go through ``syscall(2)`` with the architecture's
number. Errors become ``OSError`` with the
errno, as the ``os`` module's would.
"""

from __future__ import annotations

import array
import ctypes
import functools
import os
import platform
from collections.abc import Iterable, Sequence

PROT_READ = 1
MAP_SHARED = 1
MAP_FAILED = ctypes.c_void_p(-1).value
MPOL_BIND = 2
MPOL_MF_MOVE = 1 << 1
MPOL_MF_MOVE_ALL = 1 << 2  # move pages other processes map too (CAP_SYS_NICE)
MASK_BITS = 1024  # MAX_NUMNODES on distribution kernels

# Syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic).
SYSCALLS = {
    "x86_64": {"mbind": 237, "migrate_pages": 256, "move_pages": 279},
    "aarch64": {"mbind": 235, "migrate_pages": 238, "move_pages": 239},
}


@functools.cache
def _lib() -> ctypes.CDLL:
    """This process's libc (python links it), with the prototypes used here."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.syscall.restype = ctypes.c_long
    return libc


PAGE = os.sysconf("SC_PAGE_SIZE")


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def map_file(fd: int, length: int) -> int:
    """mmap(PROT_READ, MAP_SHARED) of the first ``length`` bytes; returns the address."""
    addr = _lib().mmap(None, length, PROT_READ, MAP_SHARED, fd, 0)
    if addr is None or addr == MAP_FAILED:
        raise _fail("mmap")
    return int(addr)


def unmap(addr: int, length: int) -> None:
    if _lib().munmap(ctypes.c_void_p(addr), length) != 0:
        raise _fail("munmap")


def resident(addr: int, length: int) -> bytes:
    """mincore(2): one byte per page, bit 0 set when the page is in the page cache."""
    pages = (length + PAGE - 1) // PAGE
    vec = ctypes.create_string_buffer(pages)
    if _lib().mincore(ctypes.c_void_p(addr), length, vec) != 0:
        raise _fail("mincore")
    return vec.raw[:pages]


def touch(addr: int, offsets: Iterable[int]) -> None:
    """Read one byte at each page offset (maps resident pages without allocating)."""
    for off in offsets:
        ctypes.c_char.from_address(addr + off).value  # noqa: B018 - the read is the point


def _nr(name: str) -> int:
    table = SYSCALLS.get(platform.machine())
    if table is None:
        raise OSError(38, f"{name}: no syscall number known for {platform.machine()}")
    return table[name]


def node_mask(nodes: Iterable[int]) -> ctypes.Array[ctypes.c_ulong]:
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    mask = (ctypes.c_ulong * (MASK_BITS // bits))()
    for n in nodes:
        if not 0 <= n < MASK_BITS:
            raise ValueError(f"node {n} out of range")
        mask[n // bits] |= 1 << (n % bits)
    return mask


def mbind(addr: int, length: int, nodes: Iterable[int], flags: int) -> None:
    """mbind(MPOL_BIND, nodes, flags) on a range: with MPOL_MF_MOVE(_ALL), the pages
    mapped there migrate to ``nodes`` (pages that cannot move stay, without error)."""
    mask = node_mask(nodes)
    rc = _lib().syscall(
        ctypes.c_long(_nr("mbind")),
        ctypes.c_void_p(addr),
        ctypes.c_ulong(length),
        ctypes.c_long(MPOL_BIND),
        mask,
        ctypes.c_ulong(MASK_BITS + 1),  # the kernel reads maxnode - 1 bits
        ctypes.c_uint(flags),
    )
    if rc != 0:
        raise _fail("mbind")


def migrate_pages(pid: int, old: Iterable[int], new: Iterable[int]) -> int:
    """migrate_pages(2): move ``pid``'s pages on ``old`` nodes to ``new`` nodes (all pages,
    shared ones too, with CAP_SYS_NICE). Returns how many pages could not be moved."""
    rc = _lib().syscall(
        ctypes.c_long(_nr("migrate_pages")),
        ctypes.c_int(pid),
        ctypes.c_ulong(MASK_BITS + 1),
        node_mask(old),
        node_mask(new),
    )
    if rc < 0:
        raise _fail("migrate_pages")
    return int(rc)


def move_pages(
    pid: int, addrs: Sequence[int], node: int | None, flags: int = MPOL_MF_MOVE_ALL
) -> array.array[int]:
    """move_pages(2) of the pages at ``addrs`` (page-aligned) of ``pid`` to ``node``, in one
    call; ``node`` None only asks where they are. Returns one status per page: its node
    after the call, or a negative errno (``-ENOENT``: not present, ``-EBUSY``, ...)."""
    n = len(addrs)
    pages = addrs if isinstance(addrs, array.array) and addrs.typecode == "Q" else None
    pages = pages if pages is not None else array.array("Q", addrs)
    status = array.array("i", bytes(4 * n))
    nodes = array.array("i", [node]) * n if node is not None else None
    if n == 0:
        return status
    rc = _lib().syscall(
        ctypes.c_long(_nr("move_pages")),
        ctypes.c_int(pid),
        ctypes.c_ulong(n),
        (ctypes.c_void_p * n).from_buffer(pages),
        (ctypes.c_int * n).from_buffer(nodes) if nodes is not None else None,
        (ctypes.c_int * n).from_buffer(status),
        ctypes.c_int(flags if node is not None else 0),
    )
    if rc < 0:
        raise _fail("move_pages")
    return status
